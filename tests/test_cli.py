"""The ``feedtag`` command, run as a person runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import free_port

FEEDTAG = [sys.executable, "-m", "feedtag.cli"]


def feedtag(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEEDTAG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_ok(tmp_path: Path, vtest_clip: Path) -> None:
    config = write_config(
        tmp_path / "ok.yaml",
        f"media_root: {vtest_clip.parent}\ncameras:\n  - {{id: a, url: {vtest_clip.name}}}\n",
    )
    done = feedtag("check", str(config))
    assert done.returncode == 0, done.stderr
    assert "OK (1 camera(s), 1 enabled)" in done.stdout


def test_check_prints_every_error_with_its_path(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bad.yaml",
        "cameras:\n"
        "  - {id: a, url: 'rtsp://cam/x'}\n"
        "  - {id: b, url: 'rtsp://cam/y', analysis_fps: -1}\n"
        "  - {id: c, url: 'concat:a.mp4|b.mp4'}\n"
        "  - {id: d, url: 'rtsp://u:hunter2@cam/z', colour: red}\n",
    )
    done = feedtag("check", str(config))
    assert done.returncode == 2
    assert "cameras[1].analysis_fps: Input should be greater than 0" in done.stderr
    assert "cameras[2].url: scheme 'concat' is not allowed" in done.stderr
    assert "cameras[3].colour: Extra inputs are not permitted" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_schema_is_json() -> None:
    done = feedtag("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "feedtag configuration"


def test_probe_file_json(vtest_clip: Path) -> None:
    done = feedtag("probe", str(vtest_clip), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["codec"] == "h264"
    assert (result["width"], result["height"]) == (640, 360)
    assert result["fps"] == 25
    assert result["keyframe_interval_s"] == pytest.approx(1.0)
    assert result["bitrate_kbps"] > 10


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("concat:/a|/b", 2, "scheme 'concat' is not allowed"),
        ("-rf /", 2, "must not start with '-'"),
        ("rtsp://u:hunter2@127.0.0.1:{port}/x", 1, "connection refused"),
    ],
)
def test_probe_errors(url: str, code: int, message: str) -> None:
    done = feedtag("probe", url.format(port=free_port()), "--timeout", "3")
    assert done.returncode == code
    assert message in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_prints_status_and_stops_on_signal(
    tmp_path: Path, vtest_clip: Path, models_dir: Path, signum: signal.Signals
) -> None:
    config = write_config(
        tmp_path / "run.yaml",
        f"media_root: {vtest_clip.parent}\nengine: {{status_interval_s: 0.5}}\n"
        f"cameras:\n  - {{id: lobby, url: {vtest_clip.name}, loop: true}}\n",
    )
    process = subprocess.Popen(
        [*FEEDTAG, "run", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FEEDTAG_MODELS_DIR": str(models_dir)},
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            status = json.loads(line)["cameras"][0]
            vision = status["vision"]
            if status["state"] == "online" and vision and vision["detected"] >= 2:
                break
        assert status is not None and status["state"] == "online", status
        assert status["mode"] == "keyframes"
        assert status["vision"]["counts"].get("person", 0) >= 1
        process.send_signal(signum)
        started = time.monotonic()
        assert process.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        process.kill()
        process.communicate()


def test_run_rejects_bad_config_before_opening_anything(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", "cameras: [{id: a, url: 'pipe:0'}]\n")
    done = feedtag("run", str(config), "--seconds", "1")
    assert done.returncode == 2
    assert "cameras[0].url" in done.stderr


@pytest.mark.slow
def test_bench_ingest_json(vtest_clip: Path) -> None:
    done = feedtag(
        "bench", "ingest", "--source", str(vtest_clip), "--feeds", "4", "--seconds", "2",
        "--json", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("feeds", "mode", "feeds_per_core", "cpu_s_per_feed_s", "rss_mb_per_feed"):
        assert key in result
    assert result["feeds"] == 4 and result["mode"] == "keyframes"
    assert result["feeds_per_core"] > 1 and result["bare"]["feeds_per_core"] > 1
    assert 3 <= result["analysed_fps"] <= 5  # 4 feeds at 1 fps
    # ingest only: no detector to keep up with, so never saturated
    assert result["saturated"] is False and result["p99_latency_s"] is None


@pytest.mark.slow
def test_bench_compare_quick_json() -> None:
    done = feedtag(
        "bench", "compare", "--quick", "--json", "--seconds", "2", "--workloads", "W1,fleet",
        "--rounds", "2", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["workload"] for row in rows] == ["W1", "fleet"]
    assert "round 2 of 2" in done.stderr
    for row in rows:
        assert row["rounds"] == 2
        # each variant's reported run is its median round (of two: the lower), unless saturated
        for kind in ("feedtag", "peer", "limit"):
            figures, reported = row[f"{kind}_rounds"], row[f"{kind}_feeds_per_core"]
            assert len(figures) == 2
            assert reported == (None if None in figures else min(figures))
        assert 0 < row["presence_recall"] <= 1
        assert row["rss_mb_per_feed"] > 0
        assert row["feeds"] == 4
        # a figure only when the run kept up; the cost and throughput always
        for variant, figure in (
            (row, row["feedtag_feeds_per_core"]),
            (row["peer"], row["peer_feeds_per_core"]),
            (row["limit"], row["limit_feeds_per_core"]),
        ):
            assert variant["cpu_s_per_feed_s"] > 0
            assert variant["detected_fps"] > 0 and variant["due_fps"] > 0
            assert variant["dropped_fps"] >= 0
            assert variant["p99_latency_s"] > 0
            assert (figure is None) == variant["saturated"]
            assert figure is None or figure > 0


def test_bench_rejects_bad_arguments() -> None:
    done = feedtag("bench", "ingest", "--feeds", "0")
    assert done.returncode == 2
    assert "expected a number > 0" in done.stderr
    done = feedtag("bench", "detect", "--batches", "1,x")
    assert done.returncode == 2
    assert "expected comma-separated integers, got '1,x'" in done.stderr


def test_bench_detect_gpu_without_a_gpu_says_what_is_missing() -> None:
    done = feedtag("bench", "detect", "--gpu", "--seconds", "0.1")
    assert done.returncode == 1
    assert "no GPU execution provider works here" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_demo_runs_real_footage(tmp_path: Path, models_dir: Path) -> None:
    done = feedtag(
        "demo", "--seconds", "6", timeout=300,
        FEEDTAG_CACHE_DIR=str(tmp_path), FEEDTAG_MODELS_DIR=str(models_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "vtest.avi" in done.stdout and "bikes.mp4" in done.stdout
    lines = done.stdout.strip().splitlines()
    final = [line for line in lines[-8:] if " stopped " in line]
    assert len(final) == 4, lines[-8:]
    # each camera says its decode mode; the one at 5 fps always samples, the others
    # switch between keyframes and sampled as their analysis rate adapts
    assert all("keyframes" in line or "sampled" in line for line in final), final
    assert sum("sampled" in line for line in final) >= 1
    assert "events, tags and media are in" in lines[-1]
    assert "person:" in done.stdout  # people were detected while it ran


@pytest.mark.slow
def test_detect_prints_tracks_and_saves_anonymized_frames(
    tmp_path: Path, vtest_clip: Path, models_dir: Path
) -> None:
    from PIL import Image

    out = tmp_path / "annotated"
    done = feedtag(
        "detect", str(vtest_clip), "--json", "--max-frames", "3", "--save-annotated", str(out),
        FEEDTAG_MODELS_DIR=str(models_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["frame"] for f in frames] == [0, 1, 2]
    people = [d for d in frames[2]["detections"] if d["label"] == "person"]
    assert len(people) >= 2
    assert any(d["track_id"] for d in people)  # ids once tracks are confirmed
    images = sorted(out.glob("*.jpg"))
    assert len(images) == 3
    with Image.open(images[0]) as image:
        assert image.format == "JPEG" and image.size == (640, 360)


def test_detect_rejects_hostile_input(tmp_path: Path) -> None:
    done = feedtag("detect", "concat:/a|/b")
    assert done.returncode == 2
    assert "scheme 'concat' is not allowed" in done.stderr
