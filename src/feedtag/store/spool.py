"""A bounded on-disk spool that holds what the store could not take during an outage.

Records are JSON objects appended as lines to segment files ``spool-NNNNNNNN.jsonl`` in one
folder; every append is flushed and fsynced before it returns, so a record the spool
accepted survives a crash of the process. On recovery the writer replays the segments
oldest first and deletes each one only after the store took all of it. Store inserts are
idempotent, so a crash between "written" and "deleted" replays a segment twice and still
stores every record once.

**When full** (``size_bytes`` would exceed ``max_bytes``), :meth:`Spool.append` refuses the
whole batch with :class:`~feedtag.errors.SpoolFull`, stores nothing of it, and adds its
length to ``dropped``: the bound protects the disk that the cameras and the OS also need,
and dropping is counted, never silent. A batch the disk itself fails (full disk) is cut off
again, counted in ``dropped`` too, and its ``OSError`` raised. ``size_bytes``, ``records``
and ``dropped`` are the metrics to export.

>>> import tempfile
>>> spool = Spool(tempfile.mkdtemp(), max_bytes=1000)
>>> spool.append([{"n": 1}, {"n": 2}])
>>> spool.records, spool.size_bytes
(2, 16)
>>> taken = []
>>> spool.replay(taken.extend)
2
>>> taken, spool.records
([{'n': 1}, {'n': 2}], 0)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from feedtag.errors import SpoolFull

log = logging.getLogger(__name__)

#: default bound of the whole spool on disk
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
#: a segment is closed and a new one started past this size, so replay works in chunks
DEFAULT_SEGMENT_BYTES: Final = 4 * 1024 * 1024
_PATTERN: Final = "spool-*.jsonl"


class Spool:
    """Append-only JSON-lines segments with fsync, bounded, replayed in order.

    Thread-safe: the writer thread appends and replays, a metrics thread reads the sizes.
    """

    def __init__(
        self,
        folder: str | Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError(f"expected positive bounds, got {max_bytes=}, {segment_bytes=}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._dropped = 0
        self._records = 0
        self._bytes = 0
        for segment in self._segments():
            self._bytes += segment.stat().st_size
            self._records += len(_read_segment(segment))
        existing = self._segments()
        self._next_number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        self._current: Path | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in all segments."""
        with self._lock:
            return self._bytes

    @property
    def records(self) -> int:
        """Records waiting to be replayed."""
        with self._lock:
            return self._records

    @property
    def dropped(self) -> int:
        """Records refused since this object was made: the spool was full, or its disk
        failed the append (full disk, I/O error)."""
        with self._lock:
            return self._dropped

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Store ``records`` durably, all or none; raise :class:`SpoolFull` when the bound
        would be exceeded, ``OSError`` when the disk fails the write (either way the records
        are counted in ``dropped`` and none of them stays on disk)."""
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                self._dropped += len(records)
                raise SpoolFull(
                    f"spool {self.folder} is full ({self._bytes} of {self.max_bytes} bytes): "
                    f"dropped {len(records)} records ({self._dropped} in all)"
                )
            segment = self._segment_for_append()
            try:
                _append_durably(segment, data)
            except OSError:
                self._dropped += len(records)
                raise
            self._bytes += len(data)
            self._records += len(records)

    def replay(self, write: Callable[[list[dict[str, Any]]], None]) -> int:
        """Hand each segment's records to ``write``, oldest first, deleting a segment once
        ``write`` returned. Stops at the first exception (which propagates), leaving that
        segment and the later ones in place. Returns the number of records replayed."""
        replayed = 0
        for segment in self._segments():
            with self._lock:
                if segment == self._current:
                    self._current = None  # new appends go to a new segment
            records = _read_segment(segment)
            if records:
                write(records)
            size = segment.stat().st_size
            segment.unlink()
            _fsync_folder(self.folder)
            with self._lock:
                self._bytes -= size
                self._records -= len(records)
            replayed += len(records)
        return replayed

    def _segments(self) -> list[Path]:
        return sorted(self.folder.glob(_PATTERN))

    def _segment_for_append(self) -> Path:
        current = self._current
        if current is None or not current.exists() or current.stat().st_size >= self.segment_bytes:
            current = self.folder / f"spool-{self._next_number:08d}.jsonl"
            self._next_number += 1
            self._current = current
        return current


def _append_durably(segment: Path, data: bytes) -> None:
    """Append ``data`` and fsync, all or nothing: when the disk fails part way (full), the
    part written is cut off again. Left there, it would be a torn line that the next append
    continues, and replay would lose that append's first record, which had been reported
    stored (found on a full disk in tests/faults)."""
    fd = os.open(segment, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # the original error is the one to report
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _read_segment(segment: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(segment.read_bytes().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            # A crash mid-append leaves a torn last line: that append never returned, so
            # its caller did not count the record as stored.
            log.warning("spool %s line %d is torn; skipped", segment.name, number)
    return records


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
