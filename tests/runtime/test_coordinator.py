"""The Ray coordinator's round without Ray: real shards (:class:`ShardWorker` running
simulated cameras) and a real SQLite store, with Ray's calls made in this process (the
``_ray`` seam of :mod:`feedtag.runtime.ray_coordinator`). What it proves: a round validates
only the stored cameras that changed, and a change, a removal and a camera that became
invalid reach the assignment and the shards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from feedtag.bench.simulated import SimulatedCameras, simulated_camera
from feedtag.config import validate_config
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.runtime import ray_coordinator
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.database import open_database
from feedtag.runtime.ray_coordinator import Coordinator
from feedtag.runtime.ray_shard import ShardWorker
from feedtag.store.cameras import CameraRecord, camera_settings, save_record


class ActorDied(Exception):
    """Stands for ``ray.exceptions.ActorDiedError``."""


class _Ref:
    """A call already made: its answer or its error."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: Exception | None = None
        try:
            self.value = call()
        except Exception as error:  # noqa: BLE001 - handed to whoever gets the answer
            self.error = error


class _Handle:
    """An actor handle whose ``method.remote(...)`` calls the object at once."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        return SimpleNamespace(remote=lambda *args: _Ref(lambda: method(*args)))


class InProcessRay:
    """The part of Ray the coordinator uses, over shard objects of this process."""

    exceptions = SimpleNamespace(ActorDiedError=ActorDied)

    def __init__(self, shards: dict[str, ShardWorker]) -> None:
        self.shards = shards
        #: (shard id, cameras) of every adopt call
        self.adopted: list[tuple[str, list[CameraConfig]]] = []

    def get_actor(self, name: str) -> _Handle:
        shard = self.shards[name]
        ray = self

        class Recording:
            def __getattr__(self, attr: str) -> Any:
                return getattr(shard, attr)

            def adopt(self, cameras: list[CameraConfig]) -> None:
                ray.adopted.append((name, list(cameras)))
                shard.adopt(cameras)

        return _Handle(Recording())

    def get(self, ref: _Ref, timeout: float | None = None) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value


SHARDS = {"shard-a": 1.0, "shard-b": 1.0}
COUNT = 12


@pytest.fixture
def config(tmp_path: Path) -> FeedtagConfig:
    return validate_config({
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"}, "detector": {"enabled": False},
    })  # fmt: skip


@pytest.fixture
def setup(
    config: FeedtagConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Coordinator, InProcessRay, CameraCatalog]]:
    database = open_database(config.store)
    catalog = CameraCatalog(config, database, {})
    for index in range(COUNT):
        catalog.put(simulated_camera(index))
    shards = {sid: ShardWorker(sid, config, engine=SimulatedCameras) for sid in SHARDS}
    ray = InProcessRay(shards)
    monkeypatch.setattr(ray_coordinator, "_ray", lambda: ray)
    coordinator = Coordinator(config, SHARDS)
    coordinator.reconcile_now()
    yield coordinator, ray, catalog
    coordinator.stop()
    for shard in shards.values():
        shard.stop()
    database.dispose()


def running(ray: InProcessRay) -> dict[str, CameraConfig]:
    """Every camera the shards run, by id."""
    return {c.id: c for shard in ray.shards.values() for c in shard.cameras()}


def test_a_round_validates_only_what_changed_and_the_change_reaches_the_shard(
    setup: tuple[Coordinator, InProcessRay, CameraCatalog], validated: list[str]
) -> None:
    coordinator, ray, catalog = setup
    assert sorted(running(ray)) == sorted(simulated_camera(i).id for i in range(COUNT))
    assert set(coordinator.assignment().values()) == set(SHARDS)
    adopted = len(ray.adopted)
    for _ in range(3):
        coordinator.reconcile_now()
    assert validated == []  # nothing changed: nothing validated again, nothing pushed
    assert len(ray.adopted) == adopted

    changed = simulated_camera(3).model_copy(update={"analysis_fps": 5.0})
    catalog.put(changed)
    coordinator.reconcile_now()
    assert validated == [changed.id]
    assert running(ray)[changed.id].analysis_fps == 5.0
    shard = coordinator.assignment()[changed.id]
    assert [(sid, len(cams)) for sid, cams in ray.adopted[adopted:]] == [
        (shard, sum(1 for s in coordinator.assignment().values() if s == shard))
    ]  # only its shard is told

    catalog.remove(simulated_camera(5).id)
    added = simulated_camera(COUNT)
    catalog.put(added)
    coordinator.reconcile_now()
    assert validated == [changed.id, added.id]
    assert simulated_camera(5).id not in coordinator.assignment()
    assert simulated_camera(5).id not in running(ray)
    assert added.id in running(ray)


def test_a_record_that_became_invalid_is_held_with_its_problem_until_it_is_fixed(
    setup: tuple[Coordinator, InProcessRay, CameraCatalog],
    config: FeedtagConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator, ray, _ = setup
    camera = simulated_camera(2)
    # written by an API node whose environment has the variable; this one's has not
    with_user = {"id": camera.id, "url": f"rtsp://u@{camera.url.host}/status"}
    settings = camera_settings(CameraConfig.model_validate(with_user))
    record = CameraRecord(camera.id, settings, {"password": "${FEEDTAG_CAMERA_SIM_PW}"},
                          False, False, 2e9)  # fmt: skip
    database = open_database(config.store)
    save_record(database, record)
    coordinator.reconcile_now()
    problems = coordinator.status()["problems"]
    assert problems == {
        camera.id: "password: environment variable FEEDTAG_CAMERA_SIM_PW is not set"
    }
    assert camera.id not in coordinator.assignment() and camera.id not in running(ray)

    monkeypatch.setenv("FEEDTAG_CAMERA_SIM_PW", "pw")  # set: resolved at the next round
    coordinator.reconcile_now()
    assert coordinator.status()["problems"] == {}
    assert running(ray)[camera.id].url.password is not None
    database.dispose()


def test_reconcile_now_waits_for_a_round_that_began_after_it(
    setup: tuple[Coordinator, InProcessRay, CameraCatalog],
) -> None:
    coordinator, ray, catalog = setup
    added = simulated_camera(COUNT + 1)
    catalog.put(added)
    coordinator.reconcile_now(wait_s=5.0)
    assert added.id in coordinator.assignment() and added.id in running(ray)
    assert coordinator.shard_of(added.id) == coordinator.assignment()[added.id]
    assert coordinator.shard_of("never-stored") is None


def _answers_from(shard: ShardWorker, pid: int | None) -> Callable[[], dict[str, Any]]:
    """A ping that times out (``pid`` None), or answers from process ``pid``."""

    def ping() -> dict[str, Any]:
        if pid is None:
            raise TimeoutError("ping timed out")  # ray's GetTimeoutError is a TimeoutError
        return ShardWorker.ping(shard) | {"pid": pid}

    return ping


def _fall_silent_and_answer(coordinator: Coordinator, shard: ShardWorker, pid: int) -> None:
    """``shard`` stops answering past the grace (its cameras move), then answers from ``pid``
    and takes its cameras back."""
    shard.ping = _answers_from(shard, None)  # type: ignore[method-assign]
    coordinator.reconcile_now()
    assert not coordinator.status()["shards"][shard.shard_id]["live"]
    shard.ping = _answers_from(shard, pid)  # type: ignore[method-assign]
    coordinator.reconcile_now()
    assert coordinator.status()["shards"][shard.shard_id]["live"]


def test_a_shard_that_was_only_slow_gives_no_strike_and_one_that_restarted_does(
    setup: tuple[Coordinator, InProcessRay, CameraCatalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silence past the grace moves a shard's cameras but is no crash by itself: a shard that
    answers again from the same process was slow (a busy machine), and blaming its cameras
    would put healthy ones offline. Answering from a new process is a restart: a strike for
    the cameras started on it shortly before."""
    from feedtag.runtime.crashes import CRASH_BUDGET

    coordinator, ray, _ = setup
    monkeypatch.setattr(ray_coordinator, "SHARD_GRACE_S", 0.0)
    shard = ray.shards["shard-a"]
    on_a = {c for c, s in coordinator.assignment().items() if s == "shard-a"}
    assert on_a
    pid = os.getpid()
    for _ in range(CRASH_BUDGET + 1):
        _fall_silent_and_answer(coordinator, shard, pid)
    status = coordinator.status()
    assert (status["held"], status["offline"]) == ([], {})
    assert {c for c, s in coordinator.assignment().items() if s == "shard-a"} == on_a

    for restart in range(1, CRASH_BUDGET + 1):
        _fall_silent_and_answer(coordinator, shard, pid + restart)
    # the cameras started on it shared every strike: held back for their trials
    assert set(coordinator.status()["held"]) == on_a


@pytest.mark.parametrize("how", ["silent too long", "reported dead"])
def test_a_shard_silent_for_good_or_reported_dead_after_its_silence_counts_as_a_crash(
    setup: tuple[Coordinator, InProcessRay, CameraCatalog],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    from feedtag.runtime.crashes import CRASH_BUDGET

    coordinator, ray, _ = setup
    monkeypatch.setattr(ray_coordinator, "SHARD_GRACE_S", 0.0)
    monkeypatch.setattr(ray_coordinator, "SILENT_CRASH_S", 0.0 if how == "silent too long" else 1e6)
    shard = ray.shards["shard-a"]
    on_a = {c for c, s in coordinator.assignment().items() if s == "shard-a"}

    def died() -> dict[str, Any]:
        raise ActorDied("the actor died")

    pid = os.getpid()
    for _ in range(CRASH_BUDGET):
        shard.ping = _answers_from(shard, None)  # type: ignore[method-assign]
        coordinator.reconcile_now()  # lost: silent, no strike yet
        assert coordinator.status()["held"] == []
        if how == "reported dead":
            shard.ping = died  # type: ignore[method-assign]
        coordinator.reconcile_now()  # the strike
        shard.ping = _answers_from(shard, pid)  # type: ignore[method-assign]
        coordinator.reconcile_now()  # back from the same process: no second strike
    assert set(coordinator.status()["held"]) == on_a
