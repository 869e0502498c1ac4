"""Writing files so that a reader sees the old file or the new one, never half of one.

Snapshots and thumbnails are read by the API while the pipeline renews them; models and
their manifests are read by every process that starts. Each is written to a temporary file
beside its target and renamed over it (a rename within one folder is atomic on POSIX).

>>> import tempfile
>>> target = Path(tempfile.mkdtemp()) / "a.txt"
>>> write_atomic(target, b"one"); write_atomic(target, b"two", durable=True)
>>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
(b'two', ['a.txt'])
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_beside(target: Path) -> Path:
    """A new, empty, hidden temporary file in ``target``'s folder (made if missing), to be
    renamed over ``target`` once written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(handle)
    return Path(name)


def write_atomic(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``target`` with ``data`` atomically. ``durable`` also flushes the data to disk
    before the rename, for files that must survive a power cut once written (models and
    their manifests); media renewed every few seconds does not need the fsync."""
    partial = temporary_beside(target)
    try:
        with partial.open("wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
