from __future__ import annotations

from pathlib import Path

import pytest

from feedtag.errors import SpoolFull, StoreError
from feedtag.store.spool import Spool


def records(start: int, count: int) -> list[dict[str, int]]:
    return [{"n": n} for n in range(start, start + count)]


def test_replays_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=30)
    for start in range(0, 20, 4):
        spool.append(records(start, 4))
    assert len(list(tmp_path.glob("spool-*.jsonl"))) > 1
    taken: list[dict[str, int]] = []
    assert spool.replay(taken.extend) == 20
    assert [r["n"] for r in taken] == list(range(20))
    assert (spool.records, spool.size_bytes) == (0, 0)
    assert not list(tmp_path.glob("spool-*.jsonl"))


def test_full_spool_refuses_the_whole_batch_and_counts_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=40)
    spool.append(records(0, 3))
    with pytest.raises(SpoolFull, match="full") as raised:
        spool.append(records(3, 3))
    assert isinstance(raised.value, StoreError)
    assert (spool.records, spool.dropped) == (3, 3)
    taken: list[dict[str, int]] = []
    spool.replay(taken.extend)
    assert [r["n"] for r in taken] == [0, 1, 2]


def test_failed_replay_keeps_the_segment_for_the_next_try(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=10)
    spool.append(records(0, 2))
    spool.append(records(2, 2))

    def refuse(batch: list[dict[str, int]]) -> None:
        raise StoreError("down")

    with pytest.raises(StoreError):
        spool.replay(refuse)
    assert spool.records == 4
    taken: list[dict[str, int]] = []
    spool.replay(taken.extend)
    assert [r["n"] for r in taken] == [0, 1, 2, 3]


def test_reopened_spool_counts_what_is_on_disk_and_skips_a_torn_line(tmp_path: Path) -> None:
    Spool(tmp_path).append(records(0, 3))
    with next(tmp_path.glob("spool-*.jsonl")).open("ab") as file:
        file.write(b'{"n": 3')  # a crash mid-append
    spool = Spool(tmp_path)
    spool.append(records(4, 1))
    taken: list[dict[str, int]] = []
    spool.replay(taken.extend)
    assert [r["n"] for r in taken] == [0, 1, 2, 4]


@pytest.mark.parametrize(
    ("max_bytes", "segment_bytes"), [(0, 10), (10, 0), (-1, 10)], ids=["max0", "seg0", "neg"]
)
def test_rejects_bad_bounds(tmp_path: Path, max_bytes: int, segment_bytes: int) -> None:
    with pytest.raises(ValueError, match="positive bounds"):
        Spool(tmp_path, max_bytes=max_bytes, segment_bytes=segment_bytes)
