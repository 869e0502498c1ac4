"""``feedtag detect`` and ``feedtag probe`` on a local file that cannot be read: one line
naming the path as given, exit 2, at once.

The incident: ``feedtag detect missing.mp4`` resolved the relative path twice (the media
root, then the path again under it) and retried the missing file like an offline camera,
forever.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from feedtag.config import validate_config
from feedtag.errors import SourceError
from feedtag.runtime.detect import frames_of

#: generous for a loaded machine; before the fix these runs never ended
DEADLINE_S = 15.0
#: Bytes no FFmpeg demuxer takes: fixed, because fresh random bytes now and then probe as an
#: audio format ("the source has no video stream" instead, seen once in CI).
GARBAGE = random.Random(0).randbytes(4096)


def prepare(folder: Path) -> None:
    (folder / "clips").mkdir()
    (folder / "garbage.mp4").write_bytes(GARBAGE)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "locked.mp4").write_bytes(b"\x00" * 64)
    (folder / "locked.mp4").chmod(0)
    os.mkfifo(folder / "pipe.mp4")


CASES = [
    # (command, the path as typed, the message after "error: <path>: ")
    ("detect", "missing.mp4", "No such file or directory"),
    ("detect", "clips/missing.mp4", "No such file or directory"),
    ("detect", "clips", "Is a directory"),
    ("detect", "pipe.mp4", "Not a regular file"),
    ("detect", "garbage.mp4", "open failed: not a stream FFmpeg can read"),
    ("detect", "empty.mp4", "open failed: "),
    ("detect", "locked.mp4", "Permission denied"),
    ("probe", "missing.mp4", "No such file or directory"),
    ("probe", "clips", "Is a directory"),
]


@pytest.mark.parametrize(("command", "path", "message"), CASES)
def test_an_unreadable_input_file_fails_at_once(
    tmp_path: Path, command: str, path: str, message: str
) -> None:
    if path == "locked.mp4" and os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    prepare(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "feedtag.cli", command, path],
        cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert time.monotonic() - started < DEADLINE_S
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {path}: {message}"), line
    assert str(tmp_path) not in line  # the path as given, not as resolved
    assert done.stdout == ""


def test_a_file_that_fails_in_ingest_ends_the_frames(tmp_path: Path) -> None:
    """The check before opening cannot see everything (the file may change after it):
    a file source that fails in ingest ends :func:`frames_of` instead of being retried."""
    (tmp_path / "garbage.mp4").write_bytes(GARBAGE)
    config = validate_config(
        {"media_root": str(tmp_path),
         "cameras": [{"id": "a", "url": "garbage.mp4", "realtime": False}]},
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        list(frames_of(config.cameras[0], config, threading.Event()))
    assert time.monotonic() - started < 5
    assert info.value.message == "open failed: not a stream FFmpeg can read"
    assert info.value.url == str(tmp_path / "garbage.mp4")
