"""The store suite: every test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from feedtag.core import Event, EventEnd, EventKind, TagSegment, stable_id
from feedtag.errors import StoreError
from feedtag.store.query import (
    CountBucket,
    CountQuery,
    EventQuery,
    TagQuery,
    TopCameras,
    count_events,
    count_events_by_kind,
    search_events,
    search_tags,
    top_cameras,
)
from feedtag.store.retention import run_retention
from feedtag.store.schema import events, tag_segments
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

T0 = 1_799_971_200.0  # midnight UTC, so that day buckets start at T0
P, V, D = "person", "car", EventKind.DWELL


def event(name: str, camera: str, kind: EventKind, t: float, label: str | None = P,  # noqa: PLR0917
          zone: str | None = None, **attributes: object) -> Event:  # fmt: skip
    return Event(name, camera, kind, "rule", T0 + t, T0 + t + 1, label, zone, (1, 2), attributes)


DATASET = [
    event("a1", "door", D, 0, zone="hall"),
    event("a2", "door", EventKind.ZONE_ENTER, 10, zone="hall"),
    event("a3", "door", EventKind.ZONE_ENTER, 20, V, zone="gate"),
    event("a4", "door", EventKind.LINE_CROSS, 3600, zone="hall"),
    event("a5", "door", EventKind.CAMERA_OFFLINE, 3700, label=None),
    event("b1", "yard", D, 5, V, zone="gate"),
    event("b2", "yard", D, 5, V, zone="gate"),  # same time as b1: ties page by id
    event("b3", "yard", EventKind.CROWDING, 7300, zone="hall", count=4),
]


def write(engine: Engine, items: list[Event | EventEnd | TagSegment]) -> StoreWriter:
    writer = StoreWriter(engine, Spool(tempfile.mkdtemp()), batch_size=4, max_wait_s=0.02)
    with writer:
        for item in items:
            writer.put(item)
    return writer


def ids(page_items: list[Event]) -> list[str]:
    return [e.event_id for e in page_items]


def test_the_same_event_written_twice_is_one_row(engine: Engine) -> None:
    writer = write(engine, [*DATASET, *DATASET, DATASET[0]])
    assert writer.stats().written == 17
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar() == 8
    stored = search_events(engine, EventQuery(camera_ids=["yard"], kinds=[EventKind.CROWDING]))
    assert stored.items == [DATASET[-1]]  # every field round-trips


def test_an_event_end_sets_ended_at_once(engine: Engine) -> None:
    lasting = Event("long", "door", D, "rule", T0, None, P)
    first, later = EventEnd("long", "door", T0 + 30), EventEnd("long", "door", T0 + 90)
    unknown = EventEnd("never-stored", "door", T0 + 5)
    # In one batch the end may come first: inserts are written before ends.
    write(engine, [first, lasting, unknown])
    write(engine, [later, lasting, first])  # replays and a second end change nothing
    (stored,) = search_events(engine, EventQuery(camera_ids=["door"])).items
    assert stored.ended_at == T0 + 30
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar() == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (EventQuery(), ["b3", "a5", "a4", "a3", "a2", "b2", "b1", "a1"]),
        (EventQuery(camera_ids=["door"]), ["a5", "a4", "a3", "a2", "a1"]),
        (EventQuery(camera_ids=["door", "yard"], labels=[V]), ["a3", "b2", "b1"]),
        (EventQuery(kinds=[D]), ["b2", "b1", "a1"]),
        (EventQuery(kinds=[D, EventKind.CROWDING], zones=["hall"]), ["b3", "a1"]),
        (EventQuery(start=T0 + 5, end=T0 + 3600), ["a3", "a2", "b2", "b1"]),
        (EventQuery(camera_ids=["nowhere"]), []),
    ],
    ids=["all", "camera", "label", "kind", "kinds+zone", "time range", "none"],
)
def test_search_filters(engine: Engine, query: EventQuery, expected: list[str]) -> None:
    write(engine, DATASET)
    assert ids(search_events(engine, query).items) == expected


@pytest.mark.parametrize("limit", [1, 2, 3, 8, 9])
def test_cursor_pages_cover_everything_once_in_order(engine: Engine, limit: int) -> None:
    write(engine, DATASET)
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        page = search_events(engine, EventQuery(limit=limit, cursor=cursor))
        seen += ids(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids(search_events(engine, EventQuery()).items)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (EventQuery(cursor="not-a-cursor"), "invalid cursor"),
        (EventQuery(cursor="WzEsMl0"), "invalid cursor"),  # [1,2]: an id that is no string
        (EventQuery(limit=0), "limit"),
        (EventQuery(limit=10_000), "limit"),
    ],
)
def test_bad_queries_are_store_errors(engine: Engine, query: EventQuery, error: str) -> None:
    with pytest.raises(StoreError, match=error):
        search_events(engine, query)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            CountQuery(T0, T0 + 86400, bucket_s=3600, camera_ids=["door"]),
            [("door", V, 0, 1), ("door", P, 0, 2), ("door", P, 3600, 1),
             ("door", None, 3600, 1)],
        ),
        (
            CountQuery(T0, T0 + 86400, bucket_s=86400, labels=[V]),
            [("door", V, 0, 1), ("yard", V, 0, 2)],
        ),
        (CountQuery(T0, T0 + 7200, bucket_s=7200, kinds=[D]), [("door", P, 0, 1), ("yard", V, 0, 2)]),
        (CountQuery(T0 + 1, T0 + 2), []),
    ],
    ids=["hourly door", "daily cars", "dwell", "empty"],
)  # fmt: skip
def test_counts_per_label_bucket_and_camera(
    engine: Engine, query: CountQuery, expected: list[tuple[str, str | None, float, int]]
) -> None:
    write(engine, DATASET)
    got = count_events(engine, query)
    assert got == [CountBucket(c, label, T0 + b, n) for c, label, b, n in expected]


def test_counts_per_kind_follow_the_same_filters(engine: Engine) -> None:
    write(engine, DATASET)
    everything = CountQuery(T0 - 1, T0 + 86_400)
    assert count_events_by_kind(engine, everything) == {
        "dwell": 3, "zone_enter": 2, "line_cross": 1, "camera_offline": 1, "crowding": 1,
    }  # fmt: skip
    door_cars = CountQuery(T0 - 1, T0 + 86_400, camera_ids=["door"], labels=[V])
    assert count_events_by_kind(engine, door_cars) == {"zone_enter": 1}
    buckets = count_events(engine, door_cars)
    assert sum(b.count for b in buckets) == 1  # the totals agree with the buckets


def test_counts_over_every_camera_and_the_cameras_with_the_most(engine: Engine) -> None:
    """What a chart needs on a site with many cameras: buckets per label over every camera
    (as many rows whatever the cameras), and the cameras with the most events."""
    write(engine, DATASET)
    day = CountQuery(T0 - 1, T0 + 86_400, bucket_s=86_400)
    per_camera = count_events(engine, day)
    overall = count_events(engine, day, per_camera=False)
    assert overall == [CountBucket(None, V, T0, 3), CountBucket(None, P, T0, 4),
                       CountBucket(None, None, T0, 1)]  # fmt: skip
    assert sum(b.count for b in overall) == sum(b.count for b in per_camera) == 8
    door = [("door", P, 3), ("door", None, 1), ("door", V, 1)]
    assert top_cameras(engine, day, 1) == TopCameras(door, 2)
    assert top_cameras(engine, day, 5) == TopCameras([*door, ("yard", V, 2), ("yard", P, 1)], 2)
    cars = CountQuery(T0 - 1, T0 + 86_400, labels=[V])
    assert top_cameras(engine, cars, 1) == TopCameras([("yard", V, 2)], 2)
    nothing = CountQuery(T0 + 90_000, T0 + 90_001)
    assert top_cameras(engine, nothing, 3) == TopCameras([], 0)
    with pytest.raises(StoreError, match="limit"):
        top_cameras(engine, day, 0)


def segment(name: str, camera: str, zone: str | None, start: float, end: float | None,  # noqa: PLR0917
            count: int, label: str = P) -> TagSegment:  # fmt: skip
    return TagSegment(stable_id(name), camera, label, zone, T0 + start,
                      None if end is None else T0 + end, count)  # fmt: skip


SEGMENTS = [
    segment("s1", "door", "hall", 0, 60, 2),
    segment("s2", "door", "hall", 100, 200, 5),
    segment("s3", "door", "gate", 100, 200, 4),
    segment("s4", "yard", "hall", 150, None, 3),  # still open
    segment("s5", "door", None, 0, 300, 6),
    segment("s6", "door", "hall", 400, 500, 9, V),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TagQuery(P, min_count=3, zone="hall"), ["s4", "s2"]),
        (TagQuery(P, min_count=3, zone="hall", camera_ids=["door"]), ["s2"]),
        (TagQuery(P, min_count=1, zone="hall", start=T0 + 50, end=T0 + 120), ["s2", "s1"]),
        (TagQuery(P, min_count=1, zone="hall", start=T0 + 1000), ["s4"]),
        (TagQuery(P, min_count=5), ["s5"]),
        (TagQuery(V, min_count=3, zone="hall"), ["s6"]),
        (TagQuery(P, min_count=10, zone="hall"), []),
    ],
    ids=["3 in hall", "3 in hall on door", "overlap", "open seg", "whole frame", "cars", "none"],
)
def test_tag_search(engine: Engine, query: TagQuery, expected: list[str]) -> None:
    write(engine, SEGMENTS)
    got = search_tags(engine, query).items
    assert [s.segment_id for s in got] == [stable_id(name) for name in expected]


def test_tag_segments_only_grow_whatever_order_their_states_arrive(engine: Engine) -> None:
    opened = segment("g", "door", "hall", 0, None, 1)
    grown = segment("g", "door", "hall", 0, None, 4)
    closed = segment("g", "door", "hall", 0, 90, 3)
    write(engine, [opened, grown])
    write(engine, [closed])
    write(engine, [opened, grown])  # a replay of old states
    with engine.connect() as connection:
        rows = connection.execute(select(tag_segments)).all()
    assert [(r.max_count, r.ended_at) for r in rows] == [(4, T0 + 90)]


def test_retention_removes_old_rows_and_their_files_only(engine: Engine, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "door").mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    for path in (media / "door" / "old.jpg", media / "door" / "new.jpg", outside):
        path.write_bytes(b"jpeg")
    day, now = 86400.0, T0 + 40 * 86400.0
    items: list[Event | TagSegment] = [
        event("old", "door", D, 0, snapshot="door/old.jpg"),
        event("evil", "door", D, 1, snapshot="../precious.txt"),
        event("new", "door", D, 20 * day, snapshot="door/new.jpg"),
        segment("old-seg", "door", "hall", 0, 60, 2),
        segment("open-seg", "door", "hall", 0, None, 2),
        segment("new-seg", "door", "hall", 20 * day, 20 * day + 60, 2),
    ]
    write(engine, items)
    result = run_retention(engine, media, now=now)
    assert (result.events, result.segments, result.files, result.unsafe_paths) == (2, 1, 1, 1)
    assert ids(search_events(engine, EventQuery()).items) == ["new"]
    kept = search_tags(engine, TagQuery(P, zone="hall")).items
    assert sorted(s.segment_id for s in kept) == sorted(
        stable_id(n) for n in ("open-seg", "new-seg")
    )
    assert not (media / "door" / "old.jpg").exists()
    assert (media / "door" / "new.jpg").exists() and outside.exists()
    assert run_retention(engine, media, now=now).events == 0
