"""The retention job: events, tag segments and media older than the retention period go.

Privacy by design says data expires (default 30 days). An event is expired when it started
before ``now - retention_s``; a tag segment when it *ended* before that (an open segment is
still being written and stays). Media files are removed before their rows, so a crash in
between leaves a row without a file (harmless; the next run deletes the row), never a file
that no row points to any more.

Removal is path-safe: a ``snapshot`` path is resolved (symlinks included) and removed only
when it lies inside the media root; ``../../etc/passwd``, absolute paths and links that
point out of the root are skipped and counted.

>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> run_retention(engine, media_root=None, now=2e9)
RetentionResult(events=0, segments=0, files=0, unsafe_paths=0)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, delete, select

from feedtag.store.engine import store_error
from feedtag.store.schema import alert_outbox, events, tag_segments

log = logging.getLogger(__name__)

DEFAULT_RETENTION_S: Final = 30 * 24 * 3600.0
#: rows per delete transaction: short transactions keep the writer thread unblocked
DELETE_CHUNK: Final = 1000


@dataclass(frozen=True, slots=True)
class RetentionResult:
    events: int
    segments: int
    files: int
    unsafe_paths: int


def safe_media_path(media_root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``media_root``, or None when it would leave it.

    >>> safe_media_path(Path("/srv/media"), "cam/1.jpg")
    PosixPath('/srv/media/cam/1.jpg')
    >>> safe_media_path(Path("/srv/media"), "../../etc/passwd") is None
    True
    >>> safe_media_path(Path("/srv/media"), "/etc/passwd") is None
    True
    """
    root = media_root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root) and candidate != root else None


def run_retention(
    engine: Engine,
    media_root: str | Path | None,
    retention_s: float = DEFAULT_RETENTION_S,
    now: float | None = None,
) -> RetentionResult:
    """Delete what is older than ``retention_s`` before ``now`` (default: the clock)."""
    if retention_s <= 0:
        raise ValueError(f"expected retention_s > 0, got {retention_s}")
    cutoff = (time.time() if now is None else now) - retention_s
    root = Path(media_root) if media_root is not None else None
    try:
        deleted_events, files, unsafe = _expire_events(engine, root, cutoff)
        with engine.begin() as connection:
            result = connection.execute(
                delete(tag_segments).where(
                    tag_segments.c.ended_at.is_not(None), tag_segments.c.ended_at < cutoff
                )
            )
            segments = result.rowcount
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "retention") from None
    outcome = RetentionResult(deleted_events, segments, files, unsafe)
    log.info("retention before %.0f removed %s", cutoff, outcome)
    return outcome


def _expire_events(engine: Engine, root: Path | None, cutoff: float) -> tuple[int, int, int]:
    deleted = files = unsafe = 0
    while True:
        with engine.connect() as connection:
            chunk = connection.execute(
                select(events.c.event_id, events.c.media_path)
                .where(events.c.started_at < cutoff)
                .limit(DELETE_CHUNK)
            ).all()
        if not chunk:
            return deleted, files, unsafe
        for row in chunk:
            if row.media_path and root is not None:
                for relative in _media_of(row.media_path):
                    removed = _remove_media(root, relative)
                    files += removed is True
                    unsafe += removed is None
        with engine.begin() as connection:
            ids = [row.event_id for row in chunk]
            connection.execute(delete(events).where(events.c.event_id.in_(ids)))
            # An event's alerts go with it, sent or not.
            connection.execute(delete(alert_outbox).where(alert_outbox.c.event_id.in_(ids)))
        deleted += len(chunk)


def _media_of(snapshot: str) -> list[str]:
    """An event's media: its snapshot, and the clip beside it when clips were recorded
    (``snapshots/<camera>/<day>/<id>.jpg`` -> ``clips/<camera>/<day>/<id>.mp4``).

    >>> _media_of("snapshots/door/2026-11-28/abc.jpg")
    ['snapshots/door/2026-11-28/abc.jpg', 'clips/door/2026-11-28/abc.mp4']
    """
    media = [snapshot]
    if snapshot.startswith("snapshots/") and snapshot.endswith(".jpg"):
        media.append("clips/" + snapshot.removeprefix("snapshots/").removesuffix(".jpg") + ".mp4")
    return media


def _remove_media(root: Path, relative: str) -> bool | None:
    """True when a file was removed, False when there was none, None when unsafe."""
    path = safe_media_path(root, relative)
    if path is None:
        log.warning("retention skipped a media path outside the media root: %r", relative)
        return None
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
