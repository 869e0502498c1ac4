"""The camera catalog: the config file's cameras with stored changes laid over them, and the
rules for camera secrets at rest (never clear text; references and the key read at start)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from cryptography.fernet import Fernet

from feedtag.config import validate_config
from feedtag.config.models import CameraConfig
from feedtag.errors import ConfigError
from feedtag.runtime.catalog import (
    CameraCatalog,
    CameraMerger,
    DefinedIn,
    merge_cameras,
    resolved,
    sealed_secrets,
)
from feedtag.store.cameras import CameraRecord, camera_secrets, camera_settings
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade
from feedtag.store.sealing import SecretBox

KEY = Fernet.generate_key().decode()


def camera(camera_id: str, url: str = "rtsp://cam.example/s", **fields: Any) -> CameraConfig:
    return CameraConfig.model_validate({"id": camera_id, "url": url, **fields})


def stored(cam: CameraConfig, twin: CameraConfig | None = None, *, box: SecretBox | None = None,
           deleted: bool = False) -> CameraRecord:  # fmt: skip
    box = box or SecretBox(KEY)
    if deleted:
        return CameraRecord(cam.id, None, {}, True, True, 1.0)
    secrets = sealed_secrets(cam, twin, box)
    return CameraRecord(cam.id, camera_settings(cam), secrets, twin is not None, False, 1.0)


FILE_A = camera("a", "rtsp://a.example/s")
FILE_B = camera("b", "rtsp://b.example/s")
A_CHANGED = camera("a", "rtsp://a.example/s", analysis_fps=4.0)
API_C = camera("c", "rtsp://u:pw@c.example/s?token=t1&ch=2")

# (case, file cameras, stored records, expected [(id, defined_in, analysis_fps)])
MERGES = [
    ("config only", [FILE_A, FILE_B], [], [("a", "config", 1.0), ("b", "config", 1.0)]),
    ("added through the API", [FILE_A], [stored(API_C)],
     [("a", "config", 1.0), ("c", "api", 1.0)]),
    ("config camera changed", [FILE_A, FILE_B], [stored(A_CHANGED, FILE_A)],
     [("a", "config+api", 4.0), ("b", "config", 1.0)]),
    ("config camera removed", [FILE_A, FILE_B], [stored(FILE_A, deleted=True)],
     [("b", "config", 1.0)]),
    ("changed camera whose twin left the file", [FILE_B], [stored(A_CHANGED, FILE_A)],
     [("b", "config", 1.0), ("a", "api", 4.0)]),
    ("removed camera whose twin left the file", [FILE_B], [stored(FILE_A, deleted=True)],
     [("b", "config", 1.0)]),
    ("API camera later written into the file too", [FILE_A, camera("c", "rtsp://c2.example/")],
     [stored(API_C)], [("a", "config", 1.0), ("c", "config+api", 1.0)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "file", "records", "expected"), MERGES, ids=[m[0] for m in MERGES]
)
def test_merge_rules(case: str, file: list[CameraConfig], records: list[CameraRecord],
                     expected: list[tuple[str, str, float]]) -> None:  # fmt: skip
    entries = merge_cameras(file, records, box=SecretBox(KEY), environ={}, media_root=None)
    got = [(e.camera.id, e.defined_in.value, e.camera.analysis_fps) for e in entries]
    assert got == expected
    assert all(e.runnable is not None and e.problem is None for e in entries)


def test_a_stored_camera_comes_back_with_its_secrets() -> None:
    entries = merge_cameras([], [stored(API_C)], box=SecretBox(KEY), environ={}, media_root=None)
    assert entries[0].runnable is not None
    assert entries[0].runnable.url.render() == "rtsp://u:pw@c.example/s?token=t1&ch=2"


# (case, secret as given, environment, key at start, problem at start or None)
SECRETS = [
    ("encrypted", "hunter2", {}, KEY, None),
    ("encrypted, key gone", "hunter2", {}, None, "FEEDTAG_SECRET_KEY is not set"),
    ("encrypted, key changed", "hunter2", {}, Fernet.generate_key().decode(),
     "cannot be decrypted with FEEDTAG_SECRET_KEY"),
    ("reference", "${FEEDTAG_CAMERA_PW}", {"FEEDTAG_CAMERA_PW": "hunter2"}, None, None),
    ("reference, variable unset", "${FEEDTAG_CAMERA_PW}", {}, None,
     "environment variable FEEDTAG_CAMERA_PW is not set"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "given", "environ", "key", "problem"), SECRETS,
                         ids=[s[0] for s in SECRETS])  # fmt: skip
def test_stored_secrets_resolve_at_start_or_say_why_not(
    case: str, given: str, environ: dict[str, str], key: str | None, problem: str | None
) -> None:
    cam = camera("c", "rtsp://u@c.example/s", password=given)
    record = stored(cam, box=SecretBox(KEY))
    assert "hunter2" not in json.dumps([record.settings, record.secrets])
    entries = merge_cameras([], [record], box=SecretBox(key), environ=environ, media_root=None)
    (entry,) = entries
    if problem is None:
        assert entry.problem is None and entry.runnable is not None
        assert entry.runnable.url.render() == "rtsp://u:hunter2@c.example/s"
    else:
        assert entry.runnable is None and entry.problem is not None
        assert problem in entry.problem and entry.problem.startswith("password: ")
        assert "hunter2" not in entry.problem


def test_a_secret_taken_from_the_file_follows_it_and_goes_with_it() -> None:
    twin = camera("a", "rtsp://u:filepw@a.example/s")
    changed = camera("a", "rtsp://u:filepw@a.example/s", analysis_fps=3.0)
    record = stored(changed, twin)
    assert record.secrets["password"] == "config:"
    box = SecretBox(None)  # no key needed: nothing is encrypted
    (entry,) = merge_cameras([twin], [record], box=box, environ={}, media_root=None)
    assert entry.runnable is not None and entry.runnable.url.render().startswith("rtsp://u:filepw@")
    (alone,) = merge_cameras([], [record], box=box, environ={}, media_root=None)
    assert alone.runnable is None and alone.defined_in is DefinedIn.API
    assert alone.problem is not None and "no longer has it" in alone.problem


# (secret as given, the error's field, words of its message)
REFUSED = [
    ({"password": "hunter2"}, "password", "FEEDTAG_SECRET_KEY"),
    ({"url": "rtsp://u:hunter2@c.example/s"}, "password", "FEEDTAG_SECRET_KEY"),
    ({"url": "rtsp://c.example/s?token=hunter2"}, "url", "FEEDTAG_SECRET_KEY"),
    ({"password": "${FEEDTAG_ADMIN_TOKEN}"}, "password", "only variables named FEEDTAG_CAMERA_*"),
    ({"password": "x${FEEDTAG_CAMERA_PW}"}, "password", "reference alone"),
]


@pytest.mark.parametrize(("given", "field", "words"), REFUSED)
def test_secrets_that_cannot_be_stored_are_refused(given: dict[str, str], field: str,
                                                   words: str) -> None:  # fmt: skip
    fields = {"url": "rtsp://u@c.example/s", **given}
    with pytest.raises(ConfigError) as caught:
        sealed_secrets(camera("c", **fields), None, SecretBox(None))
    ((path, message),) = caught.value.problems
    assert path == field and words in message and "hunter2" not in message


def test_resolution_reads_references_and_keeps_the_held_form() -> None:
    held = camera("c", "rtsp://u:${FEEDTAG_CAMERA_PW}@c.example/s?sig=${FEEDTAG_CAMERA_SIG}")
    environ = {"FEEDTAG_CAMERA_PW": "p w", "FEEDTAG_CAMERA_SIG": "s&1"}
    runnable = resolved(held, None, SecretBox(None), environ, None)
    assert runnable.url.render() == "rtsp://u:p%20w@c.example/s?sig=s%261"
    assert camera_secrets(held)["password"] == "${FEEDTAG_CAMERA_PW}"
    assert sealed_secrets(held, None, SecretBox(None))["query"] == [
        ["sig", "${FEEDTAG_CAMERA_SIG}"]
    ]


def test_the_merger_validates_a_stored_camera_again_only_when_it_changed(
    validated: list[str],
) -> None:
    environ: dict[str, str] = {"FEEDTAG_CAMERA_PW": "one"}
    merger = CameraMerger(box=SecretBox(KEY), environ=environ, media_root=None)
    by_reference = camera("r", "rtsp://u@r.example/s", password="${FEEDTAG_CAMERA_PW}")
    records = [stored(A_CHANGED, FILE_A), stored(API_C), stored(by_reference)]
    first = merger.merge([FILE_A, FILE_B], records)
    assert validated == ["a", "c", "r"]
    again = merger.merge([FILE_A, FILE_B], [dataclasses.replace(r) for r in records])
    assert validated == ["a", "c", "r"]  # equal records, same twins: nothing validated
    assert [e.runnable for e in again] == [e.runnable for e in first]

    faster = dataclasses.replace(records[1], settings={**records[1].settings, "analysis_fps": 6.0},
                                 updated_at=2.0)  # fmt: skip
    entries = {e.camera.id: e for e in merger.merge([FILE_A, FILE_B], [records[0], faster,
                                                                       records[2]])}  # fmt: skip
    assert validated[3:] == ["c"] and entries["c"].camera.analysis_fps == 6.0

    environ["FEEDTAG_CAMERA_PW"] = "two"  # the variable a reference reads changed
    entries = {e.camera.id: e for e in merger.merge([FILE_A, FILE_B], [records[0], faster,
                                                                       records[2]])}  # fmt: skip
    assert validated[4:] == ["r"]
    assert entries["r"].runnable is not None
    assert entries["r"].runnable.url.render() == "rtsp://u:two@r.example/s"

    twin_moved = camera("a", "rtsp://a2.example/s")  # the file's twin changed
    entries = {e.camera.id: e for e in merger.merge([twin_moved, FILE_B], [records[0], faster])}
    assert validated[5:] == ["a"]
    assert sorted(entries) == ["a", "b", "c"]  # r's record is gone: so is r


def test_the_merger_shows_the_problem_of_a_record_that_became_invalid(
    validated: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    merger = CameraMerger(box=SecretBox(KEY), environ={}, media_root=None)
    good = stored(API_C)
    (entry,) = merger.merge([], [good])
    assert entry.problem is None
    unset = dataclasses.replace(good, secrets={"password": "${FEEDTAG_CAMERA_GONE}",
                                               "query": good.secrets["query"]},
                                updated_at=2.0)  # fmt: skip
    (entry,) = merger.merge([], [unset])
    assert entry.runnable is None
    assert entry.problem == "password: environment variable FEEDTAG_CAMERA_GONE is not set"
    broken = dataclasses.replace(good, settings={**good.settings, "analysis_fps": -1},
                                 updated_at=3.0)  # fmt: skip
    assert merger.merge([], [broken]) == [] and merger.merge([], [broken]) == []
    assert caplog.text.count("stored camera c is left out: analysis_fps") == 1  # logged once
    assert validated == ["c", "c", "c"]


def _config(cameras: list[dict[str, Any]], data_dir: str) -> Any:
    return validate_config({"store": {"data_dir": data_dir}, "cameras": cameras})


def test_the_catalog_stores_changes_and_reads_them_back(tmp_path: Any) -> None:
    config = _config([{"id": "a", "url": "rtsp://u:filepw@a.example/s"},
                      {"id": "b", "url": "rtsp://b.example/s"}], str(tmp_path))  # fmt: skip
    store = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store)
    environ = {"FEEDTAG_SECRET_KEY": KEY}
    catalog = CameraCatalog(config, store, environ)
    catalog.put(camera("c", "rtsp://u@c.example/s", password="hunter2"))
    catalog.put(config.cameras[0].model_copy(update={"analysis_fps": 5.0}))
    catalog.remove("b")
    again = CameraCatalog(config, store, environ)
    assert [(e.camera.id, e.defined_in.value) for e in again.entries()] == [
        ("a", "config+api"), ("c", "api")
    ]  # fmt: skip
    assert [c.url.render() for c in again.runnable()] == [
        "rtsp://u:filepw@a.example/s", "rtsp://u:hunter2@c.example/s"
    ]  # fmt: skip
    again.put(config.cameras[0])  # back to the file's settings: the record goes
    assert [e.defined_in.value for e in CameraCatalog(config, store, environ).entries()] == [
        "config", "api"
    ]  # fmt: skip
    store.dispose()


def test_after_a_restart_only_urls_the_file_wrote_trust_their_host(tmp_path: Any) -> None:
    from feedtag.runtime.node import NodeEngine

    config = _config([{"id": "a", "url": "rtsp://127.0.0.1:8554/a", "enabled": False},
                      {"id": "b", "url": "rtsp://127.0.0.1:8554/b", "enabled": False}],
                     str(tmp_path))  # fmt: skip
    store = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store)
    catalog = CameraCatalog(config, store, {})
    catalog.put(camera("c", "rtsp://127.0.0.1:8554/c", enabled=False))  # added
    catalog.put(config.cameras[0].model_copy(update={"analysis_fps": 2.0}))  # same URL
    moved = CameraConfig.model_validate(
        {"id": "b", "url": "rtsp://127.0.0.1:9/b", "enabled": False}
    )
    catalog.put(moved)  # a new URL
    again = CameraCatalog(config, store, {})
    node = NodeEngine(config, cameras=again.runnable())
    trusted = {c.id: node._network(c).trusted_host for c in again.runnable()}
    assert trusted == {"a": "127.0.0.1", "b": None, "c": None}
    store.dispose()


def test_an_unreadable_store_starts_the_file_s_cameras_and_refuses_changes(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from feedtag.errors import StoreError
    from feedtag.runtime.app import camera_catalog
    from feedtag.store.migrations import downgrade

    config = _config([{"id": "a", "url": "rtsp://a.example/s"}], str(tmp_path))
    store = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store)
    downgrade(store, "0002")  # no camera_records table: every read and write fails
    catalog = camera_catalog(config, store)
    assert [c.id for c in catalog.runnable()] == ["a"]
    assert "cameras stored through the API are not applied" in caplog.text
    with pytest.raises(StoreError):
        catalog.put(camera("c"))
    assert [c.id for c in catalog.cameras()] == ["a"]
    store.dispose()
