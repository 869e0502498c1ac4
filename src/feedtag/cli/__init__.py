"""The ``feedtag`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, URL, arguments).

One module per command group: :mod:`~feedtag.cli.run` (``run``, ``demo``),
:mod:`~feedtag.cli.sources` (``probe``, ``models``, ``detect``), :mod:`~feedtag.cli.events`,
:mod:`~feedtag.cli.admin` (``tokens``, ``audit``), :mod:`~feedtag.cli.bench`; what they share
is in :mod:`~feedtag.cli.common`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from feedtag import __version__
from feedtag.cli import admin, bench, events, run, sources
from feedtag.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from feedtag.config import config_json_schema, load_config
from feedtag.errors import ConfigError, FeedtagError
from feedtag.store.links import links_off_reason
from feedtag.urls import RedactingFilter, redact

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "setup_logging"]


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Alembic announces every plugin and migration step at INFO: noise in a status screen.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    enabled = sum(1 for camera in config.cameras if camera.enabled)
    print(f"{args.config}: OK ({len(config.cameras)} camera(s), {enabled} enabled)")
    alerting = bool(config.alerts.webhooks) or config.alerts.mqtt is not None
    links_off = links_off_reason(config, os.environ) if alerting else None
    if links_off is not None:
        print(f"note: {links_off}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(config_json_schema())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedtag", description="Many live camera feeds in, searchable tags and events out."
    )
    parser.add_argument("--version", action="version", version=f"feedtag {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check)

    schema = commands.add_parser("schema", help="print the config file's JSON schema")
    schema.set_defaults(func=cmd_schema)

    run.add_run_commands(commands)
    sources.add_probe_command(commands)
    sources.add_vision_commands(commands)
    events.add_event_commands(commands)
    admin.add_access_commands(commands)
    bench.add_bench_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FeedtagError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
