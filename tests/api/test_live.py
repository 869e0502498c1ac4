"""End to end on real footage: the real NodeEngine (ingest, detector, tracker, rules, store)
behind the real API served by uvicorn, fed by the looping RTSP server.

Live events arrive on the SSE stream (only the cameras a token may see), are searchable, and
their anonymized snapshots are served; thumbnails appear; /metrics reports the live engine;
cameras are added, changed and removed at run time while another camera keeps its ingest
thread and keeps counting frames.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from feedtag.bench.demo import BIKES_ANALYTICS, VTEST_ANALYTICS

from ..conftest import RtspServer, wait_for
from .server import RunningServer, start_api_server

pytestmark = [pytest.mark.system, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, rtsp_server: RtspServer, models_dir: Path
) -> Iterator[RunningServer]:
    cameras = [
        {"id": "lobby", "url": rtsp_server.url("vtest"), "analysis_fps": 5,
         "analytics": VTEST_ANALYTICS},
        {"id": "street", "url": rtsp_server.url("bikes"), "analytics": BIKES_ANALYTICS},
    ]  # fmt: skip
    with start_api_server(
        tmp_path_factory.mktemp("live"), cameras, models_dir=models_dir
    ) as server:
        yield server


class StreamReader:
    """Reads an SSE stream in a thread, collecting its messages."""

    def __init__(self, url: str, token: str) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.raw: list[str] = []
        self._url, self._token = url, token
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            with httpx.stream("GET", self._url, headers=headers, timeout=60) as answer:
                self.status, self.headers = answer.status_code, answer.headers
                name = "message"
                for line in answer.iter_lines():
                    self.raw.append(line)
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        self.messages.append((name, json.loads(line[6:])))
        except httpx.HTTPError:
            pass  # the server stopped

    def events(self) -> list[dict[str, Any]]:
        return [data for name, data in self.messages if name == "event"]


def test_live_events_reach_the_stream_store_and_snapshots(live: RunningServer) -> None:
    viewer = live.viewer_token(["lobby"])
    reader = StreamReader(live.base_url + "/api/v1/stream", viewer)
    events = wait_for(lambda: reader.events()[:2], 60, 0.1, "two live events on the stream")
    assert reader.status == 200 and reader.headers is not None
    assert reader.headers["content-type"].startswith("text/event-stream")
    assert reader.raw[0] == "retry: 3000"
    assert {event["camera_id"] for event in reader.events()} == {"lobby"}
    event = events[0]
    headers = live.auth(viewer)
    # searchable and fetchable by id, with its anonymized snapshot
    wait_for(
        lambda: httpx.get(f"{live.base_url}/api/v1/events/{event['event_id']}",
                          headers=headers).status_code == 200,
        10, what="the streamed event in the store",
    )  # fmt: skip
    found = httpx.get(f"{live.base_url}/api/v1/events?camera=lobby", headers=headers).json()
    assert event["event_id"] in {item["event_id"] for item in found["items"]}
    assert event["snapshot_url"]
    # the snapshot follows the event once the person check of its image is done
    snapshot = wait_for(
        lambda: (r := httpx.get(live.base_url + event["snapshot_url"], headers=headers))
        .status_code == 200 and r,
        10, what="the event's snapshot",
    )  # fmt: skip
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(snapshot.content)).format == "JPEG"
    # the other camera's objects stay invisible to this viewer
    street = httpx.get(f"{live.base_url}/api/v1/events?camera=street", headers=headers).json()
    assert street["items"] == []
    audit = httpx.get(
        f"{live.base_url}/api/v1/audit?action=events.stream", headers=live.auth(live.admin_token)
    ).json()["items"]
    assert audit and audit[0]["role"] == "viewer"


def test_thumbnails_are_anonymized_jpegs(live: RunningServer) -> None:
    headers = live.auth(live.viewer_token())
    url = f"{live.base_url}/api/v1/cameras/lobby/thumbnail.jpg"
    answer = wait_for(
        lambda: (a := httpx.get(url, headers=headers)).status_code == 200 and a, 30,
        what="a thumbnail",
    )  # fmt: skip
    picture = Image.open(io.BytesIO(answer.content))
    assert picture.format == "JPEG" and picture.size[0] == 480


def test_metrics_report_the_live_engine(live: RunningServer) -> None:
    admin = live.auth(live.admin_token)

    def mode(camera: str) -> str:
        status = httpx.get(f"{live.base_url}/api/v1/cameras/{camera}", headers=admin).json()
        return str(status["status"]["mode"])

    # a camera measures its keyframe interval for a few seconds after it comes online
    wait_for(lambda: mode("lobby") == "sampled" and mode("street") == "keyframes", 30,
             what="both cameras past measuring their keyframe interval")  # fmt: skip
    text = httpx.get(live.base_url + "/metrics", headers=admin).text
    for name in (
        'feedtag_camera_analysed_fps{camera="lobby"}',
        'feedtag_camera_decode_mode{camera="lobby",mode="sampled"} 1.0',
        'feedtag_camera_decode_mode{camera="street",mode="keyframes"}',
        'feedtag_camera_frames_dropped_total{camera="lobby",reason="queue_full"}',
        'feedtag_camera_reconnects_total{camera="lobby"}',
        'feedtag_camera_stalls_total{camera="lobby"}',
        'feedtag_camera_gate_ratio{camera="lobby"}',
        'feedtag_camera_detector_latency_seconds{camera="lobby"}',
        'feedtag_camera_queue_depth{camera="lobby"}',
        "feedtag_spool_bytes",
        "feedtag_store_available 1.0",
    ):
        assert name in text, name
    fps = float(text.split('feedtag_camera_analysed_fps{camera="lobby"} ')[1].split()[0])
    assert fps > 1
    assert "rtsp://" not in text and "127.0.0.1" not in text
    events = wait_for(
        lambda: "feedtag_events_total{" in (t := httpx.get(live.base_url + "/metrics",
                                                            headers=admin).text) and t,
        30, what="events in the metrics",
    )  # fmt: skip
    assert 'kind="line_cross"' in events or 'kind="zone_enter"' in events
    restricted = httpx.get(
        live.base_url + "/metrics", headers=live.auth(live.viewer_token(["lobby"]))
    )
    assert 'camera="lobby"' in restricted.text and 'camera="street"' not in restricted.text


def _street(live: RunningServer) -> tuple[threading.Thread, int]:
    [thread] = [t for t in threading.enumerate() if t.name == "ingest-street"]
    [status] = [s for s in live.engine.statuses() if s.camera_id == "street"]
    return thread, status.counters.frames_decoded


def test_cameras_change_at_run_time_without_disturbing_the_others(
    live: RunningServer, rtsp_server: RtspServer
) -> None:
    admin = live.auth(live.admin_token)
    base = live.base_url + "/api/v1/cameras"
    wait_for(lambda: _street(live)[1] > 0, 30, what="street decoding")
    thread, frames = _street(live)

    def street_kept_going() -> None:
        nonlocal frames
        now_thread, now_frames = _street(live)
        assert now_thread is thread and thread.is_alive()
        wait_for(lambda: _street(live)[1] > now_frames, 10, what="street still decoding")
        frames = _street(live)[1]

    added = httpx.post(base, headers=admin, json={"id": "extra", "url": rtsp_server.url("vtest")})
    assert added.status_code == 201, added.text
    wait_for(lambda: httpx.get(f"{base}/extra", headers=admin).json()["status"]["state"]
             == "online", 30, what="extra online")  # fmt: skip
    street_kept_going()
    changed = httpx.patch(f"{base}/extra", headers=admin, json={"analysis_fps": 2})
    assert changed.status_code == 200 and changed.json()["analysis_fps"] == 2
    street_kept_going()
    restarted = httpx.post(f"{base}/extra/restart", headers=live.auth(live.operator_token()))
    assert restarted.status_code == 200
    removed = httpx.delete(f"{base}/extra", headers=admin)
    assert removed.status_code == 204
    assert httpx.get(f"{base}/extra", headers=admin).status_code == 404
    wait_for(lambda: not any(t.name == "ingest-extra" for t in threading.enumerate()), 10,
             what="extra's thread to end")  # fmt: skip
    street_kept_going()
    assert [c["id"] for c in httpx.get(base, headers=admin).json()["items"]] == ["lobby", "street"]


def test_stopping_the_server_ends_open_streams(tmp_path: Path) -> None:
    with start_api_server(tmp_path) as server:
        reader = StreamReader(server.base_url + "/api/v1/stream", server.admin_token)
        wait_for(lambda: reader.raw, 10, what="the stream to open")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 4
        reader._thread.join(5)
        assert not reader._thread.is_alive()
