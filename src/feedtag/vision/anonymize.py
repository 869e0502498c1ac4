"""The anonymizer: every image feedtag writes or serves has its people covered.

An image is never trusted to the detections that happened to come with it: the analysis
detector may run at a low resolution (320 or 416 across a 640x360 or 1280x720 frame) where a
small walker is missed, and a tracked person may be missed on the very frame that is
written. So :class:`Anonymizer` looks again, on the image being written:

1. a person detection on that image at native scale: the whole frame letterboxed into the
   model's input (large people) plus overlapping model-sized tiles cut from it at 1:1 (small
   people, who shrink below what the model finds when the frame is scaled down), at a low
   confidence threshold, since covering a shadow costs little and missing a person breaks
   the promise;
2. merged with the boxes it is given: the frame's own tracked detections and the predicted
   boxes of person tracks seen in the last seconds (:class:`RecentPersons`), so that a
   person missed on this frame but tracked is covered too;
3. each box covered whole (the whole body, not only the head) plus a margin, by a coarse
   mosaic followed by a box blur: the mosaic throws the detail away (each cell is one average
   colour, at most ``MOSAIC_CELLS`` cells across a box), the blur removes the cell edges
   that would otherwise still outline a face. Neither step can be undone.

It fails closed: with no person finder, or when the finder raises, the whole image is
blurred (:func:`blur_whole`) and :attr:`Anonymized.whole` says so. :class:`Anonymized` is
the only thing :class:`~feedtag.store.media.MediaStore` writes, so an image that did not pass
through here cannot be stored or served.

How it is checked: ``tests/vision/test_anonymize.py`` and ``feedtag bench anonymize`` run a
stronger, independent check (the FP32 model on 2x-enlarged overlapping tiles, i.e. four times
the pixels per person) over written images and count persons it finds at confidence >= 0.5
outside covered area (docs/vision.md has the figures).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from feedtag.core import Detections
from feedtag.vision.detector import Detector

log = logging.getLogger(__name__)

Boxes = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

#: mosaic cells across the covered width: a head becomes two or three flat colours
MOSAIC_CELLS: Final = 6
#: a person box is widened by this fraction of its width and height on every side: detector
#: boxes are often tight, and a box predicted for a moving person lags a little
MARGIN: Final = 0.15
#: the finder's own threshold: low, because a covered shadow costs little
FINDER_CONFIDENCE: Final = 0.15
#: neighbouring tiles overlap by this fraction, so a person on a seam is whole in one of them
TILE_OVERLAP: Final = 0.25
#: how long a person track that is no longer detected keeps being covered where it went
HOLD_S: Final = 2.0
#: cells across the whole image when it is blurred because the check could not be made
WHOLE_CELLS: Final = 24
PERSON_LABELS: Final = frozenset({"person"})
#: results kept for events that fire on the same frame
REUSE_RESULTS: Final = 4


@dataclass(frozen=True, slots=True)
class Anonymized:
    """An image with its people covered: what may be written or served.

    ``boxes`` are the covered regions (pixels, after the margin); ``whole`` is True when the
    whole image was blurred because the check could not be made.
    """

    image: Image
    boxes: Boxes
    whole: bool = False


def person_boxes(
    detections: Detections, class_names: Sequence[str], labels: Collection[str] = PERSON_LABELS
) -> Boxes:
    """The boxes of ``detections`` whose class is one of ``labels``.

    >>> det = Detections(np.array([[0, 0, 4, 4], [5, 5, 9, 9]], np.float32),
    ...                  np.ones(2, np.float32), np.array([0, 1], np.int32))
    >>> person_boxes(det, ["person", "car"]).tolist()
    [[0.0, 0.0, 4.0, 4.0]]
    """
    wanted = [index for index, name in enumerate(class_names) if name in labels]
    return detections.xyxy[np.isin(detections.class_id, wanted)]


def tile_windows(
    width: int, height: int, tile: int, overlap: float = TILE_OVERLAP
) -> list[tuple[int, int, int, int]]:
    """Windows ``(x1, y1, x2, y2)`` of at most ``tile`` x ``tile`` pixels that cover a
    ``width`` x ``height`` image, neighbours overlapping by ``overlap`` of a tile; one window
    when the image fits.

    >>> tile_windows(640, 360, 416)
    [(0, 0, 416, 360), (224, 0, 640, 360)]
    >>> tile_windows(300, 200, 416)
    [(0, 0, 300, 200)]
    """
    xs = _starts(width, tile, overlap)
    ys = _starts(height, tile, overlap)
    return [(x, y, min(width, x + tile), min(height, y + tile)) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1 - overlap)))
    count = -(-(length - tile) // step) + 1
    # spread the windows evenly, the last one flush with the far edge
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


class PersonFinder:
    """Finds people in one image at native scale: the whole frame and overlapping tiles of
    the model's input size, in one batch, with the detector restricted to person classes.

    ``detector`` should be built with a low confidence threshold (``FINDER_CONFIDENCE``);
    ``tile`` is its input size.
    """

    def __init__(
        self,
        detector: Detector,
        tile: int,
        labels: Collection[str] = PERSON_LABELS,
        overlap: float = TILE_OVERLAP,
    ) -> None:
        names = list(detector.class_names)
        self._classes = [index for index, name in enumerate(names) if name in labels]
        if not self._classes:
            raise ValueError(f"expected the detector to know one of {sorted(labels)}")
        self._detector = detector
        self._tile = tile
        self._overlap = overlap
        # one image at a time: the media thread and feedtag detect share nothing else
        self._lock = threading.Lock()

    def find(self, image: Image) -> Boxes:
        """Every person box found, in ``image`` pixels (duplicates from overlaps are kept:
        covering a region twice costs nothing)."""
        height, width = image.shape[:2]
        windows = tile_windows(width, height, self._tile, self._overlap)
        if len(windows) == 1:
            windows = []  # the whole frame already is at native scale
        crops = [image, *(image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows)]
        offsets = [(0, 0), *((x1, y1) for x1, y1, _, _ in windows)]
        with self._lock:
            results = self._detector.detect(crops)
        found = [
            result.xyxy[np.isin(result.class_id, self._classes)]
            + np.array([dx, dy, dx, dy], np.float32)
            for result, (dx, dy) in zip(results, offsets, strict=True)
        ]
        return np.concatenate(found).astype(np.float32) if found else _no_boxes()


@dataclass
class _Track:
    box: npt.NDArray[np.float32]
    seen: float
    velocity: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(4, np.float32))


class RecentPersons:
    """Predicted boxes of one camera's person tracks seen in the last ``hold_s`` seconds.

    Each track's box moves on at the velocity of its last two sightings and grows with the
    time since it was last seen (by ``MARGIN`` per second of its size), so that a person the
    detector missed on the frame being written is still covered where it has probably gone.
    Box geometry only, never appearance.

    >>> recent = RecentPersons()
    >>> def seen(x):
    ...     return Detections(np.array([[x, 0, x + 10, 20]], np.float32), np.ones(1, np.float32),
    ...                       np.zeros(1, np.int32), np.array([4]))
    >>> recent.observe(seen(0), ["person"], 0.0); recent.observe(seen(10), ["person"], 1.0)
    >>> [round(v) for v in recent.predicted(2.0)[0]]
    [18, -3, 32, 23]
    """

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self._hold_s = hold_s
        self._tracks: dict[int, _Track] = {}
        self._lock = threading.Lock()

    def observe(self, detections: Detections, class_names: Sequence[str], t_s: float) -> None:
        ids = detections.tracker_id
        if ids is None:
            return
        wanted = [index for index, name in enumerate(class_names) if name in PERSON_LABELS]
        people = np.isin(detections.class_id, wanted) & (ids > 0)
        with self._lock:
            for track_id, box in zip(ids[people].tolist(), detections.xyxy[people], strict=True):
                old = self._tracks.get(track_id)
                velocity = np.zeros(4, np.float32)
                if old is not None and t_s > old.seen:
                    velocity = ((box - old.box) / (t_s - old.seen)).astype(np.float32)
                self._tracks[track_id] = _Track(box.copy(), t_s, velocity)
            for track_id in [k for k, v in self._tracks.items() if t_s - v.seen > self._hold_s]:
                del self._tracks[track_id]

    def predicted(self, t_s: float) -> Boxes:
        """Where the tracks seen within ``hold_s`` of ``t_s`` probably are at ``t_s``."""
        with self._lock:
            tracks = [v for v in self._tracks.values() if 0 < t_s - v.seen <= self._hold_s]
        boxes = []
        for track in tracks:
            age = t_s - track.seen
            box = track.box + track.velocity * age
            grow_x = (box[2] - box[0]) * MARGIN * age
            grow_y = (box[3] - box[1]) * MARGIN * age
            boxes.append(box + np.array([-grow_x, -grow_y, grow_x, grow_y], np.float32))
        return np.array(boxes, np.float32).reshape(-1, 4)


class Anonymizer:
    """Covers every person in an image; see the module docstring.

    ``finder`` None means no check can be made: every image is blurred whole.
    """

    def __init__(self, finder: PersonFinder | None, margin: float = MARGIN) -> None:
        self.finder = finder
        self.margin = margin
        self.images = 0
        self.whole = 0  # images blurred whole because the check could not be made
        self.seconds = 0.0  # spent anonymizing, all images together
        self.reused = 0  # images answered from the last results (several events, one frame)
        # The last few results by image identity and known boxes: events that fire on the
        # same frame (several line crossings, presence and dwell at once) share one check.
        # The image itself is held, so its id cannot be reused by another array meanwhile.
        self._recent: list[tuple[Image, bytes, Anonymized]] = []
        self._lock = threading.Lock()

    @property
    def ms_per_image(self) -> float:
        return self.seconds * 1000 / self.images if self.images else 0.0

    def anonymize(self, image: Image, known: Boxes | None = None) -> Anonymized:
        """``image`` with every person covered: those the finder sees now and those in
        ``known`` (the frame's person detections and predicted track boxes)."""
        key = b"" if known is None else np.ascontiguousarray(known, np.float32).tobytes()
        with self._lock:
            for held, held_key, result in self._recent:
                if held is image and held_key == key:
                    self.reused += 1
                    return result
        started = time.perf_counter()
        try:
            result = self._anonymize(image, known)
        finally:
            self.images += 1
            self.seconds += time.perf_counter() - started
        with self._lock:
            self._recent = [*self._recent[-(REUSE_RESULTS - 1) :], (image, key, result)]
        return result

    def blur_all(self, image: Image) -> Anonymized:
        """``image`` blurred whole, without a check (when there is no time for one)."""
        self.whole += 1
        return _whole(image)

    def _anonymize(self, image: Image, known: Boxes | None) -> Anonymized:
        if self.finder is None:
            self.whole += 1
            return _whole(image)
        try:
            found = self.finder.find(image)
        except Exception:  # any failure of the check fails closed
            log.exception("the person check failed; the image is blurred whole")
            self.whole += 1
            return _whole(image)
        boxes = found if known is None else np.concatenate([found, known.astype(np.float32)])
        return cover_boxes(image, boxes, self.margin)


def cover_boxes(image: Image, boxes: Boxes, margin: float = MARGIN) -> Anonymized:
    """A copy of ``image`` with each box (widened by ``margin`` on every side) covered.

    >>> img = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    >>> out = cover_boxes(img, np.array([[20, 10, 60, 90]], np.float32))
    >>> bool((out.image[10:90, 20:60] != img[10:90, 20:60]).any())
    True
    >>> bool((out.image[:, 70:] == img[:, 70:]).all()), out.boxes.tolist()
    (True, [[14.0, 0.0, 66.0, 100.0]])
    """
    out = image.copy()
    height, width = image.shape[:2]
    covered = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
        box_w, box_h = x2 - x1, y2 - y1
        left = int(max(0, np.floor(x1 - box_w * margin)))
        right = int(min(width, np.ceil(x2 + box_w * margin)))
        top = int(max(0, np.floor(y1 - box_h * margin)))
        bottom = int(min(height, np.ceil(y2 + box_h * margin)))
        if right - left >= 1 and bottom - top >= 1:
            out[top:bottom, left:right] = cover(out[top:bottom, left:right])
            covered.append((left, top, right, bottom))
    return Anonymized(out, np.array(covered, np.float32).reshape(-1, 4))


def blur_whole(image: Image) -> Image:
    """The whole image mosaicked and blurred, about ``WHOLE_CELLS`` cells across: the scene's
    layout and colours stay, nobody in it can be recognized."""
    height, width = image.shape[:2]
    cell = max(2, int(np.ceil(max(width, height) / WHOLE_CELLS)))
    return cover(image, cell=cell)


def _whole(image: Image) -> Anonymized:
    height, width = image.shape[:2]
    return Anonymized(blur_whole(image), np.array([[0, 0, width, height]], np.float32), True)


def covered_fraction(box: npt.NDArray[np.float32], covered: Boxes, size: tuple[int, int]) -> float:
    """The share of ``box``'s area inside the union of ``covered`` (an image ``size`` =
    ``(width, height)``): how the anonymization check scores what a stronger detector finds.

    >>> covered_fraction(np.array([0, 0, 10, 10], np.float32),
    ...                  np.array([[0, 0, 5, 10]], np.float32), (20, 20))
    0.5
    """
    width, height = size
    x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x2, y2 = int(min(width, np.ceil(box[2]))), int(min(height, np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 1.0
    mask = np.zeros((y2 - y1, x2 - x1), bool)
    for cx1, cy1, cx2, cy2 in covered.reshape(-1, 4):
        left, top = max(int(cx1), x1) - x1, max(int(cy1), y1) - y1
        right, bottom = min(int(cx2), x2) - x1, min(int(cy2), y2) - y1
        if right > left and bottom > top:
            mask[top:bottom, left:right] = True
    return float(mask.mean())


def cover(patch: Image, cell: int | None = None) -> Image:
    """Mosaic then blur one region (``cell`` pixels per mosaic cell; by default about
    ``MOSAIC_CELLS`` cells across the region).

    >>> flat = cover(np.random.default_rng(1).integers(0, 255, (60, 30, 3), dtype=np.uint8))
    >>> flat.shape, flat.dtype.name
    ((60, 30, 3), 'uint8')
    """
    height, width = patch.shape[:2]
    if cell is None:
        cell = max(2, int(np.ceil(max(width, height) / MOSAIC_CELLS)))
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.pad(patch, ((0, rows * cell - height), (0, cols * cell - width), (0, 0)), "edge")
    means = padded.reshape(rows, cell, cols, cell, 3).mean(axis=(1, 3))
    mosaic = np.repeat(np.repeat(means, cell, axis=0), cell, axis=1)[:height, :width]
    return _box_blur(mosaic, radius=max(1, cell // 2)).astype(np.uint8)


def _no_boxes() -> Boxes:
    return np.zeros((0, 4), np.float32)


def _box_blur(image: npt.NDArray[np.float64], radius: int) -> npt.NDArray[np.float64]:
    """A separable box blur with edge padding, from cumulative sums (numpy only; feedtag has
    no OpenCV dependency, and this is the one filter it needs)."""
    out = image
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius + 1, radius)
        padded = np.pad(out, pad, mode="edge")
        sums = np.cumsum(padded, axis=axis)
        size = 2 * radius + 1
        upper = np.take(sums, np.arange(size, sums.shape[axis]), axis=axis)
        lower = np.take(sums, np.arange(0, sums.shape[axis] - size), axis=axis)
        out = (upper - lower) / size
    return out
