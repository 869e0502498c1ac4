"""What the ``feedtag`` commands share: exit codes, argument types, the store, tables."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import Any, Final

from feedtag.config import load_config
from feedtag.errors import ConfigError
from feedtag.urls import scheme_of, url_text_problem

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


def progress(step: str, done: int, total: int) -> None:
    print(
        f"\r  {step}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True
    )


def positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value

    return parse


def as_given(path: str) -> str:
    """A path as the operator typed it; quoted when it holds what a terminal would act on."""
    return path if path.isprintable() else repr(path)


def names_a_file(target: str) -> bool:
    """Whether ``target`` is a local path to check and resolve here; a URL, or text that
    cannot be one ("-i x"), is left to :class:`~feedtag.urls.CameraUrl` to judge."""
    return scheme_of(target) is None and url_text_problem(target) is None


def file_problem(path: str) -> str | None:
    """Why the local file ``path`` cannot be read, or None. Checked before anything is
    opened: a missing file used to be retried like an offline camera, forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or "cannot be read"
    if stat.S_ISDIR(mode):
        return "Is a directory"
    if not stat.S_ISREG(mode):
        return "Not a regular file"
    if not os.access(path, os.R_OK):
        return "Permission denied"
    return None


def store_engine(args: argparse.Namespace) -> Any:
    """The store ``--config`` names (else the default one), migrated to the current schema."""
    from feedtag.config.models import StoreConfig
    from feedtag.runtime.database import open_database

    settings = StoreConfig() if args.config is None else load_config(args.config).store
    return open_database(settings)


def times(args: argparse.Namespace) -> tuple[float | None, float | None]:
    from feedtag.runtime.queries import parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise ConfigError([("--since/--until", str(exc))], "arguments") from None
    return since, until


def print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print("  ".join(f"{c:<20}" for c in columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float) and column.endswith(("_at", "start")):
                value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
            cells.append(f"{'-' if value is None else str(value)[:20]:<20}")
        print("  ".join(cells))
