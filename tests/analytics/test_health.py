"""Camera health on synthetic frames: offline, frozen, covered or dark, moved."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from feedtag.analytics.rules import Observation
from feedtag.core import CameraState
from tests.analytics.synth import CAMERA, T0, analyzer, kinds, observe

HEIGHT, WIDTH = 180, 320


def scene() -> np.ndarray:
    """A textured scene: random grey blocks, like buildings and road markings."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(40, 220, size=(9, 16), dtype=np.uint8)
    grey = np.kron(blocks, np.ones((20, 20), np.uint8))
    return np.repeat(grey[:, :, None], 3, axis=2)


SCENE = scene()
_RNG = np.random.default_rng(11)
# Seven frames of sensor noise: consecutive frames differ at every rate the tests use.
NOISY = [np.clip(SCENE + _RNG.normal(0, 3, SCENE.shape), 0, 255).astype(np.uint8) for _ in range(7)]


def live(t: float) -> np.ndarray:
    """The scene with sensor noise that differs on every frame."""
    return NOISY[round(t * 10) % 7].copy()


def frozen(t: float) -> np.ndarray:
    return SCENE


def black(t: float) -> np.ndarray:
    return np.clip(live(t).astype(np.int16) // 20, 0, 255).astype(np.uint8)


def grey_card(t: float) -> np.ndarray:
    return (live(t) // 16 + 120).astype(np.uint8)


def turned(t: float) -> np.ndarray:
    return np.roll(np.roll(live(t), 50, axis=1), 30, axis=0)


def passer_by(t: float) -> np.ndarray:
    image = live(t)
    x = int(20 * t) % (WIDTH - 30)
    image[100:160, x : x + 25] = 30  # a person walking across
    return image


Images = Callable[[float], np.ndarray]


def health(**rule: object) -> dict:
    params = {
        "frozen_after_s": 30,
        "covered_after_s": 30,
        "moved_after_s": 30,
        "offline_after_s": 60,
    }
    return {"rules": [{"kind": "camera_health", **{**params, **rule}}]}


def run_images(segments: list[tuple[float, float, Images]], fps: float = 1.0) -> list[str]:
    camera = analyzer(health())
    events = []
    for t0, t1, images in segments:
        t = t0
        while t < t1:
            events += camera.update(observe(t, image=images(t), frame_size=(WIDTH, HEIGHT))).events
            t += 1 / fps
    return kinds(events)


@pytest.mark.parametrize(
    ("name", "segments", "expected"),
    [
        ("live scene", [(0, 120, live)], []),
        ("frozen 40 s", [(0, 10, live), (10, 50, frozen)], ["camera_frozen"]),
        ("frozen 20 s", [(0, 10, live), (10, 30, frozen), (30, 60, live)], []),
        (
            "frozen twice",
            [(0, 40, frozen), (40, 50, live), (50, 90, frozen)],
            ["camera_frozen"] * 2,
        ),
        ("dark 40 s", [(0, 10, live), (10, 50, black)], ["camera_covered"]),
        ("dark 20 s", [(0, 10, live), (10, 30, black), (30, 40, live)], []),
        ("grey card 40 s", [(0, 10, live), (10, 50, grey_card)], ["camera_covered"]),
        ("turned 40 s", [(0, 10, live), (10, 50, turned)], ["camera_moved"]),
        ("turned 20 s and back", [(0, 10, live), (10, 30, turned), (30, 60, live)], []),
        ("turned, reported once", [(0, 10, live), (10, 120, turned)], ["camera_moved"]),
        ("people walk past", [(0, 120, passer_by)], []),
    ],
)
def test_image_health(name: str, segments: list, expected: list[str]) -> None:
    assert run_images(segments) == expected, name


def test_image_health_at_other_rates() -> None:
    assert run_images([(0, 10, live), (10, 50, frozen)], fps=0.5) == ["camera_frozen"]
    assert run_images([(0, 10, live), (10, 50, turned)], fps=5) == ["camera_moved"]


def test_covered_names_the_reason() -> None:
    camera = analyzer(health())
    batches = [
        camera.update(observe(t, image=black(t), frame_size=(WIDTH, HEIGHT))).events
        for t in range(40)
    ]
    (event,) = [e for batch in batches for e in batch]
    assert event.attributes["reason"] == "dark" and event.started_at == T0


def run_states(states: list[tuple[float, float, CameraState]]) -> list[str]:
    camera = analyzer(health())
    events = []
    for t0, t1, state in states:
        for t in np.arange(t0, t1, 5.0):
            if state is CameraState.ONLINE:
                obs = observe(
                    float(t), image=live(float(t)), state=state, frame_size=(WIDTH, HEIGHT)
                )
            else:  # no frames while down: status ticks only
                obs = Observation.status(CAMERA, T0 + float(t), state)
            events += camera.update(obs).events
    return kinds(events)


@pytest.mark.parametrize(
    ("name", "states", "expected"),
    [
        ("online", [(0, 200, CameraState.ONLINE)], []),
        (
            "offline 90 s",
            [(0, 10, CameraState.ONLINE), (10, 100, CameraState.OFFLINE)],
            ["camera_offline"],
        ),
        ("stalled 90 s", [(0, 90, CameraState.STALLED)], ["camera_offline"]),
        (
            "offline 30 s twice",
            [
                (0, 30, CameraState.OFFLINE),
                (30, 40, CameraState.ONLINE),
                (40, 70, CameraState.OFFLINE),
            ],
            [],
        ),
        ("offline for hours, reported once", [(0, 7200, CameraState.OFFLINE)], ["camera_offline"]),
    ],
)
def test_offline(name: str, states: list, expected: list[str]) -> None:
    assert run_states(states) == expected, name
