"""The gate: a cheap change test that decides whether the detector needs to run.

Most of the time most cameras show nothing new. The gate compares a tiny greyscale copy of
the frame with the one the detector last saw; if too little changed, no moving track is
active and the last detection is recent enough, the previous result is carried forward.

The comparison is against the frame of the *last detection*, not the previous frame, so slow
changes (a person walking slowly, light drifting) add up until they trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

#: pixels sampled along each axis; 640x360 becomes 80x45
GATE_STEP: Final = 8
#: ITU-R BT.601 luma weights, in 1/256ths, for integer maths
_LUMA: Final = np.array([77, 150, 29], dtype=np.uint16)


def tiny_grey(image: npt.NDArray[np.uint8], step: int = GATE_STEP) -> npt.NDArray[np.int16]:
    """A subsampled greyscale copy, averaged over 2x2 samples to damp sensor noise.

    >>> tiny_grey(np.full((32, 48, 3), 200, np.uint8)).shape
    (4, 6)
    """
    sample = image[:: step // 2, :: step // 2]
    # Channel by channel into uint16 (at most 255 x 256, no overflow): the same sums as
    # ``sample.astype(np.uint16) @ _LUMA``, but integer matmul has no BLAS path and took
    # three quarters of the gate's time.
    weighted = np.multiply(sample[..., 0], _LUMA[0], dtype=np.uint16)
    weighted += np.multiply(sample[..., 1], _LUMA[1], dtype=np.uint16)
    weighted += np.multiply(sample[..., 2], _LUMA[2], dtype=np.uint16)
    grey = np.right_shift(weighted, 8)
    rows, cols = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
    grey = grey[:rows, :cols]
    blocks = grey[0::2, 0::2] + grey[1::2, 0::2] + grey[0::2, 1::2] + grey[1::2, 1::2]
    result: npt.NDArray[np.int16] = np.right_shift(blocks, 2).astype(np.int16)
    return result


@dataclass(frozen=True, slots=True)
class GateDecision:
    run: bool
    reason: str  # "first", "changed", "tracks", "refresh", "unchanged"
    changed_fraction: float
    #: which cells changed, one per ``GATE_STEP`` x ``GATE_STEP`` pixels of the frame (None
    #: without a reference to compare with): where the active region is
    changed: npt.NDArray[np.bool_] | None = field(default=None, compare=False, repr=False)


class ChangeGate:
    """Per camera: whether this frame needs the detector.

    ``pixel_threshold``: grey levels (0-255) a sample must change by to count;
    ``min_changed_fraction``: fraction of samples that must change; ``refresh_s``: the
    detector runs at least this often, which bounds how stale a carried result can be.

    >>> gate = ChangeGate()
    >>> still = np.zeros((360, 640, 3), np.uint8)
    >>> gate.decide(still, 0.0).reason, gate.decide(still, 1.0).reason
    ('first', 'unchanged')
    >>> moved = still.copy(); moved[100:200, 100:200] = 255
    >>> gate.decide(moved, 2.0).reason
    'changed'
    """

    def __init__(
        self,
        pixel_threshold: int = 14,
        min_changed_fraction: float = 0.002,
        refresh_s: float = 10.0,
    ) -> None:
        if not 0 < pixel_threshold < 256:
            raise ValueError(f"expected 0 < pixel_threshold < 256, got {pixel_threshold}")
        if not 0 <= min_changed_fraction <= 1:
            raise ValueError(f"expected 0 <= min_changed_fraction <= 1, got {min_changed_fraction}")
        if refresh_s <= 0:
            raise ValueError(f"expected refresh_s > 0, got {refresh_s}")
        self.pixel_threshold = pixel_threshold
        self.min_changed_fraction = min_changed_fraction
        self.refresh_s = refresh_s
        self._reference: npt.NDArray[np.int16] | None = None
        self._last_run_s: float | None = None
        self.detected = 0
        self.gated = 0

    def decide(
        self, image: npt.NDArray[np.uint8], t_s: float, moving_tracks: bool = False
    ) -> GateDecision:
        """Decide for one frame; a "run" decision makes this frame the new reference."""
        grey = tiny_grey(image)
        changed = self._changed(grey)
        fraction = 1.0 if changed is None else float(np.count_nonzero(changed)) / changed.size
        if self._reference is None or self._last_run_s is None or t_s < self._last_run_s:
            reason = "first"
        elif fraction >= self.min_changed_fraction:
            reason = "changed"
        elif moving_tracks:
            reason = "tracks"
        elif t_s - self._last_run_s >= self.refresh_s:
            reason = "refresh"
        else:
            self.gated += 1
            return GateDecision(False, "unchanged", fraction, changed)
        self._reference = grey
        self._last_run_s = t_s
        self.detected += 1
        return GateDecision(True, reason, fraction, changed)

    def reset(self) -> None:
        """Forget the reference (after a reconnect the view may have changed)."""
        self._reference = None
        self._last_run_s = None

    def _changed(self, grey: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_] | None:
        if self._reference is None or self._reference.shape != grey.shape:
            return None
        changed: npt.NDArray[np.bool_] = np.abs(grey - self._reference) >= self.pixel_threshold
        return changed
