"""What the RTSP relay costs: N live RTSP feeds demuxed (no decoding) straight from the server
and then through the relay, measured as this process's CPU time per feed-second.

    .venv/bin/python bench/rtsp_relay.py --size 1280x720 --feeds 10 --seconds 20

Serves vtest.avi re-encoded to H.264 (25 fps, a keyframe a second) from the GStreamer RTSP
server under /usr/bin/python3. Prints one line per run; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

from feedtag.bench.demo import LoopingRtspServer
from feedtag.bench.footage import sample_h264
from feedtag.ingest.netpolicy import NetworkPolicy
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.urls import CameraUrl

WARM_UP_S = 3.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, options: OpenOptions, feeds: int, seconds: float) -> tuple[float, float]:
    """(ms of CPU per feed-second, Mbit/s per feed) over ``seconds`` after a warm-up."""
    stop = threading.Event()
    received = [0] * feeds

    def feed(index: int) -> None:
        with open_source(CameraUrl.parse(url), options) as container:
            for packet in container.demux(video=0):
                received[index] += packet.size
                if stop.is_set():
                    return

    threads = [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(feeds)]
    for thread in threads:
        thread.start()
    time.sleep(WARM_UP_S)
    cpu0, bytes0, wall0 = cpu_s(), sum(received), time.monotonic()
    time.sleep(seconds)
    cpu1, bytes1, wall1 = cpu_s(), sum(received), time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(10)
    wall = wall1 - wall0
    return (cpu1 - cpu0) / wall / feeds * 1000, (bytes1 - bytes0) * 8 / wall / feeds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--feeds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    clip = sample_h264("vtest", width, height)
    relayed = OpenOptions(5, 5, policy=NetworkPolicy.allowing(["127.0.0.0/8"]))
    with LoopingRtspServer({"vtest": clip}) as server:
        url = server.url("vtest")
        direct_ms, mbit = measure(url, OpenOptions(5, 5), args.feeds, args.seconds)
        relay_ms, _ = measure(url, relayed, args.feeds, args.seconds)
    print(  # noqa: T201 - the benchmark's result
        f"{args.size}, {args.feeds} feeds, {mbit:.2f} Mbit/s each: direct {direct_ms:.2f} ms "
        f"CPU per feed-second, through the relay {relay_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
