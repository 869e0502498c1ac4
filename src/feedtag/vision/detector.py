"""The detector seam: one protocol every backend implements.

A detector takes a batch of RGB ``uint8`` images of any size (the analysed frames of several
cameras) and returns one :class:`~feedtag.core.Detections` per image, with boxes in that
image's own pixel coordinates. Letterboxing to the model's input and mapping back are the
backend's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from feedtag.core import Detections

Image = npt.NDArray[np.uint8]


class Detector(Protocol):
    """``detect(batch) -> list[Detections]``, one result per image, in order."""

    @property
    def class_names(self) -> Sequence[str]: ...

    def detect(self, images: Sequence[Image]) -> list[Detections]: ...
