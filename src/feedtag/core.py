"""Value types that the stages of feedtag hand each other, validated on construction.

A wrong shape or type fails at the boundary where it was made, with "expected X, got Y",
instead of three stages later.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt


def _expect(condition: bool, what: str, got: object) -> None:
    if not condition:
        # a dtype reads as its name ('float64'); turned into text only here, on failure, since
        # these checks run for every frame and every detection result
        raise ValueError(f"expected {what}, got {str(got) if isinstance(got, np.dtype) else got!r}")


#: the arrays of :class:`Detections` beside ``xyxy``: one value per box, of this dtype (and
#: its name, written out: reading a dtype's name costs microseconds, on every result)
_DETECTION_ARRAYS: Final = (
    ("confidence", np.dtype(np.float32), "float32"), ("class_id", np.dtype(np.int32), "int32"),
    ("tracker_id", np.dtype(np.int64), "int64"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Frame:
    """One analysed frame of one camera: an RGB ``uint8`` image of shape ``(H, W, 3)``.

    ``pts_s`` is stream time in seconds (monotonic within a connection, continuing across
    loops of a file); ``wall_time`` is ``time.time()`` when it was decoded.

    ``model_image``, when ingest made it, is the same picture at the scale the detector runs
    whole frames at (smaller than ``image``), converted from the decoded picture in the same
    pass: the detector takes :attr:`detector_image` and places it without resizing, and
    :meth:`to_image_pixels` maps its boxes back onto ``image``.

    ``repeat``: the picture is the camera's frame before, handed on again because the packet
    gate found nothing changed since (its keyframe was left undecoded, docs/ingest.md):
    analysis carries its result forward, and nothing is judged or kept from the picture.

    >>> import numpy as np
    >>> Frame("door", 0, 0.0, 1.7e9, np.zeros((2, 4, 3), np.uint8), keyframe=True).size
    (4, 2)
    """

    camera_id: str
    index: int
    pts_s: float
    wall_time: float
    image: npt.NDArray[np.uint8]
    keyframe: bool = False
    model_image: npt.NDArray[np.uint8] | None = None
    repeat: bool = False

    def __post_init__(self) -> None:
        _expect(bool(self.camera_id), "a non-empty camera_id", self.camera_id)
        _expect(self.index >= 0, "index >= 0", self.index)
        for name in ("image", "model_image"):
            image = getattr(self, name)
            if image is None and name == "model_image":
                continue
            _expect(isinstance(image, np.ndarray), f"{name} as numpy.ndarray", type(image).__name__)
            _expect(image.dtype == np.uint8, f"{name} dtype uint8", image.dtype)
            _expect(image.ndim == 3 and image.shape[2] == 3, f"{name} shape (H, W, 3)", image.shape)

    @property
    def detector_image(self) -> npt.NDArray[np.uint8]:
        """What the detector runs on for the whole frame: ``model_image`` when ingest made
        one, else ``image``."""
        return self.image if self.model_image is None else self.model_image

    def to_image_pixels(self, detections: Detections) -> Detections:
        """``detections`` found in :attr:`detector_image`, with boxes in ``image``'s pixels.

        >>> import numpy as np
        >>> frame = Frame("door", 0, 0.0, 1.7e9, np.zeros((360, 640, 3), np.uint8),
        ...               model_image=np.zeros((234, 416, 3), np.uint8))
        >>> found = Detections(np.array([[0, 0, 416, 117]], np.float32),
        ...                    np.array([0.9], np.float32), np.array([0], np.int32))
        >>> frame.to_image_pixels(found).xyxy.tolist()
        [[0.0, 0.0, 640.0, 180.0]]
        """
        if self.model_image is None:
            return detections
        (height, width), (small_height, small_width) = (
            self.image.shape[:2],
            self.model_image.shape[:2],
        )
        factors = np.array([width / small_width, height / small_height] * 2, np.float32)
        return dataclasses.replace(detections, xyxy=detections.xyxy * factors)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detections:
    """What a detector found in one frame: ``N`` boxes in the frame's pixel coordinates.

    ``xyxy`` is ``float32 (N, 4)`` (x1, y1, x2, y2), ``confidence`` ``float32 (N,)``,
    ``class_id`` ``int32 (N,)`` indexing the detector's class names. ``tracker_id`` is
    ``int64 (N,)`` once a tracker has run: anonymous, local to one camera, never joined
    across cameras.

    >>> import numpy as np
    >>> d = Detections(np.array([[0, 0, 10, 20]], np.float32), np.array([0.9], np.float32),
    ...                np.array([0], np.int32))
    >>> len(d), len(Detections.empty())
    (1, 0)
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    tracker_id: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        xyxy = self.xyxy
        _expect(isinstance(xyxy, np.ndarray), "xyxy as numpy.ndarray", type(xyxy).__name__)
        _expect(xyxy.dtype == np.float32, "xyxy dtype float32", xyxy.dtype)
        _expect(xyxy.ndim == 2 and xyxy.shape[1] == 4, "xyxy shape (N, 4)", xyxy.shape)
        count = xyxy.shape[0]
        for name, dtype, dtype_name in _DETECTION_ARRAYS:
            array = getattr(self, name)
            if array is None and name == "tracker_id":  # before tracking
                continue
            _expect(isinstance(array, np.ndarray), f"{name} as numpy.ndarray", type(array).__name__)
            _expect(array.dtype == dtype, f"{name} dtype {dtype_name}", array.dtype)
            _expect(array.shape == (count,), f"{name} shape ({count},)", array.shape)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        """The detections a boolean mask or an index array picks."""
        return Detections(
            self.xyxy[mask],
            self.confidence[mask],
            self.class_id[mask],
            None if self.tracker_id is None else self.tracker_id[mask],
        )


@dataclass(frozen=True, slots=True)
class VisionStatus:
    """What the vision stage did for one camera: gate, detector, latest result."""

    camera_id: str
    frames: int
    detected: int
    gated: int
    failed: int
    latency_ms: float | None
    counts: dict[str, int]
    tracks: int
    #: frames that waited for a busy detector and were dropped (a newer frame of the camera
    #: replaced them, or the engine stopped), or whose result came back after a newer
    #: frame's: frames == gated + detected + failed + dropped
    #: once nothing is in flight
    dropped: int = 0
    #: frames failed because the detect() call they were in hung (counted in ``failed`` too)
    hung: int = 0
    #: detector runs on an active region of the frame (counted in ``detected`` too; the
    #: rest of ``detected`` were whole frames)
    cropped: int = 0
    #: seconds of detect() calls this camera's frames were in, each call's time shared equally
    #: among its frames (on a CPU that keeps up, about the CPU time of its inferences)
    detector_s: float = 0.0
    #: CPU seconds spent on this camera's frames outside the detector: change gate, active
    #: region, tracker, rules and handing results on
    analysis_cpu_s: float = 0.0

    @property
    def gate_ratio(self) -> float:
        """Fraction of frames the gate let pass without running the detector."""
        return self.gated / self.frames if self.frames else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "frames": self.frames,
            "detected": self.detected,
            "gated": self.gated,
            "gate_ratio": round(self.gate_ratio, 3),
            "failed": self.failed,
            "dropped": self.dropped,
            "detector_latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "counts": dict(self.counts),
            "tracks": self.tracks,
            "hung": self.hung,
            "cropped": self.cropped,
            "detector_s": round(self.detector_s, 3),
            "analysis_cpu_s": round(self.analysis_cpu_s, 3),
        }


@dataclass(frozen=True, slots=True)
class VisionStageStatus:
    """The vision stage of a node as a whole: its detector workers and watchdog, and the
    queue between detection and post-processing (rules, media, store, live stream)."""

    #: results waiting for post-processing now, and the queue's bound
    postprocess_depth: int
    postprocess_capacity: int
    #: results handed to post-processing, and those dropped (queue full past the wait, or
    #: arriving after stop)
    postprocess_handled: int
    postprocess_dropped: int
    #: detector workers serving now (a hung one is not counted)
    detector_workers: int
    #: detect() calls the watchdog gave up on, and hung workers replaced
    detector_hangs: int
    detector_restarts: int
    #: the hang bound in force now (seconds)
    detector_hang_bound_s: float
    #: the cameras of the latest hung call's batch
    hung_cameras: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "postprocess_depth": self.postprocess_depth,
            "postprocess_capacity": self.postprocess_capacity,
            "postprocess_handled": self.postprocess_handled,
            "postprocess_dropped": self.postprocess_dropped,
            "detector_workers": self.detector_workers,
            "detector_hangs": self.detector_hangs,
            "detector_restarts": self.detector_restarts,
            "detector_hang_bound_s": round(self.detector_hang_bound_s, 2),
            "hung_cameras": list(self.hung_cameras),
        }


def stable_id(*parts: object) -> str:
    """A deterministic id from its parts, so that writing the same thing twice stores it once.

    >>> stable_id("door", "line_cross", 7) == stable_id("door", "line_cross", 7)
    True
    >>> len(stable_id("x"))
    32
    """
    text = "\x1f".join(repr(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EventKind(enum.StrEnum):
    """What happened. Camera-health kinds concern the camera itself, not what it sees."""

    ZONE_ENTER = "zone_enter"
    ZONE_EXIT = "zone_exit"
    LINE_CROSS = "line_cross"
    DWELL = "dwell"
    STOPPED_VEHICLE = "stopped_vehicle"
    WRONG_WAY = "wrong_way"
    CROWDING = "crowding"
    COLLISION_CANDIDATE = "collision_candidate"
    CAMERA_OFFLINE = "camera_offline"
    CAMERA_FROZEN = "camera_frozen"
    CAMERA_COVERED = "camera_covered"
    CAMERA_MOVED = "camera_moved"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened on one camera, with a deterministic ``event_id``.

    Times are Unix seconds (UTC). ``track_ids`` are the camera-local anonymous ids involved;
    ``attributes`` holds kind-specific, JSON-ready details (direction, count, duration ...).
    """

    event_id: str
    camera_id: str
    kind: EventKind
    rule_id: str
    started_at: float
    ended_at: float | None = None
    label: str | None = None
    zone: str | None = None
    track_ids: tuple[int, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _expect(bool(self.event_id), "a non-empty event_id", self.event_id)
        _expect(bool(self.camera_id), "a non-empty camera_id", self.camera_id)
        _expect(isinstance(self.kind, EventKind), "kind as EventKind", self.kind)
        _expect(self.started_at > 0, "started_at as Unix seconds > 0", self.started_at)
        if self.ended_at is not None:
            _expect(self.ended_at >= self.started_at, "ended_at >= started_at", self.ended_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "camera_id": self.camera_id,
            "kind": self.kind.value,
            "rule_id": self.rule_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "label": self.label,
            "zone": self.zone,
            "track_ids": list(self.track_ids),
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class EventEnd:
    """The end of an event that lasts (dwell, crowding, stopped vehicle, camera health): the
    stored event ``event_id`` gets ``ended_at``, once. Events are written when they start,
    so that an alert does not wait for a stopped vehicle to drive off; this closes them.

    >>> EventEnd("e1", "door", 1.7e9).to_dict()
    {'event_id': 'e1', 'camera_id': 'door', 'ended_at': 1700000000.0}
    """

    event_id: str
    camera_id: str
    ended_at: float

    def __post_init__(self) -> None:
        _expect(bool(self.event_id), "a non-empty event_id", self.event_id)
        _expect(bool(self.camera_id), "a non-empty camera_id", self.camera_id)
        _expect(self.ended_at > 0, "ended_at as Unix seconds > 0", self.ended_at)

    @classmethod
    def of(cls, event: Event, ended_at: float) -> EventEnd:
        """The end of ``event`` at ``ended_at`` (never before it started)."""
        return cls(event.event_id, event.camera_id, max(ended_at, event.started_at))

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "camera_id": self.camera_id, "ended_at": self.ended_at}


@dataclass(frozen=True, slots=True)
class TagSegment:
    """A presence tag: ``label`` was visible (in ``zone``, or anywhere when None) from
    ``started_at`` to ``ended_at``, at most ``max_count`` at once. The searchable index of
    what was visible when. ``ended_at`` is None while the segment is still open."""

    segment_id: str
    camera_id: str
    label: str
    zone: str | None
    started_at: float
    ended_at: float | None
    max_count: int

    def __post_init__(self) -> None:
        _expect(bool(self.segment_id), "a non-empty segment_id", self.segment_id)
        _expect(self.max_count >= 1, "max_count >= 1", self.max_count)
        _expect(self.started_at > 0, "started_at as Unix seconds > 0", self.started_at)
        if self.ended_at is not None:
            _expect(self.ended_at >= self.started_at, "ended_at >= started_at", self.ended_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "camera_id": self.camera_id,
            "label": self.label,
            "zone": self.zone,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "max_count": self.max_count,
        }


class CameraState(enum.StrEnum):
    """Where a camera's ingest stands."""

    CONNECTING = "connecting"  # opening, no frame yet since start or since a clean reconnect
    ONLINE = "online"  # decoded frames are arriving
    STALLED = "stalled"  # connected, but no decoded frame within the watchdog bound
    OFFLINE = "offline"  # disconnected or failed to open; retrying with backoff
    STOPPED = "stopped"  # stopped on purpose, or a non-looping file reached its end


class DecodeMode(enum.StrEnum):
    """How frames are decoded; chosen per camera from the measured keyframe interval."""

    MEASURING = "measuring"  # keyframe interval not known yet: decode all, sample
    KEYFRAMES = "keyframes"  # only keyframes are decoded (skip_frame=NONKEY)
    SAMPLED = "sampled"  # every frame decoded, only sampled frames converted


class AnalysisLevel(enum.StrEnum):
    """Which of a camera's analysis rates applies now (``CameraConfig.adaptive``)."""

    FLOOR = "floor"  # the scene has been quiet: the floor rate
    NORMAL = "normal"  # activity, or adaptation off: analysis_fps
    TRACKING = "tracking"  # a moving track near a line, direction or speed rule


class PacketGateState(enum.StrEnum):
    """Whether a camera's packet sizes are believed to show change (docs/ingest.md, "The
    packet gate"); an operator's answer to "why does this quiet camera decode every
    keyframe?"."""

    OFF = "off"  # adaptive.packet_gate, adaptive.enabled or gate.enabled is off
    LEARNING = "learning"  # the first groups of pictures after a (re)connect: no baseline yet
    BELIEVED = "believed"  # at the floor rate, unchanged keyframes are left undecoded
    #: the last group's non-key frames were large against its keyframe: an encoder that holds
    #: its bitrate constant (CBR), a stream of keyframes only, or (at a level above the floor,
    #: where the gate does not act) a busy scene; every floor keyframe is decoded
    NOT_BELIEVED = "not_believed"
    #: a refresh frame found activity the packet sizes missed: shut for ten minutes
    DISTRUSTED = "distrusted"


@dataclass(frozen=True, slots=True)
class IngestCounters:
    """Monotonic counters of one camera since it was added."""

    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    #: keyframes the packet gate left undecoded (docs/ingest.md)
    keyframes_unchanged: int = 0
    frames_decoded: int = 0
    frames_analysed: int = 0
    frames_dropped: dict[str, int] = field(default_factory=dict)
    decode_errors: int = 0
    reconnects: int = 0
    stalls: int = 0
    #: CPU seconds of the camera's ingest thread (reading, decoding, converting frames); 0.0
    #: where the operating system gives no per-thread CPU clock
    cpu_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("packets", "bytes", "frames_decoded", "frames_analysed"):
            value = getattr(self, name)
            _expect(isinstance(value, int) and value >= 0, f"{name} as int >= 0", value)


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot of one camera, safe to print or serve: ``url`` is the masked form."""

    camera_id: str
    url: str
    state: CameraState
    reason: str
    since: float
    mode: DecodeMode
    keyframe_interval_s: float | None
    decoded_fps: float
    analysed_fps: float
    codec: str | None
    width: int | None
    height: int | None
    counters: IngestCounters
    next_retry_in_s: float | None = None
    #: the rate analysis asks for now and which level it is (None before the camera runs)
    target_fps: float | None = None
    analysis_level: AnalysisLevel = AnalysisLevel.NORMAL
    packet_gate: PacketGateState = PacketGateState.OFF

    def __post_init__(self) -> None:
        _expect(isinstance(self.state, CameraState), "state as CameraState", self.state)
        _expect(isinstance(self.mode, DecodeMode), "mode as DecodeMode", self.mode)
        _expect(
            isinstance(self.analysis_level, AnalysisLevel),
            "analysis_level as AnalysisLevel",
            self.analysis_level,
        )
        _expect(
            isinstance(self.packet_gate, PacketGateState),
            "packet_gate as PacketGateState",
            self.packet_gate,
        )
        _expect(self.decoded_fps >= 0 and self.analysed_fps >= 0, "fps >= 0", self.decoded_fps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        counters = self.counters
        return {
            "camera_id": self.camera_id,
            "url": self.url,
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since,
            "mode": self.mode.value,
            "keyframe_interval_s": self.keyframe_interval_s,
            "decoded_fps": round(self.decoded_fps, 3),
            "analysed_fps": round(self.analysed_fps, 3),
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "next_retry_in_s": self.next_retry_in_s,
            "target_fps": self.target_fps,
            "analysis_level": self.analysis_level.value,
            "packet_gate": self.packet_gate.value,
            "counters": {
                "packets": counters.packets,
                "bytes": counters.bytes,
                "keyframes": counters.keyframes,
                "keyframes_unchanged": counters.keyframes_unchanged,
                "frames_decoded": counters.frames_decoded,
                "frames_analysed": counters.frames_analysed,
                "frames_dropped": dict(counters.frames_dropped),
                "decode_errors": counters.decode_errors,
                "reconnects": counters.reconnects,
                "stalls": counters.stalls,
                "cpu_s": round(counters.cpu_s, 3),
            },
        }
