"""``feedtag bench control-plane``: its arguments, and ``--quick`` end to end (a real local
Ray, a real PostgreSQL, 200 simulated cameras over 2 shards, one shard lost for good)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedtag.bench.control_plane import QUICK_COUNTS, ControlPlaneRow, format_table, main

from ..conftest import REPO, require_service
from ..store.conftest import _postgres_available

RAY_INSTALLED = importlib.util.find_spec("ray") is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cameras", "100,lots"], "--cameras: expected comma-separated numbers"),
        (["--shards", "1"], "--shards must be at least 2"),
        (["--cameras", "3", "--shards", "4"], "at most the smallest camera count"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.timeout(180)
def test_quick_control_plane_bench(tmp_path: Path) -> None:
    require_service(RAY_INSTALLED, "ray is not installed (pip install 'feedtag[ray]')")
    available, reason = _postgres_available()
    require_service(available, reason)
    output = tmp_path / "control-plane.json"
    command = [sys.executable, "-m", "feedtag.cli", "bench", "control-plane", "--quick",
               "--shards", "2", "--json", "--output", str(output)]  # fmt: skip
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=150, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cameras: all running after" in result.stderr  # progress is shown
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows == json.loads(output.read_text())
    (row,) = rows
    assert row["cameras"] == QUICK_COUNTS[0] and row["shards"] == 2
    # the lost shard ran a share of the cameras, and exactly those moved (rendezvous hashing)
    assert 0 < row["lost_share"] < row["cameras"] + 1
    assert row["moved"] == row["lost_share"]
    # a restarted shard gets its cameras back; if its restart outlasts the grace period, they
    # all move (and come back): never some of them
    assert 0 < row["restart_share"] < row["cameras"] + 1
    assert row["restart_moved"] in (0, row["restart_share"])
    for key in ("start_s", "round_cpu_s", "coordinator_cpu_share", "coordinator_rss_mb", "restart_s",
                "add_one_s", "add_call_s", "snapshot_s", "page_s", "states_s", "totals_s", "reassign_s"):  # fmt: skip
        assert row[key] > 0, (key, row)
    assert row["round_s"] >= 0 and row["snapshot_bytes_per_camera"] > 100
    assert row["reassign_s"] < 30 and row["add_one_s"] < 30
    print("\n" + format_table([ControlPlaneRow(**row)]))
