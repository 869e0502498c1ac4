"""Strict configuration models: unknown keys rejected, every field described and bounded.

Validation has no side effects: nothing is opened, created or written. Camera URLs are
parsed into :class:`~feedtag.urls.CameraUrl` here, so a hostile URL is rejected before any
stage sees it. Local files are resolved against ``media_root``, which the loader passes in
the validation context (``{"media_root": Path}``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from feedtag.config.adaptive import AdaptiveRateConfig
from feedtag.config.alerts import AlertsConfig
from feedtag.config.analytics import CameraAnalytics
from feedtag.config.base import StrictModel
from feedtag.errors import SourceRejected
from feedtag.urls import CameraUrl, url_text_problem

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def _validate_camera_url(value: Any, info: ValidationInfo) -> CameraUrl:
    if isinstance(value, CameraUrl):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string, got {type(value).__name__}")
    context = info.context if isinstance(info.context, dict) else {}
    media_root = context.get("media_root")
    username = info.data.get("username")
    password = info.data.get("password")
    try:
        return CameraUrl.parse(value, media_root=media_root, username=username, password=password)
    except SourceRejected as exc:
        # The message names the problem, never the URL: it may hold a password.
        raise ValueError(str(exc)) from None


CameraUrlField = Annotated[
    CameraUrl,
    PlainValidator(_validate_camera_url),
    PlainSerializer(lambda url: url.masked(), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "rtsp://, rtsps://, http(s):// (MJPEG, HLS, MP4) or a file path "
            "under media_root",
        }
    ),
]


class RegionsConfig(StrictModel):
    """Active-region inference: when what changed is confined to part of the frame, the
    detector runs on a crop around it and the rest of the result is carried forward."""

    enabled: bool | Literal["auto"] = Field(
        default="auto",
        description="auto: on where the detector's runtime spends time in proportion to its "
        "input's area (ONNX Runtime), off where a crop costs more than its share (OpenVINO); "
        "true or false to choose. False runs the detector on the whole frame every time.",
    )
    full_every_s: float = Field(
        default=4.0,
        gt=0,
        le=3600,
        description="Analyse the whole frame at least this often (seconds of stream time).",
    )
    max_area: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Use a crop only when its model input is at most this share of the "
        "whole frame's; a larger one runs the whole frame.",
    )
    margin: float = Field(
        default=0.04,
        ge=0,
        le=0.5,
        description="Room added around the active area on each side, as a share of the "
        "frame's width.",
    )


class GateConfig(StrictModel):
    """The change test that decides whether a frame needs the detector."""

    enabled: bool = Field(default=True, description="Set false to run the detector on every frame.")
    pixel_threshold: int = Field(
        default=14, ge=1, le=255, description="Grey levels a sample must change by to count."
    )
    min_changed_fraction: float = Field(
        default=0.002, ge=0, le=1, description="Fraction of samples that must change."
    )
    refresh_s: float = Field(
        default=10.0, gt=0, le=3600, description="Run the detector at least this often."
    )
    regions: RegionsConfig = Field(
        default_factory=RegionsConfig,
        description="Run the detector on the active part of the frame only (docs/vision.md).",
    )


class ClipsConfig(StrictModel):
    """Event clips: raw video remuxed from a ring of compressed packets, people NOT blurred."""

    enabled: bool = Field(
        default=False,
        description="Keep the last ring_s of compressed video for event clips. Clips are raw "
        "media (people are not blurred) and are served only to admins.",
    )
    ring_s: float = Field(
        default=30.0, gt=0, le=600, description="Seconds of compressed video kept per camera."
    )


class CameraConfig(StrictModel):
    """One camera."""

    id: str = Field(
        pattern=CAMERA_ID_PATTERN,
        description="Unique camera id: letters, digits, '_', '.', '-'; at most 64 characters.",
    )
    name: str | None = Field(
        default=None, max_length=200, description="Display name; defaults to the id."
    )
    enabled: bool = Field(default=True, description="Set false to keep a camera but not run it.")
    username: str | None = Field(
        default=None,
        max_length=256,
        description="User name for the camera, if not given in the URL.",
    )
    password: SecretStr | None = Field(
        default=None,
        max_length=1024,
        description="Password for the camera, if not given in the URL. Never logged.",
    )
    url: CameraUrlField = Field(description="Where to read the camera from.")
    analysis_fps: float = Field(
        default=1.0,
        gt=0,
        le=30,
        description="Frames per second to analyse. When the stream's keyframe interval is at "
        "most 1/analysis_fps, only keyframes are decoded.",
    )
    analysis_width: int = Field(
        default=640, ge=32, le=3840, description="Width analysed frames are scaled to."
    )
    analysis_height: int | None = Field(
        default=None,
        ge=32,
        le=2160,
        description="Height analysed frames are scaled to; default keeps the aspect ratio.",
    )
    decode: Literal["auto", "all"] = Field(
        default="auto",
        description="'auto': decode only keyframes when they come often enough for "
        "analysis_fps, else decode all and sample; 'all': always decode every frame.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp", description="RTSP transport. TCP survives lossy networks and NAT."
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Give up opening after this many seconds."
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Give up a read that receives no bytes for this many seconds.",
    )
    stall_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Watchdog: no decoded frame for this long counts as a stall, even while "
        "bytes still arrive.",
    )
    adaptive: AdaptiveRateConfig = Field(
        default_factory=AdaptiveRateConfig,
        description="The analysis rate adapts: floor rate when quiet, tracking rate near "
        "motion rules.",
    )
    classes: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Class names to keep (e.g. [person, car]); default: every class.",
    )
    gate: GateConfig = Field(
        default_factory=GateConfig, description="When the detector may be skipped."
    )
    clips: ClipsConfig = Field(
        default_factory=ClipsConfig, description="Event clips (raw media, off by default)."
    )
    analytics: CameraAnalytics = Field(
        default_factory=CameraAnalytics,
        description="Zones, lines and rules: what becomes tags and events.",
    )
    loop: bool = Field(default=False, description="Files only: start again at the end.")
    realtime: bool = Field(
        default=True,
        description="Files only: read at the stream's own pace, like a live camera.",
    )
    origin: float | None = Field(
        default=None,
        ge=0,
        description="Files that do not loop only: the Unix time the file's start stands "
        "for. Frames are stamped origin + their stream time, every sampled frame is "
        "analysed, and a file opened after its frames were due catches up as fast as it "
        "can; so a camera restarted on this origin gives its events the same ids again. "
        "The Ray engine sets it (to when it first runs the camera); default: none (frames "
        "are stamped when they are read).",
    )

    @model_validator(mode="after")
    def _check_file_options(self) -> Self:
        if self.loop and not self.url.is_file:
            raise ValueError("loop applies to local files only")
        if self.origin is not None and (self.loop or not self.url.is_file):
            raise ValueError("origin applies to local files that do not loop only")
        self.adaptive.check_against(self.analysis_fps)
        return self

    @property
    def analysis_rates(self) -> tuple[float, float, float]:
        """(floor, normal, tracking) frames per second; all three analysis_fps when
        adaptation is off.

        >>> CameraConfig(id="a", url="rtsp://cam/x", analysis_fps=2).analysis_rates
        (0.5, 2.0, 5.0)
        """
        return self.adaptive.rates(self.analysis_fps)

    @property
    def lossless(self) -> bool:
        """A file read as fast as possible (``realtime: false``), or one on a fixed
        timeline (``origin``): every sampled frame is analysed (queues wait instead of
        dropping) on the recording's own timeline."""
        return self.url.is_file and (not self.realtime or self.origin is not None)

    @property
    def replayable(self) -> bool:
        """A file played once at its own pace: on a fixed ``origin``, a restart replays it
        with the same event ids (the Ray engine gives such cameras an origin)."""
        return self.url.is_file and self.realtime and not self.loop

    @property
    def display_name(self) -> str:
        return self.name or self.id


class ReconnectConfig(StrictModel):
    """How a failed camera is retried."""

    initial_backoff_s: float = Field(
        default=1.0, gt=0, le=60, description="First wait after a failure."
    )
    max_backoff_s: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait between attempts."
    )
    multiplier: float = Field(default=2.0, ge=1, le=10, description="Backoff growth per failure.")
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="Random spread, as a fraction of each wait."
    )
    restart_budget: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="At most this many reconnects within restart_window_s ...",
    )
    restart_window_s: float = Field(
        default=600.0, gt=0, le=86_400, description="... after which the camera cools down."
    )
    cooldown_s: float = Field(
        default=300.0, ge=0, le=86_400, description="Wait when the restart budget is spent."
    )

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be at least initial_backoff_s")
        return self


class EngineConfig(StrictModel):
    """The node engine."""

    queue_size: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Decoded frames held per camera; when full the oldest is dropped.",
    )
    status_interval_s: float = Field(
        default=2.0, gt=0, le=3600, description="How often `feedtag run` prints status."
    )
    cores_per_shard: float = Field(
        default=1.0,
        gt=0,
        le=1024,
        description="The Ray engine: cores each shard takes; without `--shards`, one shard "
        "per this many of the cluster's cores.",
    )
    gpus_per_shard: float = Field(
        default=0.0,
        ge=0,
        le=8,
        description="The Ray engine: GPUs each shard reserves (Ray's num_gpus; 0.25: four "
        "shards share a GPU). Above 0, shards run only on machines with a GPU, their detector "
        "gets the GPU defaults (2 workers, batches of 32), and without `--shards` the "
        "cluster's GPUs bound the shard count too.",
    )


class DetectorConfig(StrictModel):
    """The object detector shared by every camera of a node."""

    enabled: bool = Field(
        default=True, description="Set false to run ingest only (frames are counted, not analysed)."
    )
    model: str = Field(
        default="default",
        max_length=4096,
        description="'default' (YOLOv3-tiny COCO, built offline on first use) or the path of "
        "an ONNX file.",
    )
    layout: Literal["yolo-decoded", "yolov8", "yolox", "yolox-decoded"] = Field(
        default="yolo-decoded",
        description="Output layout of a user ONNX model: 'yolo-decoded' [B,N,5+C] (YOLOv5/v7, "
        "the default model), 'yolov8' [B,4+C,N] (YOLOv8/v9/11), 'yolox' raw, 'yolox-decoded'.",
    )
    class_names: list[str] | None = Field(
        default=None, max_length=10_000, description="Class names of a user model (default: COCO)."
    )
    input_size: Literal[320, 416] = Field(
        default=416, description="Default model input size; 320 is faster, 416 finds more."
    )
    precision: Literal["auto", "int8", "fp32"] = Field(
        default="auto",
        description="Default model precision. 'auto': FP32 on a GPU and where OpenVINO computes "
        "it in bf16 "
        "with AMX, INT8 otherwise (on OpenVINO without AMX, and on ONNX Runtime on a CPU).",
    )
    backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        default="auto",
        description="Inference runtime. 'auto': ONNX Runtime on the GPU where its GPU build "
        "starts a session on a CUDA or TensorRT provider (scripts/setup.sh --gpu); otherwise "
        "OpenVINO where it is installed "
        "(feedtag[openvino]) and computes FP32 models in bf16 on this CPU (AMX or AVX-512 "
        "BF16), where it runs the model 1.7-2.4x cheaper than ONNX Runtime's INT8; ONNX "
        "Runtime otherwise.",
    )
    device: str = Field(
        default="CPU",
        pattern=r"^[A-Z][A-Z0-9_.:,]{0,63}$",
        description="OpenVINO device when the backend is OpenVINO: 'CPU', 'GPU', 'NPU', 'AUTO'.",
    )
    models_dir: Path | None = Field(
        default=None, description="Where built models live (default: the feedtag cache)."
    )
    threads: int = Field(default=1, ge=1, le=256, description="Threads per inference call.")
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Inference calls running at once (default: one per core this process may "
        "use, divided by `threads`; CPU affinity and a cgroup CPU quota count, and on the Ray "
        "engine a shard's `engine.cores_per_shard`). One worker with one thread uses one "
        "core: 416 INT8 serves about 40 frames/s per worker on a 2.6 GHz EPYC core. On a GPU: "
        "2.",
    )
    confidence: float = Field(default=0.3, gt=0, lt=1, description="Minimum detection score.")
    iou: float = Field(default=0.45, gt=0, lt=1, description="NMS overlap threshold.")
    max_batch: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Frames per inference call (default: 8 on a CPU, 32 on a GPU).",
    )
    max_wait_s: float = Field(
        default=0.5,  # vision.batching.DEFAULT_MAX_WAIT_S (why: its comment)
        ge=0,
        le=5,
        description="Longest a frame waits for a batch to fill; a frame also waits at most half "
        "its camera's frame interval, and a file analysed losslessly not at all.",
    )
    hang_timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="A detect() call running longer than this is reported as hung (with the "
        "cameras of its batch), its worker is replaced and its late result discarded "
        "(default: 10 x the median detect() latency, at least 5 s; 30 s until the first call "
        "returns).",
    )
    track_lost_s: float = Field(
        default=4.0,
        gt=0,
        le=600,
        description="A track unseen this long is ended (4 s bridges one missed frame at 0.5 fps).",
    )

    @model_validator(mode="after")
    def _user_model_needs_names(self) -> Self:
        if self.model != "default" and not self.class_names:
            raise ValueError("class_names is required when model is an ONNX file")
        return self


def default_data_dir() -> Path:
    """``$FEEDTAG_DATA_DIR``, else ``$XDG_DATA_HOME/feedtag``, else ``~/.local/share/feedtag``."""
    explicit = os.environ.get("FEEDTAG_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "feedtag"


class StoreConfig(StrictModel):
    """Where tags, events and media go."""

    data_dir: Path | None = Field(
        default=None,
        description="Folder for the SQLite database, media and the outage spool "
        "(default: $FEEDTAG_DATA_DIR, else ~/.local/share/feedtag).",
    )
    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the store, e.g. postgresql://user:pass@host/feedtag "
        "(default: SQLite in data_dir). Never logged.",
    )
    retention_days: float = Field(
        default=30, gt=0, le=3650, description="Events, tags and media older than this go."
    )
    audit_retention_days: float = Field(
        default=365,
        gt=0,
        le=3650,
        description="Audit log entries (who read which events and media) older than this go.",
    )
    spool_max_mb: int = Field(
        default=256, ge=1, le=1_000_000, description="Disk kept for events during outages."
    )
    thumbnail_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often each camera's thumbnail is renewed."
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        return f"sqlite:///{self.resolved_data_dir() / 'feedtag.db'}"


#: the shortest admin token accepted from config: 128 bits of base64/hex-ish text
MIN_ADMIN_TOKEN_CHARS = 32
MIN_LINK_KEY_CHARS = 32
_PUBLIC_PATH = re.compile(r"(/[A-Za-z0-9._~\-]+)*/?")


def parse_public_url(value: Any) -> str:
    """``api.public_url`` normalized (no trailing slash), or ``ValueError`` saying why not:
    https with a host and an optional path prefix; plain http only to a loopback host.

    >>> parse_public_url("https://Cams.example.org/feedtag/")
    'https://cams.example.org/feedtag'
    >>> parse_public_url("http://cams.example.org")
    Traceback (most recent call last):
    ...
    ValueError: use https:// (plain http:// only to a loopback host such as 127.0.0.1)
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string, got {type(value).__name__}")
    problem = url_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        raise ValueError("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise ValueError("expected https://host[:port][/path]")
    if "@" in parts.netloc:
        raise ValueError("a public URL holds no user:password@")
    if "?" in value or "#" in value:
        raise ValueError("a public URL has no ?query or #fragment (links add their own)")
    segments = parts.path.split("/")
    if not _PUBLIC_PATH.fullmatch(parts.path) or "." in segments or ".." in segments:
        raise ValueError("the path may hold only letters, digits and . _ ~ - between slashes")
    try:
        CameraUrl.parse(f"{scheme}://{parts.netloc}/")  # the one host-name check
    except SourceRejected as exc:
        raise ValueError(str(exc)) from None
    if scheme == "http" and not _is_loopback(host):
        raise ValueError("use https:// (plain http:// only to a loopback host such as 127.0.0.1)")
    return f"{scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiConfig(StrictModel):
    """The HTTP API and dashboard server of ``feedtag run`` and ``feedtag demo``."""

    enabled: bool | None = Field(
        default=None,
        description="null (default): serve the API when an admin credential exists (admin_token "
        "or an admin token made with `feedtag tokens create --name admin --role admin`); true: "
        "serve it and refuse to start without one; false: never serve it.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=255,
        description="Address to listen on. The default is reachable from this machine only.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port).")
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=MIN_ADMIN_TOKEN_CHARS,
        max_length=512,
        description="An admin bearer token, e.g. ${FEEDTAG_ADMIN_TOKEN}; at least 32 characters "
        "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'`). Never logged.",
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="CIDRs that cameras added through the API may use although they are "
        "loopback, link-local or metadata addresses (refused by default), e.g. [127.0.0.0/8].",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 2**20,
        description="Larger request bodies are refused with 413 before they are read.",
    )
    max_query_length: int = Field(
        default=2048,
        ge=256,
        le=65536,
        description="Longer URLs (path and query) are refused with 414.",
    )
    session_ttl_s: float = Field(
        default=12 * 3600,
        gt=0,
        le=30 * 86400,
        description="How long a dashboard sign-in (HttpOnly cookie) lasts.",
    )
    stream_queue_size: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Events held per live-stream subscriber; a slower reader loses the oldest.",
    )
    metrics: Literal["per_camera", "totals"] = Field(
        default="per_camera",
        description="per_camera: /metrics has each camera's series (37 per camera, and one "
        "per event kind it has had); totals: the same families without the camera label, "
        "summed over each shard's cameras (a latency the largest, the gate ratio the mean), "
        "for deployments whose Prometheus should not hold series per camera (over 3 million "
        "at 100,000 cameras).",
    )
    public_url: Annotated[str, AfterValidator(parse_public_url)] | None = Field(
        default=None,
        max_length=512,
        description="Where alert receivers reach this API, e.g. https://cams.example.org "
        "(https; http only to a loopback host). With a link key, alert payloads carry a "
        "signed, expiring snapshot_url under it; without it, snapshot_url is null.",
    )
    link_key: SecretStr | None = Field(
        default=None,
        min_length=MIN_LINK_KEY_CHARS,
        max_length=512,
        description="Secret the signing key of snapshot links is derived from, e.g. "
        "${FEEDTAG_LINK_KEY}; at least 32 characters. Default: derived from the "
        "FEEDTAG_SECRET_KEY environment variable. Changing it invalidates issued links.",
    )

    @model_validator(mode="after")
    def _check_networks(self) -> Self:
        for index, network in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"allow_networks[{index}]: {network[:60]!r} is not a CIDR like 127.0.0.0/8"
                ) from None
        return self


class FeedtagConfig(StrictModel):
    """The whole feedtag configuration file."""

    media_root: Path | None = Field(
        default=None,
        description="Directory local video files must be inside. Without it, files are refused.",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Node engine.")
    detector: DetectorConfig = Field(
        default_factory=DetectorConfig, description="Object detection for every camera."
    )
    store: StoreConfig = Field(
        default_factory=StoreConfig, description="Where tags, events and media are kept."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Reconnect policy for all cameras."
    )
    cameras: list[CameraConfig] = Field(
        default_factory=list, max_length=10_000, description="The cameras to run."
    )
    api: ApiConfig = Field(
        default_factory=ApiConfig, description="The HTTP API, live stream, metrics and dashboard."
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig, description="Webhooks that events are delivered to."
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        first_index: dict[str, int] = {}
        for index, camera in enumerate(self.cameras):
            if camera.id in first_index:
                raise ValueError(
                    f"cameras[{index}].id: camera id {camera.id!r} is already used by "
                    f"cameras[{first_index[camera.id]}]"
                )
            first_index[camera.id] = index
        refused = self.alerts.refused_urls()
        if refused:
            raise ValueError("; ".join(f"alerts.{problem}" for problem in refused))
        for hook_index, hook in enumerate(self.alerts.webhooks):
            for index, camera_id in enumerate(hook.cameras or []):
                if camera_id not in first_index:
                    raise ValueError(
                        f"alerts.webhooks[{hook_index}].cameras[{index}]: unknown camera "
                        f"{camera_id[:64]!r} (not in cameras)"
                    )
        return self
