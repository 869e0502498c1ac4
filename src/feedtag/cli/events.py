"""``feedtag events``: search events and tags, count events, from the store."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from feedtag.cli.common import EXIT_OK, positive, print_rows, store_engine, times
from feedtag.core import EventKind
from feedtag.errors import ConfigError


def cmd_events_search(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import events_page

    since, until = times(args)
    engine = store_engine(args)
    try:
        page = events_page(
            engine, cameras=args.camera, kinds=args.kind, labels=args.label, zones=args.zone,
            since=since, until=until, limit=args.limit, cursor=args.cursor,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError([("arguments", str(exc))], "arguments") from None
    if args.json:
        print(json.dumps(page))
    else:
        print_rows(page["items"], ["started_at", "camera_id", "kind", "label", "zone", "track_ids"])
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}")
    return EXIT_OK


def cmd_events_tags(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import tags_page

    since, until = times(args)
    engine = store_engine(args)
    page = tags_page(
        engine, label=args.label, min_count=args.min_count, cameras=args.camera, zone=args.zone,
        since=since, until=until, limit=args.limit, cursor=args.cursor,
    )  # fmt: skip
    if args.json:
        print(json.dumps(page))
    else:
        print_rows(
            page["items"], ["started_at", "ended_at", "camera_id", "label", "zone", "max_count"]
        )
    return EXIT_OK


def cmd_events_stats(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import event_counts, parse_duration

    since, until = times(args)
    try:
        bucket_s = parse_duration(args.bucket)
    except ValueError as exc:
        raise ConfigError([("--bucket", str(exc))], "arguments") from None
    engine = store_engine(args)
    rows = event_counts(
        engine, since=since if since is not None else time.time() - 86400,
        until=until if until is not None else time.time() + 1, bucket_s=bucket_s,
        cameras=args.camera, kinds=args.kind, labels=args.label,
    )  # fmt: skip
    if args.json:
        print(json.dumps(rows))
    else:
        print_rows(rows, ["bucket_start", "camera_id", "label", "count"])
    return EXIT_OK


def add_event_commands(commands: Any) -> None:
    kinds = [kind.value for kind in EventKind]
    events = commands.add_parser("events", help="search events and tags, count events")
    actions = events.add_subparsers(dest="events", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="events, newest first")
    tags = actions.add_parser("tags", help="when was a label visible (at least N at once)")
    stats = actions.add_parser("stats", help="event counts per camera, label and time bucket")
    for parser in (search, tags, stats):
        parser.add_argument("--config", type=Path, default=None, help="read the store from it")
        parser.add_argument("--camera", action="append", default=[], help="repeatable")
        parser.add_argument("--since", default=None, help="ISO time or a duration like 2h")
        parser.add_argument("--until", default=None, help="ISO time or a duration like 15m")
        parser.add_argument("--json", action="store_true")
    for parser in (search, stats):
        parser.add_argument("--kind", action="append", default=[], choices=kinds)
        parser.add_argument("--label", action="append", default=[])
    for parser in (search, tags):
        parser.add_argument("--limit", type=positive(int), default=50)
        parser.add_argument("--cursor", default=None, help="from the previous page")
    search.add_argument("--zone", action="append", default=[])
    search.set_defaults(func=cmd_events_search)
    tags.add_argument("--label", required=True)
    tags.add_argument("--min-count", type=positive(int), default=1)
    tags.add_argument("--zone", default=None)
    tags.set_defaults(func=cmd_events_tags)
    stats.add_argument("--bucket", default="1h", help="bucket size, e.g. 15m, 1h, 1d")
    stats.set_defaults(func=cmd_events_stats)
