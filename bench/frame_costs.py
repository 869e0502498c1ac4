# ruff: noqa: T201 - a command-line benchmark
"""What each piece of a live feed's analysed frame costs, measured piece by piece on the
sample footage (vtest.avi cut to 16:9, H.264, a keyframe every second):

    PYTHONPATH=src python bench/frame_costs.py [--feeds 16,64] [--seconds 15]

- **paced demux**: one thread per feed reading packets at the stream's own pace, as ingest
  reads a camera, without decoding; then the same with keyframes decoded. Process CPU per
  feed-second and per packet.
- **ingest, reads held or not**: feedtag's own camera ingest on the same clip, live-paced,
  decoding keyframes and converting each analysed frame, with its reads held between
  keyframes (docs/ingest.md) and, for comparison, with every packet waited for.
- **keyframe decode**: milliseconds per keyframe at 640x360 and 1280x720.
- **conversion and detection** with the default detector, per analysed frame: the analysed
  frame at 640 wide resized by the detector (what happened before ingest made
  ``Frame.model_image``), against the analysed frame plus a second conversion to the model's
  scale from the decoded picture (what ingest does now). Best of three rounds, process CPU
  (the runtime's own threads included).

It prints numbers; it is not a test. docs/performance.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import av.video.frame
import psutil

from feedtag.bench.footage import sample_h264
from feedtag.config import validate_config
from feedtag.config.models import DetectorConfig
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.decode import FrameConverter
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.policies import ReadHold
from feedtag.runtime.detection import build_detector
from feedtag.vision.detector import picture_size_of

WARMUP_S = 3.0


def paced_demux(path: Path, feeds: int, seconds: float, decode: bool) -> tuple[float, float]:
    """(CPU ms per feed-second, CPU µs per packet) of ``feeds`` live-paced readers."""
    stop = threading.Event()
    packets = [0] * feeds

    def read(index: int) -> None:
        # feeds start spread over one second, as independent cameras' keyframes are
        start = time.time() + index / feeds
        while not stop.is_set():
            last = 0.0
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                stream.codec_context.skip_frame = "NONKEY"
                for packet in container.demux(stream):
                    if packet.dts is None or packet.time_base is None:
                        continue
                    last = float(packet.dts * packet.time_base)
                    delay = start + last - time.time()
                    if delay > 0 and stop.wait(delay):
                        return
                    packets[index] += 1
                    if decode and packet.is_keyframe:
                        packet.decode()
            start += last + 1 / 25

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(feeds)]
    for thread in threads:
        thread.start()
    process = psutil.Process()
    time.sleep(WARMUP_S)
    cpu_start, count_start, wall_start = sum(process.cpu_times()[:2]), sum(packets), time.time()
    time.sleep(seconds)
    cpu = sum(process.cpu_times()[:2]) - cpu_start
    count, wall = sum(packets) - count_start, time.time() - wall_start
    stop.set()
    for thread in threads:
        thread.join(5)
    return cpu / feeds / wall * 1000, cpu / max(1, count) * 1e6


def ingest_cost(path: Path, feeds: int, seconds: float, *, held: bool) -> float:
    """CPU ms per feed-second of ``feeds`` cameras of feedtag's ingest on ``path``."""
    config = validate_config(
        {
            "media_root": str(path.parent),
            "cameras": [{"id": f"c{i}", "url": path.name, "loop": True} for i in range(feeds)],
        }
    )
    hold_s = ReadHold.hold_s
    if not held:
        ReadHold.hold_s = lambda self, now_s, next_keyframe_s: 0.0  # type: ignore[method-assign]
    cameras = [CameraIngest(c, config.reconnect, FrameQueue(4)) for c in config.cameras]
    try:
        for camera in cameras:
            camera.start()
            time.sleep(1 / feeds)  # spread over a second, as independent cameras are
        process = psutil.Process()
        time.sleep(WARMUP_S)
        cpu_start, wall_start = sum(process.cpu_times()[:2]), time.time()
        time.sleep(seconds)
        cpu, wall = sum(process.cpu_times()[:2]) - cpu_start, time.time() - wall_start
    finally:
        for camera in cameras:
            camera.stop()
        for camera in cameras:
            camera.join()
        ReadHold.hold_s = hold_s  # type: ignore[method-assign]
    return cpu / feeds / wall * 1000


def keyframe_decode_ms(path: Path, rounds: int = 3) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [packet for packet in container.demux(stream) if packet.is_keyframe and packet.size]
    best = float("inf")
    for _ in range(rounds):
        context = av.CodecContext.create("h264", "r")
        context.extradata = stream.codec_context.extradata
        context.thread_count = 1
        started = time.process_time()
        for packet in keys:
            context.decode(packet)
        best = min(best, (time.process_time() - started) / len(keys) * 1000)
    return best


def per_frame_ms(
    frames: list[av.video.frame.VideoFrame], work: Callable[[av.VideoFrame], object]
) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for frame in frames * 3:
            work(frame)
        best = min(best, (time.process_time() - started) / (3 * len(frames)) * 1000)
    return best


def conversion_and_detection(path: Path) -> tuple[float, float]:
    """(ms before, ms now) per analysed frame: 640-wide RGB resized by the detector, against
    640-wide RGB plus the model-scale picture from the decoded frame."""
    detector = build_detector(DetectorConfig())
    model_size = picture_size_of(detector)
    assert model_size is not None  # noqa: S101 - the default detector letterboxes
    with av.open(str(path)) as container:
        frames = [frame for _, frame in zip(range(40), container.decode(video=0), strict=False)]
    width = 640
    height = round(frames[0].height * width / frames[0].width)
    small = model_size(width, height)
    analysed, scaled = FrameConverter(), FrameConverter()

    def before(frame: av.VideoFrame) -> None:
        detector.detect([analysed.to_rgb(frame, width, height)])

    def now(frame: av.VideoFrame) -> None:
        analysed.to_rgb(frame, width, height)
        detector.detect([scaled.to_rgb(frame, *small)])

    return per_frame_ms(frames, before), per_frame_ms(frames, now)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/frame_costs.py")
    parser.add_argument("--feeds", default="16,64", help="feed counts for the paced demux")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    clips = {size: sample_h264("vtest", *size) for size in ((640, 360), (1280, 720))}
    for feeds in (int(n) for n in args.feeds.split(",")):
        for decode in (False, True):
            per_feed, per_packet = paced_demux(clips[640, 360], feeds, args.seconds, decode)
            what = "demux + keyframe decode" if decode else "demux only"
            print(f"paced {what}, {feeds} feeds at 640x360: {per_feed:.2f} ms CPU per "
                  f"feed-second, {per_packet:.0f} us per packet")  # fmt: skip
    for feeds in (int(n) for n in args.feeds.split(",")):
        for held in (True, False):
            cost = ingest_cost(clips[640, 360], feeds, args.seconds, held=held)
            what = "reads held between keyframes" if held else "every packet waited for"
            print(f"ingest, {what}, {feeds} feeds at 640x360: {cost:.2f} ms CPU per feed-second")
    for (width, height), path in clips.items():
        print(f"keyframe decode {width}x{height}: {keyframe_decode_ms(path):.2f} ms")
    for (width, height), path in clips.items():
        before, now = conversion_and_detection(path)
        print(f"conversion + detection, {width}x{height} stream: detector resizes {before:.2f} ms,"
              f" model image from ingest {now:.2f} ms per analysed frame")  # fmt: skip


if __name__ == "__main__":
    main()
