"""The whole path on real footage: ingest, gate, detection, tracking, rules, store, media."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from feedtag.bench.footage import encode_h264, points_in_crop, vtest_path
from feedtag.config import validate_config
from feedtag.core import EventKind
from feedtag.runtime.node import NodeEngine
from feedtag.store.engine import create_store_engine
from feedtag.store.query import EventQuery, TagQuery, search_events, search_tags

from ..conftest import wait_for

pytestmark = pytest.mark.slow

# drawn on vtest.avi's whole view (768x576), placed on the 16:9 re-encoding (its rows 72-503)
VTEST_SIZE = (768, 576)
ANALYTICS: dict[str, Any] = {
    "zones": [
        {
            "name": "path",
            "polygon": points_in_crop([[0, 0.25], [1, 0.25], [1, 0.75], [0, 0.75]], VTEST_SIZE),
        }
    ],
    "lines": [
        {
            "name": "middle",
            "start": points_in_crop([[0.5, 0.1]], VTEST_SIZE)[0],
            "end": points_in_crop([[0.5, 0.9]], VTEST_SIZE)[0],
        }
    ],
    "rules": [
        {"kind": "presence", "labels": ["person"]},
        {"kind": "presence", "labels": ["person"], "zone": "path"},
        {"kind": "line_cross", "labels": ["person"], "line": "middle"},
        {"kind": "zone_enter_exit", "labels": ["person"], "zone": "path"},
    ],
}


@pytest.fixture(scope="module")
def vtest_30s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return encode_h264(
        vtest_path(), folder / "vtest_30s.mp4", width=640, height=360, max_seconds=30
    )


def test_tags_events_and_media_reach_the_store(
    vtest_30s: Path, models_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = validate_config(
        {
            "media_root": str(vtest_30s.parent),
            "detector": {"models_dir": str(models_dir)},
            "store": {"data_dir": str(data), "thumbnail_interval_s": 1},
            "cameras": [
                {"id": "yard", "url": vtest_30s.name, "analysis_fps": 2, "analytics": ANALYTICS}
            ],
        }
    )
    engine = NodeEngine.from_config(config)
    assert engine.store is not None
    engine.store.media.want_thumbnail("yard")  # someone looks: thumbnails are kept fresh
    engine.start()
    time.sleep(12)
    assert engine.store.retention.last is not None  # the retention job ran at start
    assert engine.stop(deadline_s=8)
    stats = engine.store.writer.stats()
    assert stats.written > 0 and stats.spool_records == 0 and stats.dropped == 0
    store = create_store_engine(config.store.resolved_url())
    anywhere = search_tags(store, TagQuery(label="person", min_count=2, camera_ids=["yard"]))
    in_path = search_tags(store, TagQuery(label="person", zone="path"))
    assert anywhere.items and in_path.items
    assert all(s.ended_at is not None for s in anywhere.items)  # closed at stop
    assert max(s.max_count for s in anywhere.items) >= 3
    events = search_events(store, EventQuery(camera_ids=["yard"])).items
    assert events, "people enter the path zone within 12 s of vtest"
    for event in events:
        snapshot = data / "media" / event.attributes["snapshot"]
        assert snapshot.is_file() and snapshot.stat().st_size > 1000
    assert (data / "media" / "thumbnails" / "yard.jpg").is_file()
    # and the command line finds the same
    cli_config = tmp_path / "cli.yaml"
    cli_config.write_text(f"store: {{data_dir: {data}}}\n")
    found = feedtag_json("events", "search", "--config", str(cli_config), "--camera", "yard")
    assert {e["event_id"] for e in found["items"]} == {e.event_id for e in events[:50]}
    tags = feedtag_json("events", "tags", "--config", str(cli_config), "--label", "person",
                        "--min-count", "2")  # fmt: skip
    assert len(tags["items"]) == len(anywhere.items)
    stats = feedtag_json("events", "stats", "--config", str(cli_config), "--bucket", "1h")
    assert sum(row["count"] for row in stats) == len(events)


def feedtag_json(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "feedtag.cli", *args, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "search", "--since", "yesterday"], "ISO 8601"),
        (["events", "stats", "--bucket", "often"], "duration"),
        (["events", "search", "--kind", "teleport"], "invalid choice"),
    ],
)
def test_events_command_rejects_bad_arguments(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "feedtag.cli", *args], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr


# The street at the top right of vtest.avi, where a car and a van stand parked all clip long
# (ground points at y 0.16-0.17, x 0.85-1.0 in tests/data/vtest_ground_truth.json).
ROAD = {"name": "road", "polygon": [[0.78, 0.08], [1, 0.08], [1, 0.26], [0.78, 0.26]],
        "roadway": True}  # fmt: skip
VEHICLES = ["car", "truck", "bus"]


def test_line_crossings_match_the_hand_count(models_dir: Path, tmp_path: Path) -> None:
    """vtest.avi end to end (ingest, detector, tracker, rules, store) against the hand counts
    in tests/data: line crossings on the footpath (vtest_line_crossings.json; tolerance per
    direction: within two crossings (or 15%) of the sure count, plus that direction's
    uncertain crossings), person presence over the whole view, and vehicles in a roadway
    zone (vtest_ground_truth.json: one sure car and one van, difficult, parked all clip)."""
    truth = json.loads(
        (Path(__file__).parent.parent / "data" / "vtest_line_crossings.json").read_text()
    )
    line = truth["line"]
    config = validate_config(
        {
            "media_root": str(vtest_path().parent),
            "detector": {"models_dir": str(models_dir)},
            "store": {"data_dir": str(tmp_path / "data")},
            "cameras": [
                {
                    "id": "yard", "url": vtest_path().name, "realtime": False, "analysis_fps": 5,
                    "analytics": {
                        "lines": [{"name": "middle", "start": line["start"], "end": line["end"],
                                   # walking down the line, its left-hand side is image-right
                                   "forward_name": "right_to_left",
                                   "backward_name": "left_to_right"}],
                        "zones": [ROAD],
                        "rules": [{"kind": "line_cross", "labels": ["person"], "line": "middle"},
                                  {"kind": "presence", "labels": ["person"]},
                                  {"kind": "presence", "labels": VEHICLES, "zone": "road"},
                                  {"kind": "stopped_vehicle", "labels": VEHICLES, "zone": "road",
                                   "min_duration_s": 30}],
                    },
                }
            ],
        }
    )  # fmt: skip
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        wait_for(lambda: engine.statuses()[0].state.value == "stopped", 180, what="end of file")
    finally:
        assert engine.stop(deadline_s=8)
    store = create_store_engine(config.store.resolved_url())
    kinds = [EventKind.LINE_CROSS]
    crossings = search_events(store, EventQuery(kinds=kinds, limit=500)).items
    counted = Counter(event.attributes["direction"] for event in crossings)
    print(f"\nline crossings: {dict(counted)}; hand count {truth['totals']}")
    for direction in ("left_to_right", "right_to_left"):
        sure = truth["totals"][direction]
        uncertain = truth["uncertain_by_direction"][direction]
        slack = max(2, round(0.15 * sure))
        assert sure - slack <= counted[direction] <= sure + uncertain + slack, (direction, counted)

    # presence tags against the 48 hand-checked frames; a file read as fast as possible keeps
    # its own timeline (wall = analysis start + stream time), and people are in view from the
    # first frame, so the earliest person segment marks the start
    segments = search_tags(store, TagQuery(label="person", camera_ids=["yard"], limit=500)).items
    origin = min(segment.started_at for segment in segments)
    boxes = json.loads(
        (Path(__file__).parent.parent / "data" / "vtest_ground_truth.json").read_text()
    )
    covered = [
        any(s.started_at <= origin + f["t_s"] <= (s.ended_at or 1e12) for s in segments)
        for f in boxes["frames"] if f["counts"]["person"] > 0
    ]  # fmt: skip
    most_sure = max(f["counts"]["person"] for f in boxes["frames"])
    most_possible = max(
        f["counts"]["person"] + f["counts_difficult"]["person"] for f in boxes["frames"]
    )
    most_tagged = max(segment.max_count for segment in segments)
    print(f"presence: {sum(covered)}/{len(covered)} hand-checked frames with people covered by a "
          f"person tag; max count tagged {most_tagged}, by hand {most_sure}-{most_possible}")  # fmt: skip
    assert sum(covered) >= 0.95 * len(covered)
    assert most_sure - 2 <= most_tagged <= most_possible + 2
    # and each sure crossing has an event within 1.5 s of the time it was counted by hand
    times = [event.started_at - origin for event in crossings]
    sure_times = [c["t_s"] for c in truth["crossings"] if not c["uncertain"]]
    matched = [any(abs(t - hand) <= 1.5 for t in times) for hand in sure_times]
    print(f"line crossings within 1.5 s of the hand-counted time: {sum(matched)}/{len(matched)}")
    assert sum(matched) >= 0.8 * len(matched)
    check_the_road(store, boxes, origin)


def on_road(box: list[float], size: tuple[int, int]) -> bool:
    x, y = (box[0] + box[2]) / 2 / size[0], box[3] / size[1]
    (x0, y0), _, (x1, y1), _ = ROAD["polygon"]
    return x0 <= x <= x1 and y0 <= y <= y1


def check_the_road(store: Any, boxes: dict[str, Any], origin: float) -> None:
    """Vehicles in the roadway zone: presence tags cover the hand-checked frames with a
    vehicle there; the count is within the sure and the possible count; each parked vehicle
    is one stopped-vehicle event that lasts (tolerance: one extra, for a track that splits)."""
    size = (boxes["size"][0], boxes["size"][1])
    sure = [
        sum(1 for o in f["objects"] if o["label"] in VEHICLES and not o["difficult"]
            and on_road(o["box"], size))
        for f in boxes["frames"]
    ]  # fmt: skip
    possible = [
        sum(1 for o in f["objects"] if o["label"] in VEHICLES and on_road(o["box"], size))
        for f in boxes["frames"]
    ]
    assert min(sure) >= 1, "the hand count has a parked car in every frame"
    segments = [
        s
        for label in VEHICLES
        for s in search_tags(store, TagQuery(label=label, zone="road", limit=500)).items
    ]
    covered = [
        any(s.started_at <= origin + f["t_s"] <= (s.ended_at or 1e12) for s in segments)
        for f in boxes["frames"]
    ]
    by_label = Counter(s.label for s in segments)
    most = max((s.max_count for s in segments), default=0)
    print(f"road: {sum(covered)}/{len(covered)} hand-checked frames covered by a vehicle tag "
          f"{dict(by_label)}; max count {most}, by hand {max(sure)}-{max(possible)}")  # fmt: skip
    assert sum(covered) >= 0.95 * len(covered)
    assert max(sure) <= most <= max(possible)
    kinds = [EventKind.STOPPED_VEHICLE]
    stops = search_events(store, EventQuery(kinds=kinds, zones=["road"], limit=50)).items
    lasted = [round((s.ended_at or 0) - s.started_at) for s in stops]
    print(f"road: {len(stops)} stopped-vehicle events lasting {lasted} s; by hand "
          f"{max(sure)}-{max(possible)} vehicles parked all clip")  # fmt: skip
    assert max(sure) <= len(stops) <= max(possible) + 1
    assert all(s.ended_at is not None for s in stops)
    assert max(lasted) >= 60  # parked for the whole 79.5 s clip


def test_a_camera_that_stays_offline_becomes_an_event(models_dir: Path, tmp_path: Path) -> None:
    from ..conftest import free_port

    config = validate_config(
        {
            "detector": {"models_dir": str(models_dir)},
            "store": {"data_dir": str(tmp_path / "data")},
            "reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 0.5},
            "cameras": [
                {
                    "id": "gone", "url": f"rtsp://127.0.0.1:{free_port()}/x",
                    "analytics": {"rules": [{"kind": "camera_health", "offline_after_s": 2}]},
                }
            ],
        }
    )  # fmt: skip
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        assert engine.events is not None
        wait_for(lambda: engine.events.event_counts()["gone"].get("camera_offline"), 15)  # type: ignore[union-attr]
    finally:
        assert engine.stop()
    store = create_store_engine(config.store.resolved_url())
    events = search_events(store, EventQuery(kinds=[EventKind.CAMERA_OFFLINE])).items
    assert [e.camera_id for e in events] == ["gone"]
    assert events[0].attributes["state"] == "offline"


@pytest.mark.system
def test_events_get_clips_from_the_packet_ring(
    rtsp_server: Any, models_dir: Path, tmp_path: Path
) -> None:
    import av

    data = tmp_path / "data"
    everywhere = [[0, 0], [1, 0], [1, 1], [0, 1]]
    config = validate_config(
        {
            "detector": {"models_dir": str(models_dir)},
            "store": {"data_dir": str(data)},
            "cameras": [
                {
                    "id": "live", "url": rtsp_server.url("vtest"), "clips": {"enabled": True},
                    "analytics": {
                        "zones": [{"name": "all", "polygon": everywhere}],
                        "rules": [{"kind": "crowding", "zone": "all", "min_count": 2,
                                   "min_duration_s": 1}],
                    },
                }
            ],
        }
    )  # fmt: skip
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        assert engine.events is not None and engine.events.clips is not None
        clips = engine.events.clips
        wait_for(lambda: clips.written >= 1, 40, what="a clip written")
    finally:
        assert engine.stop()
    store = create_store_engine(config.store.resolved_url())
    event = search_events(store, EventQuery(kinds=[EventKind.CROWDING])).items[-1]
    clip = data / "media" / event.attributes["clip"]
    assert clip.is_file()
    with av.open(str(clip)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    # up to 5 s of pre-roll (what the ring holds: the crowd forms right after connecting)
    # and 5 s of post-roll
    assert 25 * 4.5 <= frames <= 25 * 11
