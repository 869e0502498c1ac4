"""The detector seam: one protocol every backend implements.

A detector takes a batch of RGB ``uint8`` images of any size (the analysed frames of several
cameras) and returns one :class:`~feedtag.core.Detections` per image, with boxes in that
image's own pixel coordinates. Letterboxing to the model's input and mapping back are the
backend's business.

A :class:`RegionDetector` can also run part of a frame (an active region,
:mod:`feedtag.vision.regions`) at the scale its whole frame would get: the region's own
stride-aligned input, smaller than the frame's, instead of being scaled up to fill the model.

A :class:`ScaledInputDetector` tells the size it scales a whole frame to, so that ingest can
deliver each analysed frame at that size too (:attr:`feedtag.core.Frame.model_image`), made
from the decoded picture in the same pass as the analysed frame: the detector then only
places it in its input, instead of resizing the RGB frame a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from feedtag.core import Detections

Image = npt.NDArray[np.uint8]


class Detector(Protocol):
    """``detect(batch) -> list[Detections]``, one result per image, in order."""

    @property
    def class_names(self) -> Sequence[str]: ...

    def detect(self, images: Sequence[Image]) -> list[Detections]: ...


@runtime_checkable
class RegionDetector(Protocol):
    """A detector whose input follows the image's shape, so that part of a frame costs less
    than the whole. ``region_grid()`` is ``(long_side, stride)``: a frame is analysed with its
    long side at ``long_side`` model pixels, in inputs of multiples of ``stride``; None when
    the model's input is fixed (a region would be scaled up into the same input).
    ``detect(images, scales=...)`` runs each image at its given scale (model pixels per image
    pixel; None: the whole-frame rule). ``regions_pay`` says whether a region costs about its
    share of the whole frame's input on this detector's runtime: what
    ``gate.regions.enabled: auto`` follows."""

    @property
    def class_names(self) -> Sequence[str]: ...

    @property
    def regions_pay(self) -> bool: ...

    def region_grid(self) -> tuple[int, int] | None: ...

    def detect(
        self, images: Sequence[Image], *, scales: Sequence[float | None] | None = None
    ) -> list[Detections]: ...


@runtime_checkable
class ScaledInputDetector(Protocol):
    """A detector that scales whole frames by one known rule (letterboxing):
    ``picture_size(width, height)`` is the ``(width, height)`` a whole frame of that size
    becomes inside the model's input. Given an image of exactly that size, it only places it
    (no resize), and its boxes are in that image's pixels."""

    @property
    def class_names(self) -> Sequence[str]: ...

    def picture_size(self, width: int, height: int) -> tuple[int, int]: ...

    def detect(self, images: Sequence[Image]) -> list[Detections]: ...


def picture_size_of(detector: object) -> Callable[[int, int], tuple[int, int]] | None:
    """``detector.picture_size`` of a :class:`ScaledInputDetector`, for ingest to deliver
    frames at that size (``CameraIngest(model_size=...)``); None for any other detector."""
    return detector.picture_size if isinstance(detector, ScaledInputDetector) else None
