"""Cameras added, changed or removed through the API, kept in the ``camera_records`` table so
that they survive a restart (:mod:`feedtag.runtime.catalog` lays them over the config file).

A record holds a camera's settings as JSON *without its secrets*, and its secrets apart,
each sealed (:mod:`feedtag.store.sealing`): the URL is stored with no password and with
``***`` for every secret query value; ``secrets`` holds the sealed password and the sealed
query values in the order the URL has them. A removed config camera is a record with
``deleted`` set and no settings.

>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> record = CameraRecord("gate", {"id": "gate", "url": "rtsp://cam/s"}, {}, False, False, 1.0)
>>> save_record(engine, record); load_records(engine) == [record]
True
>>> delete_record(engine, "gate"), load_records(engine)
(True, [])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError

from feedtag.config.models import CameraConfig
from feedtag.errors import ConfigError
from feedtag.store.engine import store_error
from feedtag.store.schema import camera_records
from feedtag.urls import MASK, CameraUrl

#: the names of a record's secrets, as error messages and ``secrets`` name them
PASSWORD_SECRET: Final = "password"  # noqa: S105 - a name, not a secret
QUERY_SECRETS: Final = "query"
#: how often :class:`StoredRecords` loads every record, changed or not
FULL_READ_S: Final = 60.0
#: camera ids per query when records are loaded by id (SQLite's limit on bound values)
IDS_PER_QUERY: Final = 500


@dataclass(frozen=True, slots=True)
class CameraRecord:
    """One stored camera change.

    ``settings`` is the camera as config input, secrets left out (None when ``deleted``);
    ``secrets`` maps ``"password"`` to a sealed value and ``"query"`` to ``[key, sealed]``
    pairs; ``changes_config`` says the record was written over a camera of the config file.
    """

    camera_id: str
    settings: dict[str, Any] | None
    secrets: dict[str, Any]
    changes_config: bool
    deleted: bool
    updated_at: float


def load_records(engine: Engine, camera_ids: Collection[str] | None = None) -> list[CameraRecord]:
    """Every stored camera record (or those of ``camera_ids``), ordered by camera id."""
    table = camera_records
    queries = [select(table)]
    if camera_ids is not None:
        wanted = sorted(camera_ids)
        queries = [
            select(table).where(table.c.camera_id.in_(wanted[first : first + IDS_PER_QUERY]))
            for first in range(0, len(wanted), IDS_PER_QUERY)
        ]
    try:
        with engine.connect() as connection:
            rows = [
                row
                for query in queries
                for row in connection.execute(query.order_by(table.c.camera_id)).mappings()
            ]
    except SQLAlchemyError as error:
        raise store_error(error, "reading stored cameras") from None
    records = [
        CameraRecord(
            camera_id=row["camera_id"],
            settings=row["settings"],
            secrets=row["secrets"] or {},
            changes_config=bool(row["changes_config"]),
            deleted=bool(row["deleted"]),
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
    if len(queries) > 1:
        records.sort(key=lambda record: record.camera_id)
    return records


def record_stamps(engine: Engine) -> dict[str, float]:
    """camera id -> ``updated_at`` of every stored record: which records changed, read
    without their settings."""
    table = camera_records
    query = select(table.c.camera_id, table.c.updated_at)
    try:
        with engine.connect() as connection:
            return {camera_id: at for camera_id, at in connection.execute(query)}
    except SQLAlchemyError as error:
        raise store_error(error, "reading stored cameras") from None


class StoredRecords:
    """The stored records, read again by a caller that reads them often (the Ray
    coordinator, every round), loading in full only the records that changed.

    Each :meth:`read` asks for every record's ``updated_at`` (:func:`record_stamps`) and
    loads only the records whose stamp differs from the one held, or that are new; a record
    gone from the table is gone from the answer. The stamp is compared for equality, never
    used as a cursor (``updated_at > last read`` would miss a write stamped by a machine
    whose clock is behind, or committed after a later-stamped one, and a deleted record
    leaves no row to find), so clocks that differ between the machines that write records
    do not matter: every write (:func:`save_record`) stores a new row stamped with its
    writer's ``time.time()``, and two writes of one camera with the very same stamp would
    need the same microsecond. A record changed without a new stamp (edited by hand in the database)
    is still seen: every ``full_read_s`` the read loads every record.

    >>> from feedtag.store.engine import create_store_engine
    >>> from feedtag.store.migrations import upgrade
    >>> engine = create_store_engine("sqlite://"); upgrade(engine)
    >>> save_record(engine, CameraRecord("gate", {"id": "gate", "url": "rtsp://c/s"}, {},
    ...                                  False, False, 1.0))
    >>> stored = StoredRecords(engine); [r.camera_id for r in stored.read()], stored.loaded
    (['gate'], 1)
    >>> [r.camera_id for r in stored.read()], stored.loaded  # unchanged: not loaded again
    (['gate'], 1)
    """

    def __init__(
        self,
        engine: Engine,
        full_read_s: float = FULL_READ_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._full_read_s = full_read_s
        self._clock = clock
        self._records: dict[str, CameraRecord] = {}
        self._full_read_at: float | None = None
        #: how many records were loaded in full so far
        self.loaded = 0

    def read(self) -> list[CameraRecord]:
        """Every stored record, ordered by camera id (:class:`StoreError` when the store
        cannot be read; then what is held stays as it was)."""
        now = self._clock()
        if self._full_read_at is None or now - self._full_read_at >= self._full_read_s:
            records = load_records(self._engine)
            self._full_read_at = now
            self.loaded += len(records)
        else:
            records = self._read_changed()
        self._records = {record.camera_id: record for record in records}
        return records

    def _read_changed(self) -> list[CameraRecord]:
        stamps = record_stamps(self._engine)
        held = self._records
        changed = {c for c, at in stamps.items() if c not in held or held[c].updated_at != at}
        fresh = {r.camera_id: r for r in load_records(self._engine, changed)} if changed else {}
        self.loaded += len(fresh)
        # a changed record that did not load was deleted between the two reads: it is gone
        return [
            fresh[camera_id] if camera_id in changed else held[camera_id]
            for camera_id in sorted(stamps)
            if camera_id not in changed or camera_id in fresh
        ]


def save_record(engine: Engine, record: CameraRecord) -> None:
    """Write ``record`` in place of any record of its camera (one transaction)."""
    row = dataclasses.asdict(record)
    try:
        with engine.begin() as connection:
            table = camera_records
            connection.execute(delete(table).where(table.c.camera_id == record.camera_id))
            connection.execute(table.insert().values(**row))
    except SQLAlchemyError as error:
        raise store_error(error, f"storing camera {record.camera_id}") from None


def delete_record(engine: Engine, camera_id: str) -> bool:
    """Forget the record of ``camera_id``; False when there was none."""
    table = camera_records
    try:
        with engine.begin() as connection:
            result = connection.execute(delete(table).where(table.c.camera_id == camera_id))
    except SQLAlchemyError as error:
        raise store_error(error, f"removing stored camera {camera_id}") from None
    return result.rowcount > 0


# -- cameras to records and back ---------------------------------------------------------


def camera_secrets(camera: CameraConfig) -> dict[str, Any]:
    """The secrets of ``camera``'s URL as they are held (``"password"``: str or None,
    ``"query"``: ``[key, value]`` pairs of the secret query values, in URL order)."""
    url = camera.url
    return {
        PASSWORD_SECRET: None if url.password is None else url.password.get_secret_value(),
        QUERY_SECRETS: [
            [key, value.get_secret_value()]
            for key, value in url.query
            if isinstance(value, SecretStr)
        ],
    }


def camera_settings(camera: CameraConfig) -> dict[str, Any]:
    """``camera`` as config input without its secrets: the URL has no password and ``***``
    for secret query values (both are in :func:`camera_secrets`)."""
    data = camera.model_dump(mode="json", exclude_none=True, exclude={"username", "password"})
    url = camera.url
    if url.file_path is not None:
        data["url"] = str(url.file_path)
        return data
    bare = dataclasses.replace(
        url,
        password=None,
        query=tuple((k, MASK if isinstance(v, SecretStr) else v) for k, v in url.query),
    )
    data["url"] = bare.render()
    return data


def joined_camera(
    settings: dict[str, Any], secrets: dict[str, Any], media_root: Path | None
) -> CameraConfig:
    """The camera of ``settings`` with ``secrets`` (values as they are to be held) put back:
    the inverse of :func:`camera_settings` and :func:`camera_secrets`.

    Raises :class:`ConfigError` naming the field when the settings are no valid camera.
    """
    try:
        camera = CameraConfig.model_validate(settings, context={"media_root": media_root})
    except ValidationError as error:
        problems = [
            (".".join(str(part) for part in item["loc"]), item["msg"].removeprefix("Value error, "))
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise ConfigError(problems, "stored camera") from None
    password = secrets.get(PASSWORD_SECRET)
    query_values = iter(value for _, value in secrets.get(QUERY_SECRETS, []))
    query: list[tuple[str, SecretStr | str]] = []
    for key, value in camera.url.query:
        if not isinstance(value, SecretStr):
            query.append((key, value))
            continue
        held = next(query_values, None)
        if held is None:
            raise ConfigError([("url", f"no stored value for query {key!r}")], "stored camera")
        query.append((key, SecretStr(held)))
    url: CameraUrl = dataclasses.replace(
        camera.url,
        password=None if password is None else SecretStr(password),
        query=tuple(query),
    )
    if url.password is not None and url.username is None:
        raise ConfigError([("password", "a password needs a username")], "stored camera")
    return camera.model_copy(update={"url": url, "username": None, "password": None})
