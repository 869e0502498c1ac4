"""Media files: anonymized snapshots per event, the latest anonymized thumbnail per camera,
and the place event clips go. Every path is built from validated ids and resolved inside the
media root, so nothing outside it can be written or served.

Layout under the root::

    thumbnails/<camera_id>.jpg                    latest frame, people covered
    snapshots/<camera_id>/<YYYY-MM-DD>/<event_id>.jpg
    clips/<camera_id>/<YYYY-MM-DD>/<event_id>.mp4 raw media (people not covered)
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from feedtag.core import Detections
from feedtag.errors import StoreError
from feedtag.files import write_atomic
from feedtag.vision.anonymize import Anonymized

log = logging.getLogger(__name__)

JPEG_QUALITY: Final = 82
THUMBNAIL_WIDTH: Final = 480
#: a camera's thumbnail is renewed while it was asked for within this many seconds
THUMBNAIL_DEMAND_S: Final = 60.0
#: the file the Ray engine's driver writes in the media root, for shards to find
MEDIA_MARK: Final = ".feedtag-media-mark"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
Kind = Literal["snapshots", "clips"]


class MediaStore:
    """Writes and resolves media files under ``root``.

    Images are written only as :class:`~feedtag.vision.anonymize.Anonymized` values, which
    only the anonymizer makes: a frame whose people were not covered cannot be written.

    >>> import tempfile, numpy as np
    >>> from feedtag.vision.anonymize import Anonymizer
    >>> media = MediaStore(Path(tempfile.mkdtemp()))
    >>> black = Anonymizer(None).anonymize(np.zeros((90, 160, 3), np.uint8))
    >>> path = media.write_thumbnail("door", black)
    >>> path.name, media.resolve("thumbnails/door.jpg") == path
    ('door.jpg', True)
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        #: called with every image written and its path (the anonymization benchmark
        #: scores what was written); an observer must not block, one that raises is logged
        self.observers: list[Callable[[Path, Anonymized], None]] = []
        self._thumbnail_requests: dict[str, float] = {}

    def want_thumbnail(self, camera_id: str, now: float | None = None) -> None:
        """Someone is looking at ``camera_id``'s thumbnail: keep it fresh for a while.

        Thumbnails cost a person check each, so they are renewed only for cameras whose
        thumbnail was asked for in the last ``THUMBNAIL_DEMAND_S``."""
        self._thumbnail_requests[camera_id] = time.monotonic() if now is None else now

    def thumbnail_wanted(self, camera_id: str, now: float | None = None) -> bool:
        asked = self._thumbnail_requests.get(camera_id)
        now = time.monotonic() if now is None else now
        return asked is not None and now - asked <= THUMBNAIL_DEMAND_S

    def write_thumbnail(self, camera_id: str, image: Anonymized) -> Path:
        """Replace the camera's latest thumbnail (people covered, scaled to 480 wide)."""
        target = self._path("thumbnails", f"{_checked(camera_id)}.jpg")
        write_atomic(target, _jpeg(_checked_image(image), width=THUMBNAIL_WIDTH))
        self._written(target, image)
        return target

    def write_snapshot(
        self,
        camera_id: str,
        event_id: str,
        *,
        at: float,
        image: Anonymized,
        detections: Detections,
        highlight: Sequence[int] = (),
    ) -> Path:
        """The snapshot of one event: people covered, the boxes of the tracks in
        ``highlight`` (from ``detections``) outlined."""
        picture = Image.fromarray(_checked_image(image))
        draw = ImageDraw.Draw(picture)
        ids = detections.tracker_id
        for index, box in enumerate(detections.xyxy):
            if ids is not None and int(ids[index]) in highlight:
                draw.rectangle(tuple(float(v) for v in box), outline=(255, 200, 0), width=3)
        target = self.event_path("snapshots", camera_id, event_id, at)
        write_atomic(target, _encode(picture))
        self._written(target, image)
        return target

    def _written(self, path: Path, image: Anonymized) -> None:
        for observer in self.observers:
            try:
                observer(path, image)
            except Exception:
                log.exception("a media observer failed")

    def mark(self) -> str:
        """Write a new random mark in the root and return it: a process that finds the same
        mark in its own media root (:meth:`has_mark`) writes where this one serves from. The
        Ray engine's driver marks, and each shard checks that its media root is the shared
        storage the API serves (docs/cluster.md)."""
        token = secrets.token_hex(16)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / MEDIA_MARK, token.encode())
        return token

    def has_mark(self, token: str) -> bool:
        """Whether the root holds ``token`` as written by :meth:`mark`."""
        try:
            found = (self.root / MEDIA_MARK).read_text().strip()
        except OSError:
            return False
        return secrets.compare_digest(found, token)

    def event_path(self, kind: Kind, camera_id: str, event_id: str, at: float) -> Path:
        """Where an event's snapshot or clip lives (the folder is the event's UTC day)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(at))
        suffix = ".jpg" if kind == "snapshots" else ".mp4"
        return self._path(kind, _checked(camera_id), day, f"{_checked(event_id)}{suffix}")

    def resolve(self, relative: str) -> Path:
        """A stored file by its path relative to the root; ``StoreError`` for anything that
        would leave the root (``..``, absolute paths, symlinks pointing out) or is missing."""
        candidate = Path(os.path.realpath(self.root / relative))
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            raise StoreError("no such media file")
        return candidate

    def relative(self, path: Path) -> str:
        return str(Path(os.path.realpath(path)).relative_to(self.root))

    def _path(self, *parts: str) -> Path:
        path = Path(os.path.realpath(self.root.joinpath(*parts)))
        if not path.is_relative_to(self.root):
            raise StoreError("media path outside the media root")
        return path


def _checked_image(image: Anonymized) -> npt.NDArray[np.uint8]:
    if not isinstance(image, Anonymized):
        raise StoreError(f"only anonymized images are written, got {type(image).__name__}")
    return image.image


def _checked(identifier: str) -> str:
    if not _SAFE_ID.fullmatch(identifier):
        raise StoreError(f"not a safe media id: {identifier[:40]!r}")
    return identifier


def _jpeg(image: npt.NDArray[np.uint8], width: int | None = None) -> bytes:
    picture = Image.fromarray(image)
    if width is not None and picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.BILINEAR)
    return _encode(picture)


def _encode(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
