"""The best frame of each track so far, for event snapshots.

An event's snapshot should show its object as well as the camera ever saw it, not whatever
frame the rule happened to fire on (a line is crossed mid-stride at the frame's edge; a
vehicle is reported stopped half hidden behind another). :class:`BestFrames` keeps, per
camera, each confirmed track's best sighting: the frame where its box scored highest on

    confidence x sqrt(box area / frame area) x (0.5 if the box touches the frame's border)

— a sure, large, whole view. The same heuristic (score, size, not cut off) is what NVRs such
as Frigate use for their "best" snapshot; no library offers it on its own, so it is written
here. It never looks at what a person looks like: only box geometry and detector confidence.

Frames are kept by reference (the ingest makes a new array per analysed frame, so nothing is
copied), and at most ``max_frames`` distinct frames per camera: when a new best would exceed
that, the oldest kept frame goes and the tracks that pointed at it fall back to the frame of
the event. Tracks unseen for ``lost_s`` are forgotten.

>>> import numpy as np
>>> from feedtag.core import Detections
>>> def seen(x1, conf):
...     return Detections(np.array([[x1, 40, x1 + 20, 80]], np.float32),
...                       np.array([conf], np.float32), np.zeros(1, np.int32), np.array([3]))
>>> best = BestFrames(max_frames=2, lost_s=5)
>>> for t, (x1, conf) in enumerate([(0, 0.9), (40, 0.9), (60, 0.4)]):
...     best.observe(np.full((100, 100, 3), t, np.uint8), seen(x1, conf), float(t), 1e9 + t)
>>> best.best(3).wall_time - 1e9  # at x1=0 the box touched the border; at t=2 it was unsure
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from feedtag.core import Detections

#: a box touching the frame's border is probably cut off
BORDER_PENALTY: Final = 0.5
#: pixels from the border that count as touching it
BORDER_MARGIN_PX: Final = 2.0
DEFAULT_MAX_FRAMES: Final = 2


@dataclass(frozen=True, slots=True)
class Sighting:
    """One analysed frame, as kept for a snapshot: the image, everything detected in it (so
    the snapshot covers every person in it, not only the event's), and when it was."""

    image: npt.NDArray[np.uint8]
    detections: Detections
    t_s: float
    wall_time: float


def sighting_score(box: npt.NDArray[np.float32], confidence: float, size: tuple[int, int]) -> float:
    """How well a box shows its object (see the module docstring).

    >>> import numpy as np
    >>> whole = sighting_score(np.array([10, 10, 50, 50], np.float32), 0.8, (100, 100))
    >>> cut = sighting_score(np.array([0, 10, 40, 50], np.float32), 0.8, (100, 100))
    >>> round(whole, 3), round(cut, 3)
    (0.32, 0.16)
    """
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in box)
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    score = confidence * math.sqrt(area / (width * height))
    margin = BORDER_MARGIN_PX
    if x1 <= margin or y1 <= margin or x2 >= width - margin or y2 >= height - margin:
        score *= BORDER_PENALTY
    return score


@dataclass(slots=True)
class _Best:
    score: float
    sighting: Sighting
    last_seen_s: float


class BestFrames:
    """Each confirmed track's best sighting on one camera. Not thread-safe: one camera's
    frames arrive in order from one thread."""

    def __init__(self, max_frames: int = DEFAULT_MAX_FRAMES, lost_s: float = 5.0) -> None:
        if max_frames < 1:
            raise ValueError(f"expected max_frames >= 1, got {max_frames}")
        self.max_frames = max_frames
        self.lost_s = lost_s
        self._tracks: dict[int, _Best] = {}

    def observe(
        self,
        image: npt.NDArray[np.uint8],
        detections: Detections,
        t_s: float,
        wall_time: float,
    ) -> None:
        """Note one analysed frame and its tracked detections."""
        self._forget(t_s)
        ids = detections.tracker_id
        if ids is None or not len(detections):
            return
        size = (image.shape[1], image.shape[0])
        sighting: Sighting | None = None
        for index, track_id in enumerate(ids.tolist()):
            if track_id <= 0:
                continue  # not a confirmed track
            score = sighting_score(
                detections.xyxy[index], float(detections.confidence[index]), size
            )
            kept = self._tracks.get(track_id)
            if kept is not None:
                kept.last_seen_s = t_s
                if score <= kept.score:
                    continue
            sighting = sighting or Sighting(image, detections, t_s, wall_time)
            self._tracks[track_id] = _Best(score, sighting, t_s)
        if sighting is not None:
            self._bound()

    def best(self, track_id: int) -> Sighting | None:
        """The best sighting of ``track_id`` so far, or None when none is kept."""
        kept = self._tracks.get(track_id)
        return None if kept is None else kept.sighting

    @property
    def frames(self) -> int:
        """Distinct frames kept now (memory: about this many analysed frames)."""
        return len({id(kept.sighting.image) for kept in self._tracks.values()})

    def _forget(self, t_s: float) -> None:
        # Stream time going back (a reconnect) also forgets everything: those frames are old.
        gone = [
            track_id
            for track_id, kept in self._tracks.items()
            if t_s - kept.last_seen_s > self.lost_s or t_s < kept.last_seen_s
        ]
        for track_id in gone:
            del self._tracks[track_id]

    def _bound(self) -> None:
        while self.frames > self.max_frames:
            oldest = min(kept.sighting.t_s for kept in self._tracks.values())
            for track_id in [i for i, k in self._tracks.items() if k.sighting.t_s == oldest]:
                del self._tracks[track_id]
