"""One camera's ingest: open, demux, decode by policy, hand frames on; reconnect on faults.

The loop is short on purpose; it asks policy objects what to do: :class:`Backoff` how long
to wait, :class:`RestartBudget` whether to keep trying, :class:`StallDetector` whether the
stream has stalled, :class:`DecodePolicy` which packets to decode and which frames to keep.
A camera's failure stays in its own thread: nothing here blocks another camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from time import thread_time_ns
from typing import Final, TypeAlias

import av
import av.container
import av.video
import numpy as np
import numpy.typing as npt

from feedtag.config.models import CameraConfig, ReconnectConfig
from feedtag.core import (
    AnalysisLevel,
    CameraState,
    CameraStatus,
    DecodeMode,
    Frame,
    IngestCounters,
    PacketGateState,
)
from feedtag.errors import (
    SourceEnded,
    SourceError,
    SourceInvalidData,
    SourceStalled,
    SourceTimeout,
)
from feedtag.ingest.decode import (
    MAX_FRAME_PIXELS,
    SAMPLE_TOLERANCE_S,
    DecodePolicy,
    FrameConverter,
    analysis_size,
)
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.netpolicy import NetworkPolicy
from feedtag.ingest.pacing import Pacer
from feedtag.ingest.policies import (
    Backoff,
    PacketGate,
    RateMeter,
    ReadHold,
    RestartBudget,
    StallDetector,
)
from feedtag.ingest.rate import AdaptiveRate
from feedtag.ingest.ring import PacketRing, RingRecorder
from feedtag.ingest.source import OpenOptions, open_source, status_reason, translate_read_error
from feedtag.urls import RedactingFilter, redact

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

#: ``(width, height) -> (width, height)``: the size the detector scales a whole frame to
ModelSize: TypeAlias = Callable[[int, int], tuple[int, int]]

DECODE_ERROR = "decode_error"
#: a thread that does not end within this after stop() is reported, not waited for
JOIN_TIMEOUT_S: Final = 5.0
#: a looping file whose stream time did not advance over a pass waits this long to reopen
UNTIMED_LOOP_WAIT_S: Final = 1.0
#: a read (with its pacing) that took this long waited for its source: the camera has caught up
CAUGHT_UP_S: Final = 0.002
#: a file read as fast as possible waits at most this long for the result of the frame it
#: handed on before the packet gate decides (then the gate stays shut: the frame is decoded)
RESULT_WAIT_S: Final = 10.0


class CameraIngest:
    """Runs one camera in its own thread until :meth:`stop`.

    Frames go to ``queue``; :meth:`status` is safe to call from any thread.
    """

    def __init__(
        self,
        camera: CameraConfig,
        reconnect: ReconnectConfig,
        queue: FrameQueue,
        *,
        ring: PacketRing | None = None,
        clock: Callable[[], float] = time.monotonic,
        network: NetworkPolicy | None = None,
        rate: AdaptiveRate | None = None,
        model_size: ModelSize | None = None,
    ) -> None:
        """``network``: where this camera's connections may go, checked on each (None: no
        checks, for a URL the operator gave a command directly). ``rate``: the adaptive
        analysis rate the vision stage steers (None: analysis_fps all the time).
        ``model_size``: the size the detector scales a whole frame of a given size to
        (:meth:`~feedtag.vision.detector.ScaledInputDetector.picture_size`); a frame it
        would shrink also comes at that size (``Frame.model_image``), made from the decoded
        picture by a second swscale call (0.5 ms for 416 x 234 from 640 x 360 here, where
        the detector's resize of the RGB frame took 1.2 ms)."""
        self.camera = camera
        self.rate = rate
        self._model_size = model_size
        self.queue = queue
        self.ring = ring  # compressed packets kept for event clips (raw media; off by default)
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(
            reconnect.initial_backoff_s,
            reconnect.max_backoff_s,
            reconnect.multiplier,
            reconnect.jitter,
        )
        self._budget = RestartBudget(reconnect.restart_budget, reconnect.restart_window_s, clock)
        self._cooldown_s = reconnect.cooldown_s
        self._options = OpenOptions(
            camera.open_timeout_s, camera.read_timeout_s, camera.rtsp_transport, network
        )
        # The watchdog never fires between two frames the policy wants anyway (at the
        # slowest rate the camera may be sampled at).
        slowest_fps = camera.analysis_rates[0] if rate is not None else camera.analysis_fps
        stall_s = max(camera.stall_timeout_s, 2.0 / slowest_fps)
        self._stall = StallDetector(stall_s, clock)
        # keyframes left undecoded at the floor rate when packet sizes show no change
        self._packet_gate = (
            rate is not None
            and camera.adaptive.enabled
            and camera.adaptive.packet_gate
            and camera.gate.enabled
        )
        self._checking = False  # the next frame taken checks the packet gate
        self._packets: PacketGate | None = None  # the current connection's
        self._live = not camera.lossless
        # the last picture decoded and handed on, and its stream time: what the packet gate
        # hands on again in place of a keyframe it leaves undecoded
        self._picture: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None] | None = None
        self._decoded_s: float | None = None
        self._skip_gop = False  # the packet gate left this group of pictures undecoded
        self._policy = self._new_policy()
        self._converter = FrameConverter()
        self._model_converter = FrameConverter()  # its own swscale context: another size
        self._decoded_rate = RateMeter(clock=clock)
        self._analysed_rate = RateMeter(clock=clock)
        # status fields, written by the ingest thread under _lock
        self._state = CameraState.CONNECTING
        self._reason = "starting"
        self._since = time.time()
        self._retry_at: float | None = None
        self._stream_info: tuple[str, int, int] | None = None
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._index = 0
        self._wall_origin: float | None = None

    def _new_policy(self) -> DecodePolicy:
        return DecodePolicy(
            self.camera.analysis_fps, keyframes_allowed=self.camera.decode == "auto"
        )

    # -- control ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"ingest-{self.camera.id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it notices within one read timeout at most."""
        self._stop.set()

    def join(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Wait for the thread; True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        origin = self.camera.origin
        pacer = Pacer(
            self._stop,
            realtime=self.camera.url.is_file and self.camera.realtime,
            start_in_s=None if origin is None else origin - time.time(),
        )
        while not self._stop.is_set():
            error: SourceError
            try:
                decoded_before, stream_before = self._counts["frames_decoded"], pacer.now_stream()
                self._stream_once(pacer)
                if self._stop.is_set():
                    break
                if self.camera.url.is_file:
                    self._after_file_pass(pacer, decoded_before, stream_before)
                    if self.camera.loop:
                        continue
                    self._set_state(CameraState.STOPPED, "end of file")
                    return
                error = SourceEnded("the server closed the stream", self.camera.url.masked())
            except SourceError as exc:
                error = exc
            except Exception as exc:
                log.exception("camera %s: unexpected error", self.camera.id)
                error = SourceError(f"unexpected {type(exc).__name__}", self.camera.url.masked())
            if self._stop.is_set():
                break
            self._after_failure(error)
        self._set_state(CameraState.STOPPED, "stopped")

    def _after_file_pass(self, pacer: Pacer, decoded_before: int, stream_before: float) -> None:
        """Raises if a pass over a file decoded nothing; slows a loop that nothing paces."""
        if self._counts["frames_decoded"] == decoded_before:
            # A file FFmpeg opens but cannot decode (a corrupt SPS): a looping camera reopened
            # it thousands of times a second, its status "connecting".
            raise SourceInvalidData(
                "the file has no decodable video frame", self.camera.url.masked()
            )
        if self.camera.loop and pacer.now_stream() <= stream_before:
            # No timestamps (raw H.264, one image renamed .mp4): stream time stands still and
            # the pacer never waits, so the loop would spin a core.
            self._stop.wait(UNTIMED_LOOP_WAIT_S)

    def _stream_once(self, pacer: Pacer) -> None:
        with open_source(self.camera.url, self._options) as container:
            self._counts["opens"] += 1
            stream = container.streams.video[0]
            stream.thread_count = 1  # per-feed cost: one decoder thread per camera at most
            context = stream.codec_context
            # A header may claim up to 16k x 16k (FFmpeg's limit): 400 MB a frame, if believed.
            context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}  # also mid-stream
            self._stream_info = (context.name, context.width, context.height)
            if context.width * context.height > MAX_FRAME_PIXELS:
                raise SourceInvalidData(
                    f"the stream claims {context.width}x{context.height} pixels, more than "
                    f"the {MAX_FRAME_PIXELS / 1e6:g} MP feedtag decodes",
                    self.camera.url.masked(),
                )
            if not self.camera.url.is_file or self._counts["opens"] == 1:
                self._policy = self._new_policy()
            self._stall.start()
            pacer.next_loop()  # stream time continues across loops and reconnects
            recorder = self.ring.recorder(stream) if self.ring is not None else None
            self._demux(container, stream, pacer, recorder)

    def _demux(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        pacer: Pacer,
        recorder: RingRecorder | None,
    ) -> None:
        time_base = float(stream.time_base) if stream.time_base else 1 / 90_000
        demuxer = container.demux(stream)
        rate = self.rate
        hold = ReadHold()
        packets = self._packets = PacketGate() if self._packet_gate else None
        self._skip_gop = False
        clock = self._clock
        while not self._stop.is_set():
            read_at = clock()
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - translated at the boundary
                raise self._read_failure(exc) from None
            # This runs for every packet of every camera: each property is read once.
            size, is_keyframe, stamp = packet.size, packet.is_keyframe, packet.dts
            counts = self._counts
            counts["packets"] += 1
            counts["bytes"] += size
            counts["keyframes"] += is_keyframe
            if stamp is None:
                stamp = packet.pts
            t_s = pacer.stream_time(stamp * time_base) if stamp is not None else None
            if t_s is not None and not pacer.wait_until(t_s):
                return
            caught_up = clock() - read_at > CAUGHT_UP_S
            if rate is not None and rate.target_fps != self._policy.analysis_fps:
                self._policy.set_analysis_fps(rate.target_fps)
            hold.observe(t_s, size, is_keyframe)
            if self._admit(packets, t_s, size, is_keyframe):
                self._decode(stream, packet, time_base, pacer)
            if recorder is not None:
                recorder.add(packet)  # after decoding: the bitstream filter takes the packet
            if self._stall.is_stalled():
                raise SourceStalled(
                    f"no decoded frame for {self._stall.silent_for():.1f} s "
                    "while data still arrives",
                    self.camera.url.masked(),
                )
            if caught_up and t_s is not None and self._policy.mode is DecodeMode.KEYFRAMES:
                held = hold.hold_s(t_s, self._policy.next_keyframe_s())
                if held and not self._hold(pacer, t_s, held):
                    return
        else:
            return
        self._flush(stream, time_base, pacer)

    def _admit(
        self, packets: PacketGate | None, t_s: float | None, size: int, is_keyframe: bool
    ) -> bool:
        """Whether a packet goes to the decoder: the decode policy's answer, unless the packet
        gate leaves its group of pictures undecoded (decided at its keyframe)."""
        admitted = bool(size) and self._policy.admit_packet(t_s, is_keyframe)
        if packets is None:
            return admitted
        packets.observe(t_s, size, is_keyframe)
        if is_keyframe:
            self._skip_gop = admitted and self._unchanged(packets, t_s)
            if admitted and not self._skip_gop:
                packets.decoded()
        return admitted and not self._skip_gop

    def _unchanged(self, packets: PacketGate, t_s: float | None) -> bool:
        """At a keyframe due for decoding: whether to leave it and its group of pictures
        undecoded because the packet sizes show nothing changed (docs/ingest.md, "The packet
        gate"). A frame still comes at least every ``gate.refresh_s``, and that frame checks
        the packet gate (:meth:`~feedtag.ingest.rate.AdaptiveRate.checks_packet_gate`)."""
        self._checking = False
        rate, handed, decoded = self.rate, self._policy.last_sample_s, self._decoded_s
        if rate is None or t_s is None or self._picture is None or not packets.unchanged:
            return False
        if not rate.packet_gate_open(t_s, None):
            return False  # not at the floor rate, or shut
        if handed is not None and not self._live:
            # A file read as fast as possible runs ahead of its analysis: decide on the level
            # the last frame handed on leads to, as a live camera (seconds later) would.
            rate.wait_observed(handed, RESULT_WAIT_S)
        if not rate.packet_gate_open(t_s, handed):
            return False
        if decoded is None or t_s - decoded >= self.camera.gate.refresh_s - SAMPLE_TOLERANCE_S:
            self._checking = True
            return False
        # The keyframe stands for the frame the rate asked for: the picture before is handed
        # on again in its place, so that analysis carries its result forward as for a frame
        # the gate found unchanged (tracks and presence go on), and the next is due a period on.
        self._policy.take_frame(t_s)
        self._counts["keyframes_unchanged"] += 1
        # the stream still delivers pictures: left undecoded by choice is not a stall
        self._stall.frame_decoded()
        image, model_image = self._picture
        self._hand_on(t_s, image, model_image, keyframe=True, repeat=True)
        return True

    def _hold(self, pacer: Pacer, t_s: float, held_s: float) -> bool:
        """Leave the source unread for ``held_s`` (:class:`ReadHold`); False if asked to stop.
        A file read as a live feed holds on its own timeline."""
        if pacer.realtime:
            return pacer.hold_until(t_s + held_s)
        return not self._stop.wait(held_s)

    def _flush(self, stream: av.video.VideoStream, time_base: float, pacer: Pacer) -> None:
        """At the end of a file, take the frames the decoder still holds."""
        try:
            for frame in stream.codec_context.decode(None):
                self._on_frame(frame, time_base, pacer)
        except (av.error.InvalidDataError, av.error.EOFError, ValueError):
            self._counts["decode_errors"] += 1

    def _decode(
        self,
        stream: av.video.VideoStream,
        packet: av.Packet[av.video.VideoStream],
        time_base: float,
        pacer: Pacer,
    ) -> None:
        # this thread's CPU so far, the camera's ingest cost: read in the thread, at each
        # packet it decodes rather than each it reads (a status lags by what came since)
        self._counts["cpu_ns"] = thread_time_ns()
        context = stream.codec_context
        if context.skip_frame != self._policy.skip_frame:
            context.skip_frame = self._policy.skip_frame
        try:
            frames = context.decode(packet)
        except (av.error.FFmpegError, ValueError):
            self._counts["decode_errors"] += 1
            self._drops[DECODE_ERROR] += 1
            return
        for frame in frames:
            self._on_frame(frame, time_base, pacer)

    def _on_frame(self, frame: av.VideoFrame, time_base: float, pacer: Pacer) -> None:
        self._counts["frames_decoded"] += 1
        self._decoded_rate.tick()
        self._stall.frame_decoded()
        if self._state is not CameraState.ONLINE:
            self._set_state(CameraState.ONLINE, "receiving frames")
            self._backoff.reset()
        stamp = frame.pts if frame.pts is not None else frame.dts
        t_s = pacer.stream_time(stamp * time_base) if stamp is not None else pacer.now_stream()
        if not self._policy.take_frame(t_s):
            return
        if self._checking and self.rate is not None:
            self._checking = False
            self.rate.checks_packet_gate(t_s)
        width, height = analysis_size(
            frame.width, frame.height, self.camera.analysis_width, self.camera.analysis_height
        )
        image = self._converter.to_rgb(frame, width, height)
        model_image = None
        if self._model_size is not None:
            model_width, model_height = self._model_size(width, height)
            if model_width < width and model_height < height:
                model_image = self._model_converter.to_rgb(frame, model_width, model_height)
        if self._packet_gate:
            self._picture = (image, model_image)
            self._decoded_s = t_s
        self._hand_on(t_s, image, model_image, keyframe=frame.key_frame)

    def _hand_on(
        self,
        t_s: float,
        image: npt.NDArray[np.uint8],
        model_image: npt.NDArray[np.uint8] | None,
        *,
        keyframe: bool,
        repeat: bool = False,
    ) -> None:
        self.queue.put(
            Frame(
                self.camera.id, self._index, t_s, self._wall_time(t_s), image, keyframe,
                model_image, repeat,
            ),
            self._stop,
        )  # fmt: skip
        self._index += 1
        self._counts["frames_analysed"] += 1
        self._analysed_rate.tick()

    def _read_failure(self, exc: BaseException) -> SourceError:
        error = translate_read_error(exc, self.camera.url)
        if isinstance(error, SourceTimeout):
            # Connected, but nothing for a whole read timeout: the stream has stalled.
            silent = self._options.read_timeout_s
            return SourceStalled(f"no data received for {silent:.1f} s", error.url)
        return error

    def _wall_time(self, t_s: float) -> float:
        """When the frame happened. Live (and live-paced) sources: now. A file on a fixed
        timeline: its ``origin`` plus its stream time. A file read as fast as possible: the
        analysis start plus its stream time, so that events and tags keep the recording's
        own timeline instead of the moment a fast machine got to them."""
        if self.camera.origin is not None:
            return self.camera.origin + t_s
        if not self.camera.lossless:
            return time.time()
        if self._wall_origin is None:
            self._wall_origin = time.time() - t_s
        return self._wall_origin + t_s

    # -- faults -----------------------------------------------------------------------

    def _after_failure(self, error: SourceError) -> None:
        if isinstance(error, SourceStalled):
            self._counts["stalls"] += 1
            self._set_state(CameraState.STALLED, str(error))
        else:
            self._set_state(CameraState.OFFLINE, status_reason(error))
        log.warning("camera %s: %s", self.camera.id, redact(str(error)))
        if self._budget.try_spend():
            delay = self._backoff.next_delay()
        else:
            delay = self._cooldown_s
            self._set_state(
                CameraState.OFFLINE,
                f"restart budget spent; cooling down for {delay:.0f} s after: {error}",
            )
        self._counts["reconnects"] += 1
        with self._lock:
            self._retry_at = self._clock() + delay
        self._stop.wait(delay)
        with self._lock:
            self._retry_at = None

    def _set_state(self, state: CameraState, reason: str | None) -> None:
        with self._lock:
            if state is not self._state:
                self._since = time.time()
                if state in (CameraState.OFFLINE, CameraState.STALLED, CameraState.ONLINE):
                    log.info(
                        "camera %s: %s (%s)", self.camera.id, state.value, redact(reason or "")
                    )
            self._state = state
            if reason is not None:
                self._reason = redact(reason)

    # -- status -----------------------------------------------------------------------

    @property
    def state(self) -> CameraState:
        """The camera's state now (what :meth:`status` would say, without the rest)."""
        return self._state  # one attribute read: atomic under the GIL

    def status(self) -> CameraStatus:
        """A consistent snapshot; the URL in it is masked."""
        with self._lock:
            state, reason, since = self._state, self._reason, self._since
            retry_at = self._retry_at
        drops = Counter(dict(self._drops))  # dict() copies atomically under the GIL
        drops.update(dict(self.queue.dropped))
        codec, width, height = self._stream_info or (None, None, None)
        mode = self._policy.mode if self._counts["opens"] else DecodeMode.MEASURING
        counts = self._counts
        return CameraStatus(
            camera_id=self.camera.id,
            url=self.camera.url.masked(),
            state=state,
            reason=reason,
            since=since,
            mode=mode,
            keyframe_interval_s=self._policy.meter.interval_s,
            decoded_fps=self._decoded_rate.rate(),
            analysed_fps=self._analysed_rate.rate(),
            codec=codec,
            width=width,
            height=height,
            counters=IngestCounters(
                packets=counts["packets"],
                bytes=counts["bytes"],
                keyframes=counts["keyframes"],
                keyframes_unchanged=counts["keyframes_unchanged"],
                frames_decoded=counts["frames_decoded"],
                frames_analysed=counts["frames_analysed"],
                frames_dropped=dict(drops),
                decode_errors=counts["decode_errors"],
                reconnects=counts["reconnects"],
                stalls=counts["stalls"],
                cpu_s=counts["cpu_ns"] / 1e9,
            ),
            next_retry_in_s=None if retry_at is None else max(0.0, retry_at - self._clock()),
            target_fps=self._policy.analysis_fps,
            analysis_level=AnalysisLevel.NORMAL if self.rate is None else self.rate.level,
            packet_gate=self._packet_gate_state(),
        )

    def _packet_gate_state(self) -> PacketGateState:
        packets, rate = self._packets, self.rate
        if not self._packet_gate or rate is None:
            return PacketGateState.OFF
        if rate.packet_gate_distrusted():
            return PacketGateState.DISTRUSTED
        believed = None if packets is None else packets.believed
        if believed is None:
            return PacketGateState.LEARNING
        return PacketGateState.BELIEVED if believed else PacketGateState.NOT_BELIEVED
