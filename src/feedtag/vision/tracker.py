"""The tracker seam, and the per-camera tracker feedtag uses: ByteTrack from ``trackers``.

One :class:`Tracker` per camera gives the boxes of one object the same anonymous id from
frame to frame. Ids are ``int64``, start at 1 for each tracker instance, are never reused
within it, and mean nothing outside that camera: no appearance features are kept and nothing
is joined across cameras (see the non-goals in DESIGN.md).

:class:`ByteTracker` wraps ``trackers.ByteTrackTracker`` (Roboflow's maintained successor of
supervision's ByteTrack, chosen by ``bench/tracker_eval.py``; numbers in ``docs/tracker.md``).
What the wrapper adds, because feedtag's decoder delivers 0.5-10 analysed frames per second at
a rate that changes with scene activity:

- **Time, not frame counts.** Every update carries the frame's time ``t_s``, passed on as the
  library's ``timestamp``: its Kalman filter then steps by the real elapsed time and its
  lost-track budget is counted in seconds. Settings are in seconds (``lost_s``), so a
  camera that drops from 10 fps to 1 fps keeps the same behaviour. This is better than
  estimating a frame rate from recent gaps and scaling frame counts by it: every step uses its
  own gap, which is what the irregular steps of the adaptive decoder need.
- **An association gate that widens with the time step.** ByteTrack matches a detection to a
  track by IoU with the track's predicted box. At 25-30 fps objects move a fraction of their
  size between frames; at 1 fps a walking person moves about two body widths, so a track that
  has no velocity yet (its second sighting) overlaps nothing and is lost. Boxes are therefore
  compared with buffered IoU (each box grown by ``association_margin_per_s`` x elapsed seconds
  of its size before the IoU), which is plain IoU at high rates and a wider gate at low ones.
  Measured on TUD with detector noise: mean IDF1 at 5 fps and below 0.66 with it, 0.58 without,
  the same 0.92-0.93 at 25 fps.
- **Classes kept apart.** The library ignores ``class_id``; one library tracker runs per class,
  so a person box never continues a car's track.
- **feedtag's types and ids.** Detections come back in input order with ``tracker_id`` set;
  ids are renumbered from 1 per camera so that classes share one id space.
"""

from __future__ import annotations

import logging
import math
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import supervision as sv
from trackers import BIoU, ByteTrackTracker

from feedtag.core import Detections

log = logging.getLogger(__name__)

#: ``tracker_id`` of a detection that is not (yet) part of a confirmed track: a first sighting
#: still waiting for ``confirm_frames``, or a low-confidence box that matched no track.
NO_TRACK_ID: Final = -1

#: The library counts its lost-track buffer in frames of a 30 fps video, whatever the stream's
#: rate, and turns it into seconds as ``lost_track_buffer / 30`` when timestamps are given.
_LIBRARY_BUFFER_FPS: Final = 30.0

#: The frame rate the library is told. With timestamps it only sets the Kalman filter's time
#: unit: a step of ``elapsed_s`` becomes ``elapsed_s * fps`` frames, and the filter's per-frame
#: noise is scaled to that step (white-noise acceleration). So this is a fixed, physical process
#: noise that no longer depends on the camera's rate. Measured (bench/tracker_eval.py, seeds
#: other than the reported ones): mean IDF1 over all rates 0.66 at 30 (the library's nominal
#: video rate), 0.72 at 10, 0.74 at 3 and at 5.
_KALMAN_REFERENCE_FPS: Final = 5.0

#: A step counted as "the same instant": the library warns on a repeated timestamp (and pytest
#: runs warnings as errors), so a repeat is passed on as this small step forward instead.
_MIN_STEP_S: Final = 1e-3

_INDEX_KEY: Final = "feedtag_index"


class Tracker(Protocol):
    """Gives the detections of one camera anonymous, per-camera track ids.

    ``update`` takes one analysed frame's detections and its time ``t_s`` in seconds
    (increasing; the gaps may vary) and returns the same detections, in the same order, with
    ``tracker_id`` set (``int64``; ids start at 1; :data:`NO_TRACK_ID` where a detection
    belongs to no confirmed track). ``reset`` forgets every track.
    """

    def update(self, detections: Detections, t_s: float) -> Detections: ...

    def reset(self) -> None: ...


class ByteTracker:
    """ByteTrack for one camera, robust to low and changing frame rates.

    Settings, in seconds where time is involved:

    - ``lost_s``: how long a track survives without a matching detection; an object seen again
      within this time of its last sighting keeps its id. 4 s bridges one missed frame at
      feedtag's floor rate of 0.5 fps.
    - ``association_margin_per_s``: how much each box is grown, as a fraction of its size per
      second elapsed, before its IoU with a track's prediction is taken (see the module
      docstring); at most ``max_association_margin``.
    - ``min_iou``: the least (buffered) IoU that associates a detection with a track.
    - ``confirm_frames``: consecutive sightings before a track gets an id; 2 keeps one-frame
      false positives from minting ids.
    - ``high_confidence`` / ``new_track_confidence``: ByteTrack's two thresholds. Boxes at or
      above ``high_confidence`` are matched first, lower ones may only continue a track, and a
      new track needs ``new_track_confidence``.

    >>> import numpy as np
    >>> from feedtag.core import Detections
    >>> def person(x: float) -> Detections:
    ...     return Detections(np.array([[x, 100, x + 40, 200]], np.float32),
    ...                       np.array([0.9], np.float32), np.array([0], np.int32))
    >>> tracker = ByteTracker(lost_s=4.0)
    >>> [int(tracker.update(person(100 + 60 * t), t_s=t).tracker_id[0]) for t in range(4)]
    [-1, 1, 1, 1]
    """

    def __init__(
        self,
        *,
        lost_s: float = 4.0,
        association_margin_per_s: float = 1.0,
        max_association_margin: float = 2.0,
        min_iou: float = 0.1,
        confirm_frames: int = 2,
        high_confidence: float = 0.5,
        new_track_confidence: float = 0.6,
    ) -> None:
        checks = (
            (lost_s > 0, "lost_s > 0", lost_s),
            (
                association_margin_per_s >= 0,
                "association_margin_per_s >= 0",
                association_margin_per_s,
            ),
            (max_association_margin >= 0, "max_association_margin >= 0", max_association_margin),
            (0 < min_iou <= 1, "0 < min_iou <= 1", min_iou),
            (confirm_frames >= 1, "confirm_frames >= 1", confirm_frames),
            (0 <= high_confidence <= 1, "0 <= high_confidence <= 1", high_confidence),
            (
                0 <= new_track_confidence <= 1,
                "0 <= new_track_confidence <= 1",
                new_track_confidence,
            ),
        )
        for ok, what, got in checks:
            if not ok:
                raise ValueError(f"expected {what}, got {got!r}")
        self.lost_s = lost_s
        self.association_margin_per_s = association_margin_per_s
        self.max_association_margin = max_association_margin
        self.min_iou = min_iou
        self.confirm_frames = confirm_frames
        self.high_confidence = high_confidence
        self.new_track_confidence = new_track_confidence
        # the buffered-IoU metric is shared by the per-class trackers; its margin is set from
        # the elapsed time before each update
        self._similarity = BIoU(buffer_ratio=0.0)
        self._per_class: dict[int, ByteTrackTracker] = {}
        # (class id, library id) -> feedtag id, only for tracks the library still holds
        self._ids: dict[tuple[int, int], int] = {}
        self._next_id = 1
        self._last_t_s: float | None = None

    def reset(self) -> None:
        """Forget every track. Ids keep counting up, so an id is never reused."""
        self._per_class.clear()
        self._ids.clear()
        self._last_t_s = None

    def update(self, detections: Detections, t_s: float) -> Detections:
        """Associate one frame's detections with the tracks; see :class:`Tracker`.

        A ``t_s`` earlier than the previous one means a new time base (a reconnected stream
        whose clock restarted): the tracks are dropped, as after a long gap.
        """
        if not math.isfinite(t_s):
            raise ValueError(f"expected a finite t_s, got {t_s!r}")
        t_s = self._advance_clock(t_s)
        ids = np.full(len(detections), NO_TRACK_ID, np.int64)
        for class_id in np.unique(detections.class_id).tolist():
            if class_id not in self._per_class:
                self._per_class[class_id] = self._new_library_tracker()
        for class_id, library_tracker in list(self._per_class.items()):
            # every class tracker steps on every frame, with its own boxes or none, so that
            # its tracks age and expire on time
            indices = np.flatnonzero(detections.class_id == class_id)
            tracked = library_tracker.update(_to_supervision(detections, indices), timestamp=t_s)
            self._assign_ids(class_id, tracked, ids)
            self._forget_dead(class_id, library_tracker)
        return Detections(detections.xyxy, detections.confidence, detections.class_id, ids)

    def _advance_clock(self, t_s: float) -> float:
        last = self._last_t_s
        if last is not None and t_s < last:
            log.info("tracker time went back from %.3f s to %.3f s; tracks dropped", last, t_s)
            self.reset()
            last = None
        if last is not None:
            step_s = max(t_s - last, _MIN_STEP_S)
            t_s = last + step_s
            self._similarity.buffer_ratio = min(
                self.association_margin_per_s * step_s, self.max_association_margin
            )
        self._last_t_s = t_s
        return t_s

    def _new_library_tracker(self) -> ByteTrackTracker:
        return ByteTrackTracker(
            lost_track_buffer=max(1, round(self.lost_s * _LIBRARY_BUFFER_FPS)),
            frame_rate=_KALMAN_REFERENCE_FPS,
            track_activation_threshold=self.new_track_confidence,
            minimum_consecutive_frames=self.confirm_frames,
            minimum_iou_threshold=self.min_iou,
            high_conf_det_threshold=self.high_confidence,
            iou=self._similarity,
        )

    def _assign_ids(
        self, class_id: int, tracked: sv.Detections, ids: npt.NDArray[np.int64]
    ) -> None:
        if tracked.tracker_id is None or len(tracked) == 0:
            return
        indices = np.asarray(tracked.data[_INDEX_KEY], np.intp)
        for index, library_id in zip(indices.tolist(), tracked.tracker_id.tolist(), strict=True):
            if library_id == NO_TRACK_ID:
                continue
            key = (class_id, int(library_id))
            feedtag_id = self._ids.get(key)
            if feedtag_id is None:
                feedtag_id = self._ids[key] = self._next_id
                self._next_id += 1
            ids[index] = feedtag_id

    def _forget_dead(self, class_id: int, library_tracker: ByteTrackTracker) -> None:
        # Keeps the id map and the per-class trackers as small as what is alive: a camera runs
        # for months and sees millions of tracks.
        alive = {int(track.tracker_id) for track in library_tracker.tracks}
        for key in [key for key in self._ids if key[0] == class_id and key[1] not in alive]:
            del self._ids[key]
        if not library_tracker.tracks:
            del self._per_class[class_id]


def _to_supervision(detections: Detections, indices: npt.NDArray[np.intp]) -> sv.Detections:
    """The detections at ``indices`` as ``sv.Detections``, remembering where each came from."""
    return sv.Detections(
        xyxy=detections.xyxy[indices].astype(np.float64),
        confidence=detections.confidence[indices],
        class_id=detections.class_id[indices],
        data={_INDEX_KEY: indices},
    )
