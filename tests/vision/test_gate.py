from __future__ import annotations

import numpy as np
import pytest

from feedtag.vision.gate import ChangeGate, tiny_grey

RNG = np.random.default_rng(42)
BASE = RNG.integers(40, 200, (360, 640, 3), dtype=np.uint8)


def noisy(image: np.ndarray, sigma: float) -> np.ndarray:
    noise = RNG.normal(0, sigma, image.shape)
    return np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def with_object(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    out = image.copy()
    out[y : y + h, x : x + w] = (250, 20, 20)
    return out


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (noisy(BASE, 3), "unchanged"),  # sensor noise
        (noisy(BASE, 6), "unchanged"),
        (with_object(BASE, 300, 150, 20, 40), "changed"),  # a distant person walks in
        (with_object(BASE, 0, 0, 8, 8), "unchanged"),  # a few pixels: below the floor
        (np.clip(BASE.astype(np.int16) + 40, 0, 255).astype(np.uint8), "changed"),  # lights
    ],
    ids=["noise3", "noise6", "small-object", "speck", "lighting"],
)
def test_change_table(second: np.ndarray, expected: str) -> None:
    gate = ChangeGate()
    assert gate.decide(BASE, 0.0).run
    assert gate.decide(second, 1.0).reason == expected


def test_slow_change_accumulates_against_last_detection() -> None:
    gate = ChangeGate()
    gate.decide(BASE, 0.0)
    reasons = []
    for step in range(1, 8):  # an object creeping in 3 px at a time: each step tiny
        frame = with_object(BASE, 300, 150, 3 * step, 40)
        reasons.append(gate.decide(frame, float(step)).reason)
    assert reasons[0] == "unchanged"
    assert "changed" in reasons


def test_refresh_bounds_staleness_and_tracks_force_a_run() -> None:
    gate = ChangeGate(refresh_s=5)
    gate.decide(BASE, 0.0)
    assert [gate.decide(BASE, t).run for t in (1.0, 2.0, 4.9)] == [False, False, False]
    assert gate.decide(BASE, 5.0).reason == "refresh"
    assert gate.decide(BASE, 6.0, moving_tracks=True).reason == "tracks"
    assert (gate.detected, gate.gated) == (3, 3)


def test_timestamps_going_back_and_reset_run_the_detector() -> None:
    gate = ChangeGate()
    gate.decide(BASE, 10.0)
    assert gate.decide(BASE, 3.0).reason == "first"  # a reconnect restarted stream time
    gate.reset()
    assert gate.decide(BASE, 4.0).reason == "first"


@pytest.mark.parametrize(
    "kwargs",
    [{"pixel_threshold": 0}, {"min_changed_fraction": 2}, {"refresh_s": 0}],
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected"):
        ChangeGate(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(360, 640, 3), (33, 47, 3), (8, 8, 3)])
def test_tiny_grey_is_bt601_luma_of_the_2x2_samples(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    luma = (image[::4, ::4].astype(np.int64) @ np.array([77, 150, 29])) >> 8
    luma = luma[: luma.shape[0] // 2 * 2, : luma.shape[1] // 2 * 2]
    blocks = luma[0::2, 0::2] + luma[1::2, 0::2] + luma[0::2, 1::2] + luma[1::2, 1::2]
    np.testing.assert_array_equal(tiny_grey(image), blocks >> 2)
