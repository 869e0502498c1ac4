"""``camera_records`` on SQLite and PostgreSQL: round trip, replace, delete, and migration
0003 up and down."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from sqlalchemy import Engine, inspect

from feedtag.config.models import CameraConfig
from feedtag.store.cameras import (
    CameraRecord,
    StoredRecords,
    camera_secrets,
    camera_settings,
    delete_record,
    joined_camera,
    load_records,
    save_record,
)
from feedtag.store.migrations import downgrade, upgrade

ADDED = CameraRecord(
    "gate",
    {"id": "gate", "url": "rtsp://u@cam.example/s?token=***&ch=2", "analysis_fps": 2.5,
     "analytics": {"zones": [{"name": "lane", "polygon": [[0, 0], [1, 0], [1, 1]]}]}},
    {"password": "fernet:gAAAA", "query": [["token", "${FEEDTAG_CAMERA_TOKEN}"]]},
    changes_config=False, deleted=False, updated_at=1_765_000_000.25,
)  # fmt: skip
RULES_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
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


def _camera_record(camera_id: str, at: float, fps: float = 1.0) -> CameraRecord:
    settings = {"id": camera_id, "url": f"rtsp://{camera_id}.example/s", "analysis_fps": fps}
    return CameraRecord(camera_id, settings, {}, False, False, at)


def test_records_load_by_id_in_pieces(engine: Engine) -> None:
    for index in range(1203):
        save_record(engine, _camera_record(f"c{index:04d}", 1.0))
    wanted = {f"c{index:04d}" for index in range(0, 1203, 2)} | {"not-stored"}
    loaded = load_records(engine, wanted)
    assert [r.camera_id for r in loaded] == sorted(wanted - {"not-stored"})
    assert load_records(engine, []) == []


def test_stored_records_load_only_what_changed(engine: Engine) -> None:
    now = [0.0]
    stored = StoredRecords(engine, full_read_s=60.0, clock=lambda: now[0])
    for camera_id in ("a", "b", "c"):
        save_record(engine, _camera_record(camera_id, 1.0))
    assert [r.camera_id for r in stored.read()] == ["a", "b", "c"]
    assert stored.loaded == 3
    assert [r.camera_id for r in stored.read()] == ["a", "b", "c"] and stored.loaded == 3
    changed = _camera_record("b", 2.0, fps=4.0)
    save_record(engine, changed)
    save_record(engine, _camera_record("d", 2.0))  # added
    delete_record(engine, "a")  # deleted
    assert stored.read() == [changed, _camera_record("c", 1.0), _camera_record("d", 2.0)]
    assert stored.loaded == 5  # b and d only
    # changed without a new stamp (by hand in the database): seen at the next full read
    by_hand = _camera_record("c", 1.0, fps=9.0)
    save_record(engine, by_hand)
    assert stored.read()[1].settings["analysis_fps"] == 1.0  # type: ignore[index]
    now[0] = 60.0
    assert stored.read()[1] == by_hand and stored.loaded == 8


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


def test_a_camera_comes_back_from_its_settings_and_secrets_exactly(tmp_path: Path) -> None:
    analytics = yaml.safe_load(RULES_EXAMPLE.read_text().split("```yaml\n")[1].split("```")[0])
    (tmp_path / "clip.mp4").write_bytes(b"")
    for url, extra in [
        ("rtsp://u:p%40w@cam.example:554/s?token=a&ch=1&token=b", {}),
        ("clip.mp4", {"loop": True, "realtime": False}),
    ]:
        data = {"id": "c", "url": url, "classes": ["person", "car"], "gate": {"refresh_s": 3},
                "clips": {"enabled": True}, "analysis_height": 360, **analytics, **extra}  # fmt: skip
        camera = CameraConfig.model_validate(data, context={"media_root": tmp_path})
        settings = json.loads(json.dumps(camera_settings(camera)))  # as a JSON column holds it
        secrets = json.loads(json.dumps(camera_secrets(camera)))
        assert "p@w" not in json.dumps(settings) and "token=a" not in json.dumps(settings)
        assert joined_camera(settings, secrets, tmp_path) == camera
