# ruff: noqa: T201, S105 - a command-line benchmark; the webhook secret is a local test value
"""End-to-end alert latency: from the analysed frame an event fired on to a webhook receiver
and to an MQTT subscriber, with a node running N live-paced feeds.

    PYTHONPATH=src python bench/alert_latency.py --feeds 20 --seconds 60

The node (``NodeApp``, the composition root ``feedtag run`` uses) plays the H.264 sample
clips (``feedtag.bench.footage``, 640x360, a keyframe every second) in a loop at their own
pace, with the demo's zones, lines and rules, the real detector, the store, and alerts to a
local webhook receiver and a local mosquitto (started here). Latency is the receiver's clock
at arrival minus the event's ``started_at``. For a line crossing that is the wall time of
the analysed frame it fired on: the alert latency proper. Zone enter and exit are shown
apart: their ``started_at`` is when the change began, before the frame that confirmed it
(the rule's ``min_duration_s``; an exit by a lost track is confirmed after ``lost_track_s``).
Lasting kinds (dwell, crowding) are counted, not measured. Events of the first ``--warmup``
seconds are left out. It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from feedtag.bench.capacity import start_staggered
from feedtag.bench.demo import sample_feeds
from feedtag.config import validate_config
from feedtag.runtime.app import NodeApp

MOSQUITTO = "/usr/sbin/mosquitto"
#: what is measured: kinds whose started_at is the frame they fired on, and the zone kinds
MEASURED = {"line_cross": ("line_cross",), "zone enter/exit": ("zone_enter", "zone_exit")}
SECRET = "alert-latency-bench-secret"
KEYFRAME_INTERVAL_S = 1.0  # the footage's GOP: 25 frames at 25 fps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Arrivals:
    """(arrival time, event) of every event a receiver got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[float, dict[str, Any]]] = []

    def add(self, body: bytes) -> None:
        at = time.time()
        with self.lock:
            self.items.append((at, json.loads(body)))


def start_receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.add(body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder.chmod(0o755)
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    conf.chmod(0o644)
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("mosquitto did not start")


def start_subscriber(port: int, arrivals: Arrivals) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-latency-bench")
    client.on_connect = lambda c, *_: c.subscribe("feedtag/+/events/#", qos=1)
    client.on_message = lambda _c, _u, message: arrivals.add(message.payload)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def node_config(feeds: int, data_dir: Path, receiver_port: int, broker_port: int) -> Any:
    media_root, cameras = sample_feeds(feeds)
    alerts = {
        "allow_networks": ["127.0.0.0/8"],
        "webhooks": [{"id": "bench", "url": f"http://127.0.0.1:{receiver_port}/hook",
                      "secret": SECRET}],
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}"},
    }  # fmt: skip
    data = {
        "media_root": str(media_root),
        "store": {"data_dir": str(data_dir)},
        "cameras": cameras,
        "alerts": alerts,
    }
    return validate_config(data, source="alert latency bench")


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)} (too few for percentiles)"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"n={len(values)}  p50={cuts[49]:.3f} s  p99={cuts[98]:.3f} s  max={max(values):.3f} s"


def latencies(arrivals: Arrivals, after: float, kinds: tuple[str, ...]) -> list[float]:
    """Latencies of the events of ``kinds`` that started after ``after``."""
    with arrivals.lock:
        return [
            at - event["started_at"]
            for at, event in arrivals.items
            if event["started_at"] >= after and event["kind"] in kinds
        ]


def saturation(app: NodeApp) -> dict[str, float]:
    snapshot = app.control.snapshot()
    statuses = [camera.ingest for camera in snapshot.cameras]
    vision = snapshot.vision_stage
    return {
        "analysed_fps": sum(s.analysed_fps for s in statuses),
        "frames_dropped": sum(sum(s.counters.frames_dropped.values()) for s in statuses),
        "postprocess_dropped": vision.postprocess_dropped if vision is not None else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    if not os.path.exists(MOSQUITTO):
        raise SystemExit(f"{MOSQUITTO} is needed (apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="feedtag-alert-bench-"))
    hooks, published = Arrivals(), Arrivals()
    receiver = start_receiver(hooks)
    broker, broker_port = start_broker(work)
    subscriber = start_subscriber(broker_port, published)
    config = node_config(args.feeds, work / "data", receiver.server_address[1], broker_port)
    # the node starts with no camera and the feeds join over a second, as cameras' keyframes
    # fall anywhere in the second (feedtag.bench.capacity.STAGGER_S)
    app = NodeApp(config.model_copy(update={"cameras": []}))
    try:
        app.start()
        start_staggered([lambda c=camera: app.control.add_camera(c) for camera in config.cameras])
        began = time.time()
        time.sleep(args.warmup)
        at_warm = saturation(app)
        time.sleep(args.seconds)
        at_end = saturation(app)
        delivery = app.control.snapshot().alerts
    finally:
        app.stop()
        subscriber.disconnect()
        subscriber.loop_stop()
        receiver.shutdown()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    measured_from = began + args.warmup
    print(f"feeds={args.feeds}  measured {args.seconds:.0f} s after {args.warmup:.0f} s warm-up")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"analysed fps (all feeds) at warm-up end {at_warm['analysed_fps']:.1f}, "
        f"at the end {at_end['analysed_fps']:.1f}; frames dropped while measured "
        f"{at_end['frames_dropped'] - at_warm['frames_dropped']:.0f}, results dropped "
        f"{at_end['postprocess_dropped'] - at_warm['postprocess_dropped']:.0f}"
    )
    if delivery is not None and delivery.latency_mean_s is not None:
        print(
            f"delivery alone (outbox row written -> receiver's answer, both routes, whole run): "
            f"mean {delivery.latency_mean_s:.3f} s, max {delivery.latency_max_s or 0:.3f} s"
        )
    target = KEYFRAME_INTERVAL_S + 1.0
    print(f"target: p99 < keyframe interval + 1 s = {target:.1f} s (line crossings)")
    for name, arrivals in (("webhook", hooks), ("mqtt", published)):
        for label, kinds in MEASURED.items():
            values = latencies(arrivals, measured_from, kinds)
            print(f"{name:8s} {label:16s} {percentiles(values)}")
        with arrivals.lock:
            total = sum(1 for _, event in arrivals.items if event["started_at"] >= measured_from)
        print(f"{name:8s} {'all kinds':16s} n={total} received")


if __name__ == "__main__":
    main()
