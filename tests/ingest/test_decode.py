from __future__ import annotations

import pytest

from feedtag.core import DecodeMode
from feedtag.ingest.decode import DecodePolicy, KeyframeIntervalMeter, analysis_size


def gop_packets(seconds: float, fps: int, gop: int) -> list[tuple[float, bool]]:
    return [(i / fps, i % gop == 0) for i in range(int(seconds * fps))]


def run_policy(policy: DecodePolicy, packets: list[tuple[float, bool]]) -> list[float]:
    """The packets a policy sends to the decoder (after the mode is known); each decoded
    frame is offered for conversion at once, as a decoder without delay would."""
    admitted = []
    for t, key in packets:
        if policy.admit_packet(t, key):
            policy.take_frame(t)
            if policy.mode is not DecodeMode.MEASURING:
                admitted.append(t)
    return admitted


@pytest.mark.parametrize(
    ("analysis_fps", "gop", "mode", "decoded_per_s"),
    [
        (1.0, 25, DecodeMode.KEYFRAMES, 1),  # keyframe each second, 1 fps: keyframes only
        (0.5, 25, DecodeMode.KEYFRAMES, 0.5),  # keyframes that are not due are skipped too
        (1.0, 50, DecodeMode.SAMPLED, 25),  # keyframe every 2 s: must decode everything
        (5.0, 25, DecodeMode.SAMPLED, 25),  # more than one frame per GOP wanted
    ],
)
def test_mode_follows_keyframe_interval(
    analysis_fps: float, gop: int, mode: DecodeMode, decoded_per_s: float
) -> None:
    policy = DecodePolicy(analysis_fps)
    packets = gop_packets(20, 25, gop)
    admitted = run_policy(policy, packets)
    assert policy.mode is mode
    assert policy.meter.interval_s == pytest.approx(gop / 25)
    steady = [t for t in admitted if 4 <= t < 20]
    assert len(steady) == pytest.approx(16 * decoded_per_s, abs=1)
    if mode is DecodeMode.KEYFRAMES:
        keyframe_times = {t for t, key in packets if key}
        assert set(admitted) <= keyframe_times  # nothing but keyframes reaches the decoder
        assert policy.skip_frame == "NONKEY"


def test_forced_all_never_skips() -> None:
    policy = DecodePolicy(1.0, keyframes_allowed=False)
    admitted = run_policy(policy, gop_packets(5, 25, 25))
    assert policy.mode is DecodeMode.SAMPLED and len(admitted) == 100


def test_switch_back_to_sampled_happens_at_a_keyframe() -> None:
    policy = DecodePolicy(1.0)
    run_policy(policy, gop_packets(4, 25, 25))
    assert policy.mode is DecodeMode.KEYFRAMES
    # the stream now sends a keyframe every 4 s: the median moves once enough are seen
    later = [(4 + i / 25, i % 100 == 0) for i in range(25 * 20)]
    first_nonkey_admitted = None
    for t, key in later:
        if policy.admit_packet(t, key) and not key and first_nonkey_admitted is None:
            first_nonkey_admitted = t
            break
    assert policy.mode is DecodeMode.SAMPLED
    assert first_nonkey_admitted is not None
    # the packet before it was a keyframe: the decoder has its reference
    assert any(key and t == pytest.approx(first_nonkey_admitted - 0.04) for t, key in later)


def test_sampling_is_by_time_with_slack() -> None:
    policy = DecodePolicy(2.0)
    taken = [t for t in [i * 0.1 for i in range(40)] if policy.take_frame(t)]
    assert taken == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], abs=0.11)
    assert policy.take_frame(0.0)  # timestamps restarted (reconnect): taken at once


def test_keyframe_meter_uses_median() -> None:
    meter = KeyframeIntervalMeter()
    for t in (0, 1, 2, 2.5, 3.5, 4.5):
        meter.observe_keyframe(t)
    assert meter.interval_s == 1.0


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ((1280, 720), (640, None), (640, 360)),
        ((768, 576), (640, None), (640, 480)),
        ((320, 240), (640, None), (320, 240)),
        ((1920, 1080), (416, 416), (416, 416)),
        ((1281, 721), (3840, None), (1280, 720)),
    ],
)
def test_analysis_size(
    source: tuple[int, int], target: tuple[int, int | None], expected: tuple[int, int]
) -> None:
    assert analysis_size(*source, *target) == expected


def test_rate_change_switches_mode_at_the_next_keyframe_and_back() -> None:
    """1 fps on a 1 s GOP decodes keyframes only; raised to 5 fps mid-GOP it keeps skipping
    until the next keyframe (the P-frames before it lack their references), then decodes
    every frame and samples 5 a second; lowered again it returns to keyframes only."""
    policy = DecodePolicy(1.0)
    decoded: list[float] = []
    taken: list[float] = []
    for t, key in gop_packets(16, 25, 25):
        if t == pytest.approx(5.52):
            policy.set_analysis_fps(5.0)
        if t == pytest.approx(10.32):
            policy.set_analysis_fps(1.0)
        if policy.admit_packet(t, key):
            decoded.append(t)
            if policy.take_frame(t):
                taken.append(t)
    in_window = lambda start, end: [t for t in decoded if start <= t < end]  # noqa: E731
    assert in_window(2, 6) == pytest.approx([2, 3, 4, 5])  # keyframes only, none after 5.52
    assert len(in_window(6, 10)) == 100  # every frame of the sampled GOPs
    assert [t for t in taken if 6 <= t < 7] == pytest.approx([6, 6.2, 6.4, 6.6, 6.8])
    assert len(in_window(10, 11)) == 25  # still sampled until the keyframe at 11
    # keyframes only again; the one at 11 is skipped because it is not due (the last
    # sample, at 10.2, is less than the new 1 s period before it)
    assert in_window(11, 16) == pytest.approx([12, 13, 14, 15])
    assert [t for t in taken if t > 10.32] == pytest.approx([12, 13, 14, 15])
    assert policy.mode is DecodeMode.KEYFRAMES and policy.analysis_fps == 1.0


@pytest.mark.parametrize("fps", [0.0, -1.0, float("nan")])
def test_rate_change_refuses_a_rate_that_is_not_positive(fps: float) -> None:
    policy = DecodePolicy(1.0)
    with pytest.raises(ValueError, match="analysis_fps > 0"):
        policy.set_analysis_fps(fps)
    assert policy.period_s == 1.0
