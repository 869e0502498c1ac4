"""What the process-level fault tests share: a synthetic camera and detector that make events
at a known pace, ``feedtag run`` as a child process whose status lines are parsed, readers of
the store and the spool, and small filesystems to break.

The camera is a clip of a white square crossing a black frame left to right once a second;
the detector is a tiny ONNX graph that finds the white square (``square_finder`` from the
decoder tests) and calls it a car; every camera has ``lines`` vertical lines with one
``line_cross`` rule each. So each camera makes about ``lines`` events per second of footage,
and only events: no tag segments and no event ends, so the writer's record counters count
events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from sqlalchemy import func, select

from feedtag.store.engine import create_store_engine
from feedtag.store.schema import events

from ..conftest import require_service
from ..vision.test_decoders import CONSTANT_BOX, square_finder

FEEDTAG = [sys.executable, "-m", "feedtag.cli"]
CLASS_NAMES = ["person", "car", "bicycle"]
CLIP_SIZE = (320, 180)
CLIP_FPS = 25
SQUARE_SIDE = 60
#: a sure upper bound of ``feedtag run``'s start (imports, migrations, detector warm-up)
START_TIMEOUT_S = 30.0


# -- footage, detector, config ------------------------------------------------------------


def square_clip(path: Path, seconds: int) -> Path:
    """H.264 like a camera sends it (25 fps, a keyframe every second): a white square
    crossing the frame left to right in each second."""
    width, height = CLIP_SIZE
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=CLIP_FPS,
            options={"preset": "veryfast", "x264-params": "keyint=25:min-keyint=25:bframes=0"},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(seconds * CLIP_FPS):
            image = np.zeros((height, width, 3), np.uint8)
            x = (width - SQUARE_SIDE) * (index % CLIP_FPS) // (CLIP_FPS - 1)
            image[60 : 60 + SQUARE_SIDE, x : x + SQUARE_SIDE] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, CLIP_FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def square_detector(path: Path) -> Path:
    """The square finder, reporting the square as a car and nothing else."""
    return square_finder(
        path, "yolo-decoded", square_class=1, constant_rows=[(CONSTANT_BOX, 0.0, 0, 0.0)]
    )


@dataclass(frozen=True)
class Footage:
    media_root: Path
    model: Path
    loop_clip: str  # 1 s, for looping cameras
    long_clip: str  # LONG_CLIP_S seconds, for cameras that must run out of footage


LONG_CLIP_S = 24


def camera(
    camera_id: str,
    clip: str,
    *,
    lines: int,
    realtime: bool = True,
    loop: bool = True,
    analysis_fps: float = 10,
    name: str = "line",
) -> dict[str, Any]:
    """A camera watching ``lines`` vertical lines between x 0.2 and 0.8."""
    xs = [0.2 + 0.6 * i / max(1, lines - 1) for i in range(lines)]
    return {
        "id": camera_id,
        "url": clip,
        "loop": loop,
        "realtime": realtime,
        "analysis_fps": analysis_fps,
        "analysis_width": CLIP_SIZE[0],
        "analytics": {
            "lost_track_s": 0.5,
            "lines": [
                {"name": f"{name}{i}", "start": [x, 0.0], "end": [x, 1.0]} for i, x in enumerate(xs)
            ],
            "rules": [
                {"kind": "line_cross", "labels": ["car"], "line": f"{name}{i}"}
                for i in range(lines)
            ],
        },
    }


def write_config(
    path: Path,
    footage: Footage,
    cameras: list[dict[str, Any]],
    *,
    data_dir: Path,
    store_url: str | None = None,
    spool_max_mb: int = 256,
) -> Path:
    store: dict[str, Any] = {"data_dir": str(data_dir), "spool_max_mb": spool_max_mb}
    if store_url is not None:
        store["url"] = store_url
    config = {
        "media_root": str(footage.media_root),
        "engine": {"status_interval_s": 0.25},
        "detector": {
            "model": str(footage.model),
            "class_names": CLASS_NAMES,
            "max_wait_s": 0,
            "track_lost_s": 0.5,
        },
        "store": store,
        "api": {"enabled": False},
        "cameras": cameras,
    }
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


# -- feedtag run as a child process ---------------------------------------------------------

_HEADER = re.compile(r"^\d\d:\d\d:\d\d  camera ")
_CAMERA = re.compile(r"^ {10}(\S+)\s+(connecting|online|stalled|offline|stopped)\s")
_STORE = re.compile(
    r"store (reachable|UNREACHABLE \(spooling to disk\)): (\d+) written, (\d+) spooled "
    r"\((\d+) KiB\), (\d+) dropped"
)
_EVENTS = re.compile(r"^ {10}events (\S+): (.+)$")
_WRITER_STOPPED = re.compile(
    r"store writer stopped: (\d+) written, (\d+) spooled, (\d+) replayed, (\d+) failed, "
    r"(\d+) dropped, (\d+) still queued; (\d+) records \((\d+) bytes\) left in the spool"
)


@dataclass(frozen=True)
class StoreLine:
    """One ``store ...`` status line: the writer's counters as ``feedtag run`` prints them
    (``spool_records`` is what waits in the spool now, not a total)."""

    available: bool
    written: int
    spool_records: int
    spool_kib: int
    dropped: int
    at: float  # time.monotonic() when read


@dataclass(frozen=True)
class WriterTotals:
    """The writer's counters after its last flush (its ``store writer stopped`` log line).
    Every record it received was written directly, spooled, or dropped."""

    written: int
    spooled: int
    replayed: int
    failed: int
    dropped: int
    queued: int
    spool_records: int
    spool_bytes: int

    @property
    def received(self) -> int:
        return self.written + self.spooled + self.dropped


class FeedtagRun:
    """``feedtag run CONFIG [ARGS]`` in a child process, its status lines parsed as they come
    and kept; its log (standard error) goes to the file ``log``. ``env`` and ``cwd`` are the
    child's environment and working folder (this process's by default)."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [*FEEDTAG, "run", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self.stores: list[StoreLine] = []
        self.events: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line)
                self._parse(line.rstrip("\n"))

    def _parse(self, line: str) -> None:
        if found := _STORE.search(line):
            numbers = [int(n) for n in found.groups()[1:]]
            self.stores.append(StoreLine(found[1] == "reachable", *numbers, at=time.monotonic()))
        elif found := _EVENTS.match(line):
            self.events[found[1]] = sum(
                int(part.rsplit(" ", 1)[1]) for part in found[2].split(", ")
            )
        elif found := _CAMERA.match(line):
            self.states[found[1]] = found[2]

    @property
    def store(self) -> StoreLine | None:
        with self._lock:
            return self.stores[-1] if self.stores else None

    def produced(self) -> int:
        """Events the rules made and handed to the writer, as last printed."""
        with self._lock:
            return sum(self.events.values())

    def wait_store(
        self, predicate: Callable[[StoreLine], bool], timeout: float, what: str
    ) -> StoreLine:
        """The first store line (printed from now on) for which ``predicate`` holds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            line = self.store
            if line is not None and line.at >= start and predicate(line):
                return line
            self._check_alive(what)
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {self.store}")

    def wait_idle(self, timeout: float) -> int:
        """Wait until every camera stopped (its file ended) and the counts stand still;
        return the events produced."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            with self._lock:
                states = set(self.states.values())
            if states == {"stopped"}:
                before = self.produced()
                time.sleep(0.6)
                if self.produced() == before:
                    return before
            self._check_alive("the cameras to run out of footage")
            time.sleep(0.1)
        pytest.fail(f"cameras still running after {timeout} s: {self.states}")

    def _check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"feedtag run exited ({self.process.returncode}) before {what}:\n"
                f"{self.stderr()[-3000:]}"
            )

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        seconds = time.monotonic() - started
        self._reader.join(5)
        return code, seconds

    def kill(self) -> None:
        """SIGKILL: no handler, no flush, no atexit."""
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)

    def writer_totals(self) -> WriterTotals:
        found = _WRITER_STOPPED.findall(self.stderr())
        assert found, f"no 'store writer stopped' line in the log:\n{self.stderr()[-3000:]}"
        return WriterTotals(*(int(n) for n in found[-1]))

    def stopped_in(self) -> float:
        """How long ``feedtag run`` said its shutdown took (engine, rules, writer flush)."""
        found = re.findall(r"feedtag: stopped in (\d+\.\d) s", self.stderr())
        assert found, "no 'stopped in' line in the log"
        return float(found[-1])

    def api_url(self, timeout: float = START_TIMEOUT_S) -> str:
        """The address of the API and dashboard it serves, as it printed it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.process.poll() is None:
            found = re.search(r"API and dashboard: (http://127\.0\.0\.1:\d+)/", self.output())
            if found:
                return found.group(1)
            time.sleep(0.2)
        raise AssertionError("feedtag run did not print the API address:\n" + self.output())

    def output(self) -> str:
        """All it printed so far: its standard output, then its log."""
        with self._lock:
            printed = "".join(self.lines)
        return printed + self.stderr()

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def feedtag_run(config: Path, log: Path, **options: Any) -> Iterator[FeedtagRun]:
    """A :class:`FeedtagRun` (``options`` are its keyword arguments), killed at the end if
    it still runs."""
    run = FeedtagRun(config, log, **options)
    try:
        yield run
    finally:
        run.close()


# -- the store and the spool, as a reader sees them ------------------------------------------


def stored_ids(url: str) -> list[str]:
    """Every stored event id (a list: a duplicate would show)."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(select(events.c.event_id))]
    finally:
        engine.dispose()


def count_of(url: str, ids: set[str]) -> int:
    """How many stored rows have one of ``ids``."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(events).where(events.c.event_id.in_(ids))
            return int(connection.execute(query).scalar() or 0)
    finally:
        engine.dispose()


def spooled_ids(folder: Path) -> list[str]:
    """Event ids of the records in the spool's segment files (a torn last line, from a kill
    mid-append, is skipped: that append never returned, so nothing counted it)."""
    ids = []
    for segment in sorted(folder.glob("spool-*.jsonl")):
        for line in segment.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record["t"] == "e":
                    ids.append(record["r"]["event_id"])
    return ids


def spool_bytes(folder: Path) -> int:
    return sum(segment.stat().st_size for segment in folder.glob("spool-*.jsonl"))


class SqliteWriteLock:
    """Another connection holding SQLite's write lock (``BEGIN EXCLUSIVE``), as a backup
    tool or a stuck process would: the store's writes run into its busy timeout."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()


# -- small filesystems -------------------------------------------------------------------------


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def require_mounting() -> None:
    """Mounting needs root: skip without it locally, fail under CI=true."""
    usable = os.geteuid() == 0 and shutil.which("mount") is not None
    require_service(usable, "mounting a small filesystem needs root (and mount(8))")


class Tmpfs:
    """A tmpfs of ``size_kib`` mounted on ``folder``."""

    def __init__(self, folder: Path, size_kib: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        try:
            _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder))
        except subprocess.CalledProcessError as error:
            require_service(False, f"cannot mount a tmpfs: {error.stderr.decode().strip()}")
        # The filler exists (empty) from the start, so filling never has to create a file
        # on a disk that may be nearly full by then.
        self.filler = folder / "filler"
        self.filler.touch()

    def fill(self, leave_bytes: int = 0) -> Path:
        """Take all free space but ``leave_bytes`` with the filler file (another program's)."""
        free = shutil.disk_usage(self.folder).free - leave_bytes
        try:
            # unbuffered: a write the disk refuses fails inside the suppress below, never
            # later in close()'s flush (the store under test takes space meanwhile)
            file = self.filler.open("r+b", buffering=0)
        except OSError as error:
            raise AssertionError(f"cannot open the filler: {error}; {self.usage()}") from error
        with file, contextlib.suppress(OSError):
            while free > 0:
                free -= file.write(b"\0" * min(free, 65536))
        return self.filler

    def usage(self) -> str:
        """What takes this filesystem's space, largest first, for a failure's message."""
        total = shutil.disk_usage(self.folder)
        sizes = sorted(
            ((path.stat().st_size, path) for path in self.folder.rglob("*") if path.is_file()),
            reverse=True,
        )
        largest = ", ".join(f"{path.relative_to(self.folder)} {size} B" for size, path in sizes[:5])
        return f"used {total.used} of {total.total} B; {len(sizes)} files; largest: {largest}"

    def resize(self, size_kib: int) -> None:
        _run("mount", "-o", f"remount,size={size_kib}k", str(self.folder))

    def unmount(self) -> None:
        _run("umount", "-l", str(self.folder))


class Ext4Image:
    """A small ext4 filesystem in a file, mounted through a loop device with
    ``errors=remount-ro``: :meth:`fail` makes the kernel turn it read-only under its users,
    as it does on a real disk error; :meth:`repair` is what an administrator does then
    (unmount, ``e2fsck``, mount again), possible only once nothing holds it open."""

    def __init__(self, image: Path, folder: Path, size_mib: int = 16) -> None:
        self.image, self.folder = image, folder
        folder.mkdir(parents=True, exist_ok=True)
        try:
            _run("truncate", "-s", f"{size_mib}M", str(image))
            _run("mkfs.ext4", "-q", "-F", str(image))
            self._mount()
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            detail = getattr(error, "stderr", b"") or str(error).encode()
            require_service(False, f"cannot mount an ext4 image: {detail.decode().strip()}")

    def _mount(self) -> None:
        _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.folder))

    def device(self) -> str:
        for line in Path("/proc/mounts").read_text().splitlines():
            source, target = line.split()[:2]
            if target == str(self.folder):
                return Path(source).name
        raise AssertionError(f"{self.folder} is not mounted")

    def fail(self) -> None:
        Path(f"/sys/fs/ext4/{self.device()}/trigger_fs_error").write_text("fault test\n")

    def read_only(self) -> bool:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if fields[1] == str(self.folder):
                options = fields[3].split(",")
                return "ro" in options or "emergency_ro" in options
        return False

    def repair(self) -> None:
        _run("umount", str(self.folder))
        # exit status 1 means "errors corrected": expected after a triggered error
        subprocess.run(
            ["e2fsck", "-fy", str(self.image)], capture_output=True, timeout=60, check=False
        )
        self._mount()

    def unmount(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run("umount", "-l", str(self.folder))
