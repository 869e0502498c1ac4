# mypy: ignore-errors
"""Serve local H.264 MP4 clips as endless, live-paced RTSP streams (a test camera).

Runs under the system Python (``/usr/bin/python3``), not the project venv: it needs ``gi``
(PyGObject with GStreamer and gst-rtsp-server), which Debian packages and the venv does not have.
The feedtag package never imports this file.

    /usr/bin/python3 rtsp_server.py --port 8554 --mount /cam=clip.mp4 [--user U --password P]

Each clip is demuxed once into H.264 access units kept in memory. Every client gets its own
pipeline ``appsrc ! h264parse ! rtph264pay`` that replays those units forever, starting at the
clip's first keyframe, with timestamps shifted by one clip duration per loop so there is no gap.
``is-live`` plus the RTSP sinks' clock sync paces it at the clip's real frame rate. Prints
``READY rtsp://HOST:PORT`` on stdout once it serves; errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
# GstApp is imported for its side effect: it gives appsink its pull methods.
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402, F401

LAUNCH = (
    "( appsrc name=src is-live=true format=time"
    " ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
)
ROLE = "user"
NONE = Gst.CLOCK_TIME_NONE


@dataclass(frozen=True)
class AccessUnit:
    data: bytes
    pts: int  # nanoseconds from the clip's start
    dts: int  # nanoseconds from the clip's start, or NONE
    duration: int


@dataclass(frozen=True)
class Clip:
    caps: Gst.Caps
    units: list[AccessUnit]
    period: int  # nanoseconds one pass of the clip lasts; the timestamp step per loop


def demux(path: Path) -> list[Gst.Sample]:
    """Demux an MP4 into byte-stream H.264 access units; raise ValueError if that fails."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    pipeline = Gst.parse_launch(
        "filesrc name=file ! qtdemux ! h264parse"
        " ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    pipeline.get_by_name("file").set_property("location", str(path))
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    samples = []
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            # A file without H.264 video never links and never reaches EOS, so poll the bus too.
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            if msg is not None:
                err, _debug = msg.parse_error()
                raise ValueError(f"{path}: not an H.264 MP4 ({err.message})")
            sample = sink.try_pull_sample(100 * Gst.MSECOND)
            if sample is not None:
                samples.append(sample)
            elif sink.is_eos():
                break
    finally:
        pipeline.set_state(Gst.State.NULL)
    if not samples:
        raise ValueError(f"{path}: no H.264 frames")
    return samples


def load_clip(path: Path) -> Clip:
    """Load a clip's access units into memory, rebased to start at zero on a keyframe."""
    samples = demux(path)
    caps = samples[0].get_caps()
    raw = []
    for sample in samples:
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            raise ValueError(f"{path}: cannot read a frame")
        data = bytes(info.data)
        buf.unmap(info)
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        raw.append((data, buf.pts, buf.dts, buf.duration, key))
    # Start at the first keyframe so a new client can decode from its very first frame.
    while raw and not raw[0][4]:
        raw.pop(0)
    if not raw or any(pts == NONE for _, pts, _, _, _ in raw):
        raise ValueError(f"{path}: no keyframe or missing timestamps")

    # Frame duration for units that lack one: from the caps' frame rate, else the mean PTS step.
    ok, num, den = caps.get_structure(0).get_fraction("framerate")
    if ok and num > 0:
        frame = Gst.util_uint64_scale(Gst.SECOND, den, num)
    else:
        frame = (raw[-1][1] - raw[0][1]) // max(len(raw) - 1, 1) or 40 * Gst.MSECOND
    # Rebase so the earliest timestamp (a DTS, with B-frames) is zero.
    base = min(min(pts, dts) if dts != NONE else pts for _, pts, dts, _, _ in raw)
    units = [
        AccessUnit(
            data,
            pts - base,
            dts - base if dts != NONE else NONE,
            dur if dur != NONE else frame,
        )
        for data, pts, dts, dur, _ in raw
    ]
    period = max(u.pts + u.duration for u in units) - min(u.pts for u in units)
    return Clip(caps, units, period)


class Replayer:
    """Feeds one media's appsrc, one access unit per ``need-data``, looping the clip forever."""

    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.index = 0
        self.loop = 0
        self.start: int | None = None

    def on_need_data(self, src, _length) -> None:
        if self.start is None:
            # Stamp in the pipeline's running time, so the first frame is due now rather than
            # late (a burst) when the media was prepared a while before the first buffer.
            clock = src.get_clock()
            self.start = max(clock.get_time() - src.get_base_time(), 0) if clock else 0
        unit = self.clip.units[self.index]
        offset = self.start + self.loop * self.clip.period
        buf = Gst.Buffer.new_wrapped(unit.data)
        buf.pts = unit.pts + offset
        buf.dts = unit.dts + offset if unit.dts != NONE else NONE
        buf.duration = unit.duration
        self.index += 1
        if self.index == len(self.clip.units):
            self.index = 0
            self.loop += 1
        src.emit("push-buffer", buf)


def make_factory(clip: Clip, auth: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    # Not shared: each client gets its own pipeline, starting at a keyframe, and tearing one
    # down (client killed, reconnecting) cannot disturb another. Replaying costs no encoding.
    factory.set_shared(False)
    if auth:
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )

    def on_media_configure(_factory, media) -> None:
        src = media.get_element().get_by_name_recurse_up("src")
        src.set_property("caps", clip.caps)
        replayer = Replayer(clip)
        # The handler holds the replayer; both go away with the media's pipeline.
        src.connect("need-data", replayer.on_need_data)

    factory.connect("media-configure", on_media_configure)
    return factory


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="RTSP port to listen on")
    parser.add_argument(
        "--mount",
        action="append",
        required=True,
        metavar="/NAME=FILE.mp4",
        help="serve FILE.mp4 at rtsp://HOST:PORT/NAME (repeatable)",
    )
    parser.add_argument("--user", help="require RTSP basic auth with this user name")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one ends (checked every second)",
    )
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    mounts = {}
    for spec in args.mount:
        name, sep, file = spec.partition("=")
        if not sep or not name.startswith("/") or len(name) < 2 or not file:
            parser.error(f"bad --mount {spec!r}; expected /NAME=FILE.mp4")
        if name in mounts:
            parser.error(f"mount {name} given twice")
        mounts[name] = Path(file)
    args.mounts = mounts
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Gst.init(None)
    try:
        clips = {name: load_clip(path) for name, path in args.mounts.items()}
    except ValueError as exc:
        sys.stderr.write(f"rtsp_server: {exc}\n")
        return 1

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    use_auth = args.user is not None
    if use_auth:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        # No default token: a request without valid credentials gets 401 Unauthorized.
        server.set_auth(auth)
    mount_points = server.get_mount_points()
    for name, clip in clips.items():
        mount_points.add_factory(name, make_factory(clip, use_auth))

    if server.attach(None) == 0:
        sys.stderr.write(f"rtsp_server: cannot listen on {args.host}:{args.port}\n")
        return 1
    loop = GLib.MainLoop()
    # Sessions of clients that vanished (killed, UDP) expire only when the pool is cleaned.
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: pool.cleanup() >= 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    if args.exit_with_parent:
        parent = os.getppid()

        def parent_alive() -> bool:
            if os.getppid() != parent:  # reparented: the starter is gone
                loop.quit()
                return False
            return True

        GLib.timeout_add_seconds(1, parent_alive)
    sys.stdout.write(f"READY rtsp://{args.host}:{server.get_bound_port()}\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
