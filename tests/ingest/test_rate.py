"""The adaptive analysis rate: levels from what the vision stage saw, on stream time."""

from __future__ import annotations

import threading

import pytest

from feedtag.config.models import CameraConfig
from feedtag.core import AnalysisLevel
from feedtag.ingest.rate import PACKET_GATE_DISTRUST_S, AdaptiveRate, AnalysisRates

FLOOR, NORMAL, TRACKING = AnalysisLevel.FLOOR, AnalysisLevel.NORMAL, AnalysisLevel.TRACKING

# (t_s, appeared, moving_tracks, near_rule_motion)
Step = tuple[float, bool, bool, bool]


def levels(rate: AdaptiveRate, steps: list[Step]) -> list[AnalysisLevel]:
    return [
        rate.observe(t, appeared=appeared, moving_tracks=moving, near_rule_motion=near)
        for t, appeared, moving, near in steps
    ]


def controller(quiet_after_s: float = 10.0) -> AdaptiveRate:
    return AdaptiveRate(
        floor_fps=0.5, normal_fps=1.0, tracking_fps=5.0, quiet_after_s=quiet_after_s
    )


@pytest.mark.parametrize(
    ("case", "steps", "expected"),
    [
        (
            "a still scene drops to the floor after quiet_after_s, not before",
            [(0, True, False, False), (9.9, False, False, False), (10, False, False, False)],
            [NORMAL, NORMAL, FLOOR],
        ),
        (
            "an object appearing raises the floor to normal at once",
            [(0, False, False, False), (12, False, False, False), (14, True, False, False)],
            [NORMAL, FLOOR, NORMAL],
        ),
        (
            "a moving track keeps the rate normal with nothing new",
            [(0, True, True, False), (30, False, True, False), (60, False, True, False)],
            [NORMAL, NORMAL, NORMAL],
        ),
        (
            "quiet is counted from the last activity",
            [(0, True, True, False), (5, False, True, False), (14, False, False, False),
             (15, False, False, False)],
            [NORMAL, NORMAL, NORMAL, FLOOR],
        ),
        (
            "motion near a rule: tracking, held quiet_after_s after the last such motion",
            [(0, True, True, True), (5, True, True, True), (14.9, False, True, False),
             (15, False, True, False)],
            [TRACKING, TRACKING, TRACKING, NORMAL],
        ),
        (
            "tracking from the floor in one step",
            [(0, False, False, False), (20, False, False, False), (21, True, True, True)],
            [NORMAL, FLOOR, TRACKING],
        ),
        (
            "stream time going far back (the clock restarted) starts the quiet count again",
            [(0, False, False, False), (40, False, False, False), (1, False, False, False)],
            [NORMAL, FLOOR, NORMAL],
        ),
        (
            "a late detection result neither resets nor moves the clock back",
            [(0, True, True, True), (2, False, False, False), (1.9, False, True, False),
             (9.9, False, False, False), (10, False, False, False), (11.8, False, False, False),
             (11.9, False, False, False)],
            [TRACKING, TRACKING, TRACKING, TRACKING, NORMAL, NORMAL, FLOOR],
        ),
    ],
)  # fmt: skip
def test_levels_follow_what_the_scene_shows(
    case: str, steps: list[Step], expected: list[AnalysisLevel]
) -> None:
    rate = controller()
    assert levels(rate, steps) == expected, case
    assert rate.level is expected[-1]
    assert rate.target_fps == {FLOOR: 0.5, NORMAL: 1.0, TRACKING: 5.0}[expected[-1]]


def test_equal_rates_never_report_a_change_of_level() -> None:
    rate = AdaptiveRate(floor_fps=1.0, normal_fps=1.0, tracking_fps=1.0)
    assert not rate.adapts
    assert levels(rate, [(0, True, True, True), (100, False, False, False)]) == [NORMAL, NORMAL]
    assert rate.target_fps == 1.0


@pytest.mark.parametrize(
    ("rates", "quiet", "message"),
    [
        ((2.0, 1.0, 5.0), 10.0, "floor_fps <= normal_fps"),
        ((0.5, 1.0, 0.8), 10.0, "normal_fps <= tracking_fps"),
        ((0.0, 1.0, 5.0), 10.0, "0 < floor_fps"),
        ((0.5, 1.0, 5.0), 0.0, "quiet_after_s > 0"),
    ],
)
def test_inconsistent_rates_are_refused(
    rates: tuple[float, float, float], quiet: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("<", "<")):
        AdaptiveRate(*rates, quiet_after_s=quiet)


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({"analysis_fps": 1}, (0.5, 1.0, 5.0)),
        ({"analysis_fps": 0.2}, (0.2, 0.2, 5.0)),  # defaults never cross analysis_fps
        ({"analysis_fps": 10}, (0.5, 10.0, 10.0)),
        ({"analysis_fps": 2, "adaptive": {"floor_fps": 1, "tracking_fps": 8}}, (1.0, 2.0, 8.0)),
        ({"analysis_fps": 2, "adaptive": {"enabled": False}}, (2.0, 2.0, 2.0)),
    ],
)
def test_controller_from_camera_settings(
    camera: dict[str, object], expected: tuple[float, float, float]
) -> None:
    config = CameraConfig.model_validate({"id": "a", "url": "rtsp://cam/x", **camera})
    rate = AdaptiveRate.for_camera(config)
    assert tuple(rate.fps(level) for level in (FLOOR, NORMAL, TRACKING)) == expected
    assert rate.target_fps == expected[1]


def test_registry_shares_one_controller_per_camera_until_removed() -> None:
    rates = AnalysisRates()
    camera = CameraConfig(id="door", url="rtsp://cam/x")
    first = rates.for_camera(camera)
    assert rates.for_camera(camera) is first and rates.get("door") is first
    rates.remove("door")
    assert rates.get("door") is None
    assert rates.for_camera(camera) is not first


def test_observations_from_many_threads_keep_the_rate_consistent() -> None:
    rate = controller()

    def feed(offset: int) -> None:
        for i in range(2000):
            rate.observe(offset + i * 0.01, appeared=i % 2 == 0, moving_tracks=False)

    threads = [threading.Thread(target=feed, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rate.level in (FLOOR, NORMAL)
    assert rate.target_fps == rate.fps(rate.level)


def quiet_controller() -> AdaptiveRate:
    """A controller at the floor rate since stream time 10."""
    rate = controller()
    rate.observe(0, appeared=False, moving_tracks=False)
    rate.observe(10, appeared=False, moving_tracks=False)
    assert rate.level is FLOOR
    return rate


def test_the_packet_gate_is_open_at_the_floor_rate_only() -> None:
    rate = controller()
    rate.observe(0, appeared=True, moving_tracks=False)
    assert not rate.packet_gate_open(1, None)  # normal
    rate.observe(11, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(11, None)  # floor
    rate.observe(12, appeared=True, moving_tracks=True, near_rule_motion=True)
    assert not rate.packet_gate_open(12, None)  # tracking


def test_a_check_frame_that_finds_activity_shuts_the_packet_gate() -> None:
    """The packet sizes called the scene unchanged, the refresh frame shows an object that
    was not there: this camera's packet sizes do not show change (a constant bitrate
    encoder, say), so its keyframes are decoded again for PACKET_GATE_DISTRUST_S."""
    rate = quiet_controller()
    rate.checks_packet_gate(20)
    rate.observe(20, appeared=True, moving_tracks=False)
    rate.observe(40, appeared=False, moving_tracks=False)  # quiet again: the floor
    assert rate.level is FLOOR
    assert not rate.packet_gate_open(40, None) and rate.packet_gate_distrusted()
    assert not rate.packet_gate_open(20 + PACKET_GATE_DISTRUST_S - 0.1, None)
    assert rate.packet_gate_open(20 + PACKET_GATE_DISTRUST_S, None)
    rate.observe(20 + PACKET_GATE_DISTRUST_S, appeared=False, moving_tracks=False)
    assert not rate.packet_gate_distrusted()


def test_a_check_frame_that_finds_nothing_new_leaves_the_packet_gate_open() -> None:
    rate = quiet_controller()
    rate.checks_packet_gate(20)
    rate.observe(20, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(20, None) and not rate.packet_gate_distrusted()
    # activity on a later frame the packet gate let through is what it is there for
    rate.observe(22, appeared=True, moving_tracks=True)
    rate.observe(40, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(40, None)


def test_a_check_frame_the_vision_stage_dropped_is_forgotten() -> None:
    rate = quiet_controller()
    rate.checks_packet_gate(20)
    rate.observe(21, appeared=False, moving_tracks=False)  # 20 never came back
    rate.observe(20, appeared=True, moving_tracks=False)  # too late to be the check
    rate.observe(40, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(40, None)


def test_a_restarted_stream_clock_forgets_a_shut_packet_gate() -> None:
    rate = quiet_controller()
    rate.checks_packet_gate(50)
    rate.observe(50, appeared=True, moving_tracks=False)
    assert not rate.packet_gate_open(70, None)
    rate.observe(0, appeared=False, moving_tracks=False)  # the clock restarted
    rate.observe(10, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(10, None)


def test_the_packet_gate_waits_for_the_result_of_the_last_frame_handed_on() -> None:
    """A file read as fast as possible: the ingest is at stream time 24 while the frame it
    handed on at 21 is still being analysed, and that result may raise the rate."""
    rate = quiet_controller()
    rate.observe(16, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(22, 16)
    assert not rate.packet_gate_open(22, 21)  # 21 handed on, not yet observed
    rate.observe(21, appeared=True, moving_tracks=True)
    assert not rate.packet_gate_open(22, 21)  # observed: activity, the normal rate
    rate.observe(40, appeared=False, moving_tracks=False)
    assert rate.packet_gate_open(41, 40)
