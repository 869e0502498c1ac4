"""The cameras a node runs: the config file's, with the changes stored through the API on top.

The config file is the base. A stored record (:mod:`feedtag.store.cameras`) replaces the
file's camera of the same id, adds a camera the file does not have, or (``deleted``)
removes a file camera. Each camera says where it is defined (:class:`DefinedIn`):

==========================================  =============  ================================
config file                 stored record   defined_in     runs
==========================================  =============  ================================
camera X                    none            ``config``     the file's X
camera X                    X, changed      ``config+api`` the stored X
camera X                    X, removed      (gone)         nothing
none                        Y, added        ``api``        the stored Y
none (X was removed later)  X, changed      ``api``        the stored X, now on its own
none                        X, removed      (gone)         nothing
==========================================  =============  ================================

A camera's secrets are held as written: ``${FEEDTAG_CAMERA_*}`` references stay references
until the camera is started (:func:`resolved`). A stored camera whose secret cannot be
resolved (variable not set, key missing or changed, file camera gone) is listed but not run;
its ``problem`` says why, never the secret. Where a camera may connect is the node's rule
(:meth:`feedtag.runtime.node.NodeEngine._network`): only a URL exactly as the file wrote it
trusts its own host, so a camera stored through the API trusts none.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine

from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.errors import ConfigError
from feedtag.store.cameras import (
    PASSWORD_SECRET,
    QUERY_SECRETS,
    CameraRecord,
    camera_secrets,
    camera_settings,
    delete_record,
    joined_camera,
    load_records,
    save_record,
)
from feedtag.store.sealing import CONFIG_MARKER, FERNET_PREFIX, SecretBox, reference_name

log = logging.getLogger(__name__)

#: the field a secret is reported under: the password, or the URL for its query values
_FIELDS: Final = {PASSWORD_SECRET: "password", QUERY_SECRETS: "url"}


class DefinedIn(enum.StrEnum):
    """Where a camera's settings come from."""

    CONFIG = "config"  # the config file only
    API = "api"  # added through the API (or its config camera is gone from the file)
    CONFIG_API = "config+api"  # a config file camera, changed through the API


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One camera: as held (secrets as written), where it is defined, and as it runs
    (secrets resolved), or why it cannot run."""

    camera: CameraConfig
    defined_in: DefinedIn
    runnable: CameraConfig | None
    problem: str | None = None
    #: when the entry was made (Unix seconds): since when a camera with a problem is offline
    since: float = dataclasses.field(default_factory=time.time)


def problem_text(error: ConfigError) -> str:
    """``field: why`` for each problem of ``error``, on one line (no values in it)."""
    return "; ".join(f"{path}: {message}" if path else message for path, message in error.problems)


def _secret_pairs(camera: CameraConfig | None) -> list[tuple[str, str, str]]:
    """``(kind, key, value)`` for each secret of ``camera``, in a fixed order."""
    if camera is None:
        return []
    secrets = camera_secrets(camera)
    pairs = [(QUERY_SECRETS, key, value) for key, value in secrets[QUERY_SECRETS]]
    if secrets[PASSWORD_SECRET] is not None:
        pairs.insert(0, (PASSWORD_SECRET, "", secrets[PASSWORD_SECRET]))
    return pairs


def _twin_value(twin: CameraConfig | None, kind: str, key: str, index: int) -> str | None:
    """The config file twin's value of the ``index``-th secret of this kind and key."""
    same = [value for k, name, value in _secret_pairs(twin) if k == kind and name == key]
    return same[index] if index < len(same) else None


def _map_secrets(camera: CameraConfig, convert: Any) -> dict[str, Any]:
    """``camera``'s secrets with ``convert(kind, key, index, value)`` applied to each."""
    secrets = camera_secrets(camera)
    password = secrets[PASSWORD_SECRET]
    seen: dict[str, int] = {}
    query = []
    for key, value in secrets[QUERY_SECRETS]:
        index = seen[key] = seen.get(key, -1) + 1
        query.append([key, convert(QUERY_SECRETS, key, index, value)])
    return {
        PASSWORD_SECRET: None if password is None else convert(PASSWORD_SECRET, "", 0, password),
        QUERY_SECRETS: query,
    }


def resolved(
    camera: CameraConfig,
    twin: CameraConfig | None,
    box: SecretBox,
    environ: Mapping[str, str],
    media_root: Path | None,
) -> CameraConfig:
    """``camera`` with every secret as the camera needs it: references read from
    ``environ``, encrypted values decrypted, ``config:`` taken from the file's ``twin``.
    Raises :class:`ConfigError` naming the field when one cannot be."""

    def value(kind: str, key: str, index: int, held: str) -> str:
        field = _FIELDS[kind]
        if held == CONFIG_MARKER:
            found = _twin_value(twin, kind, key, index)
            if found is None:
                problem = "taken from the config file, which no longer has it for this camera"
                raise ConfigError([(field, problem)], "camera")
            return found
        if reference_name(held) is not None or held.startswith(FERNET_PREFIX):
            return box.open(held, field, environ)
        return held

    secrets = _map_secrets(camera, value)
    return joined_camera(camera_settings(camera), secrets, media_root)


def sealed_secrets(
    camera: CameraConfig, twin: CameraConfig | None, box: SecretBox
) -> dict[str, Any]:
    """``camera``'s secrets as they are stored: ``config:`` where the file's twin has the
    same value, else sealed by ``box`` (:class:`ConfigError` when one cannot be)."""

    def seal(kind: str, key: str, index: int, held: str) -> str:
        if _twin_value(twin, kind, key, index) == held:
            return CONFIG_MARKER
        return box.seal(held, _FIELDS[kind])

    return _map_secrets(camera, seal)


def _held(
    settings: dict[str, Any],
    secrets: dict[str, Any],
    twin: CameraConfig | None,
    box: SecretBox,
    media_root: Path | None,
) -> CameraConfig:
    """A stored camera as held: encrypted values decrypted and ``config:`` filled in where
    that works; references, and what cannot be opened, kept as stored."""
    environ: dict[str, str] = {}  # references are read only when the camera starts

    def held(kind: str, key: str, index: int, sealed: str) -> str:
        if sealed == CONFIG_MARKER:
            return _twin_value(twin, kind, key, index) or sealed
        if sealed.startswith(FERNET_PREFIX):
            try:
                return box.open(sealed, _FIELDS[kind], environ)
            except ConfigError:
                return sealed
        return sealed

    stored = joined_camera(settings, secrets, media_root)
    return joined_camera(settings, _map_secrets(stored, held), media_root)


def merge_cameras(
    file_cameras: Iterable[CameraConfig],
    records: Iterable[CameraRecord],
    *,
    box: SecretBox,
    environ: Mapping[str, str],
    media_root: Path | None,
) -> list[CatalogEntry]:
    """The cameras to run: ``file_cameras`` in file order with ``records`` laid over them,
    then the cameras only stored, by id (the table of the module docstring)."""
    merger = CameraMerger(box=box, environ=environ, media_root=media_root)
    return merger.merge(file_cameras, records)


def _references(record: CameraRecord) -> tuple[str, ...]:
    """The environment variables ``record``'s secrets refer to (``${FEEDTAG_CAMERA_*}``)."""
    password = record.secrets.get(PASSWORD_SECRET)
    values = [password, *(value for _, value in record.secrets.get(QUERY_SECRETS, []))]
    names = [reference_name(value) for value in values if isinstance(value, str)]
    return tuple(name for name in names if name is not None)


@dataclass(frozen=True, slots=True)
class _Merged:
    """What a stored camera's entry was made from, and the entry (None: left out)."""

    record: CameraRecord
    twin: CameraConfig | None
    environment: tuple[str | None, ...]
    entry: CatalogEntry | None


class CameraMerger:
    """:func:`merge_cameras` for a caller that merges again and again (the Ray
    coordinator, every round): a stored camera is validated again only when what its entry
    was made from changed.

    An entry is kept with what made it: the record (compared whole: settings, secrets,
    ``updated_at``), the config file's twin, and the values of the environment variables
    the record's secrets refer to, read from ``environ`` at each merge. Those are all the
    inputs of :func:`_held` and :func:`resolved` besides ``box`` and ``media_root``, which
    are fixed for the merger's life (the key of ``box`` is read once, when it is made, as
    on one machine). So a kept entry is the one a fresh merge would make: a reference whose
    variable is set, changed or unset is resolved again. Records that are gone drop their
    entries. A stored camera left out because its settings are no valid camera is logged
    once, not at every merge.
    """

    def __init__(
        self, *, box: SecretBox, environ: Mapping[str, str], media_root: Path | None
    ) -> None:
        self._box = box
        self._environ = environ
        self._media_root = media_root
        self._kept: dict[str, _Merged] = {}

    def merge(
        self, file_cameras: Iterable[CameraConfig], records: Iterable[CameraRecord]
    ) -> list[CatalogEntry]:
        """The cameras to run (as :func:`merge_cameras` answers)."""
        twins = {camera.id: camera for camera in file_cameras}
        stored = {record.camera_id: record for record in records}
        kept, self._kept = self._kept, {}
        entries = []
        for camera_id in [*twins, *sorted(stored.keys() - twins.keys())]:
            twin, record = twins.get(camera_id), stored.get(camera_id)
            if record is None:
                entries.append(CatalogEntry(twins[camera_id], DefinedIn.CONFIG, twins[camera_id]))
                continue
            if record.deleted or record.settings is None:
                continue
            environment = tuple(self._environ.get(name) for name in _references(record))
            merged = kept.get(camera_id)
            if (
                merged is None
                or (merged.record is not record and merged.record != record)
                or merged.environment != environment
                or (merged.twin is not twin and merged.twin != twin)
            ):
                entry = self._entry(camera_id, record.settings, record.secrets, twin)
                merged = _Merged(record, twin, environment, entry)
            self._kept[camera_id] = merged
            if merged.entry is not None:
                entries.append(merged.entry)
        return entries

    def _entry(
        self,
        camera_id: str,
        settings: dict[str, Any],
        secrets: dict[str, Any],
        twin: CameraConfig | None,
    ) -> CatalogEntry | None:
        """A stored camera's entry, validated; None when it is left out."""
        defined_in = DefinedIn.CONFIG_API if twin is not None else DefinedIn.API
        try:
            camera = _held(settings, secrets, twin, self._box, self._media_root)
        except ConfigError as error:
            log.error("stored camera %s is left out: %s", camera_id, problem_text(error))
            return None
        try:
            runnable = resolved(camera, twin, self._box, self._environ, self._media_root)
        except ConfigError as error:
            return CatalogEntry(camera, defined_in, None, problem_text(error))
        return CatalogEntry(camera, defined_in, runnable)


def _same(a: CameraConfig, b: CameraConfig) -> bool:
    return camera_settings(a) == camera_settings(b) and camera_secrets(a) == camera_secrets(b)


class CameraCatalog:
    """The cameras of one node and their stored changes (callers serialize the changes).

    ``store`` None keeps changes in memory only; ``read_stored`` False starts from the config
    file alone (the store could not be read) and still stores changes.
    """

    def __init__(
        self,
        config: FeedtagConfig,
        store: Engine | None,
        environ: Mapping[str, str] | None = None,
        *,
        read_stored: bool = True,
    ) -> None:
        self._file = {camera.id: camera for camera in config.cameras}
        self._media_root = config.media_root
        self._store = store
        self._environ = os.environ if environ is None else environ
        self._box = SecretBox.from_environ(self._environ)
        records = load_records(store) if store is not None and read_stored else []
        entries = merge_cameras(
            config.cameras, records, box=self._box, environ=self._environ,
            media_root=self._media_root,
        )  # fmt: skip
        self._entries = {entry.camera.id: entry for entry in entries}
        for entry in entries:
            if entry.problem is not None:
                log.warning("camera %s starts offline: %s", entry.camera.id, entry.problem)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())

    def entry(self, camera_id: str) -> CatalogEntry | None:
        return self._entries.get(camera_id)

    def cameras(self) -> list[CameraConfig]:
        """Every camera as held (secrets as written), running or not."""
        return [entry.camera for entry in self._entries.values()]

    def runnable(self) -> list[CameraConfig]:
        """The cameras the node runs at start: every one whose secrets resolve."""
        return [e.runnable for e in self._entries.values() if e.runnable is not None]

    def put(self, camera: CameraConfig) -> CameraConfig:
        """Store ``camera`` (added or changed) and return it as it runs. Raises
        :class:`ConfigError` naming the field when a secret cannot be resolved or stored,
        :class:`~feedtag.errors.StoreError` when the store cannot be written; then nothing
        has changed."""
        twin = self._file.get(camera.id)
        runnable = resolved(camera, twin, self._box, self._environ, self._media_root)
        previous = self._entries.get(camera.id)
        if previous is not None and previous.problem is None and _same(previous.camera, camera):
            return runnable  # a restart: nothing to store
        if twin is not None and _same(twin, camera):
            defined_in = DefinedIn.CONFIG
            if self._store is not None:
                delete_record(self._store, camera.id)
        else:
            defined_in = DefinedIn.API if twin is None else DefinedIn.CONFIG_API
            record = CameraRecord(
                camera.id, camera_settings(camera), sealed_secrets(camera, twin, self._box),
                changes_config=twin is not None, deleted=False, updated_at=time.time(),
            )  # fmt: skip
            if self._store is not None:
                save_record(self._store, record)
        self._entries[camera.id] = CatalogEntry(camera, defined_in, runnable)
        return runnable

    def remove(self, camera_id: str) -> None:
        """Forget a camera for good: a config file camera is marked removed, a camera added
        through the API is deleted."""
        if self._store is not None:
            if camera_id in self._file:
                tombstone = CameraRecord(camera_id, None, {}, True, True, time.time())
                save_record(self._store, tombstone)
            else:
                delete_record(self._store, camera_id)
        self._entries.pop(camera_id, None)
