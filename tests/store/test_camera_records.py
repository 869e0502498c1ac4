"""``camera_records`` on SQLite and PostgreSQL: round trip, replace, delete, and migration
0003 up and down."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from feedtag.store.cameras import CameraRecord, delete_record, load_records, save_record
from feedtag.store.migrations import downgrade, upgrade

ADDED = CameraRecord(
    "gate",
    {"id": "gate", "url": "rtsp://u@cam.example/s?token=***&ch=2", "analysis_fps": 2.5,
     "analytics": {"zones": [{"name": "lane", "polygon": [[0, 0], [1, 0], [1, 1]]}]}},
    {"password": "fernet:gAAAA", "query": [["token", "${FEEDTAG_CAMERA_TOKEN}"]]},
    changes_config=False, deleted=False, updated_at=1_765_000_000.25,
)  # fmt: skip
REMOVED = CameraRecord("door", None, {}, changes_config=True, deleted=True, updated_at=2.0)


def test_records_round_trip(engine: Engine) -> None:
    save_record(engine, ADDED)
    save_record(engine, REMOVED)
    assert load_records(engine) == [REMOVED, ADDED]  # by camera id


def test_a_record_replaces_the_camera_s_previous_one(engine: Engine) -> None:
    save_record(engine, ADDED)
    changed = CameraRecord(
        "gate", {"id": "gate", "url": "rtsp://x.example/"}, {}, False, False, 3.0
    )
    save_record(engine, changed)
    assert load_records(engine) == [changed]
    assert delete_record(engine, "gate") is True
    assert delete_record(engine, "gate") is False
    assert load_records(engine) == []


def test_migration_0003_up_and_down(engine: Engine) -> None:
    save_record(engine, ADDED)
    downgrade(engine, "0002")
    assert "camera_records" not in inspect(engine).get_table_names()
    assert {"events", "api_tokens"} <= set(inspect(engine).get_table_names())
    upgrade(engine)
    assert "camera_records" in inspect(engine).get_table_names()
    assert load_records(engine) == []
    save_record(engine, ADDED)
    assert load_records(engine) == [ADDED]
