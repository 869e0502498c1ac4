"""``feedtag tokens`` and ``feedtag audit``: API tokens and the audit log, in the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from feedtag.cli.common import EXIT_OK, positive, print_rows, store_engine, times
from feedtag.errors import ConfigError


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import Role, create_token

    cameras = args.camera or None
    token, record = create_token(store_engine(args), args.name, Role(args.role), cameras)
    if args.json:
        print(json.dumps({**record.to_dict(), "token": token}))
        return EXIT_OK
    scope = "every camera" if cameras is None else ", ".join(sorted(cameras))
    print(f"created {record.role.value} token {record.token_id} ({record.name!r}, {scope}).")
    print("The token is shown this once; it is stored only as a hash:", file=sys.stderr)
    print(token)
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import list_tokens

    records = list_tokens(store_engine(args), include_revoked=args.all)
    if args.json:
        print(json.dumps([record.to_dict() for record in records]))
        return EXIT_OK
    rows = []
    for record in records:
        row = record.to_dict()
        row["cameras"] = "all" if record.cameras is None else ",".join(sorted(record.cameras))
        rows.append(row)
    print_rows(rows, ["token_id", "name", "role", "cameras", "created_at", "revoked_at"])
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import revoke_token

    if not revoke_token(store_engine(args), args.token_id):
        raise ConfigError([("token_id", f"no live token {args.token_id!r}")], "arguments")
    print(f"revoked {args.token_id}; its sessions end at their next request")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from feedtag.store.audit import AuditQuery, search_audit

    since, until = times(args)
    who = (args.principal,) if args.principal else ()
    query = AuditQuery(who, args.action, args.camera, since, until, args.limit, args.cursor)
    page = search_audit(store_engine(args), query)
    items = [entry.to_dict() for entry in page.items]
    if args.json:
        print(json.dumps({"items": items, "next_cursor": page.next_cursor}))
        return EXIT_OK
    print_rows(items, ["at", "token_name", "role", "action", "camera_id", "object_id", "client"])
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return EXIT_OK


def add_access_commands(commands: Any) -> None:
    tokens = commands.add_parser("tokens", help="API tokens: create, list, revoke")
    actions = tokens.add_subparsers(dest="tokens", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token (shown once, stored hashed)")
    create.add_argument("--name", required=True, help="who or what uses it")
    create.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    create.add_argument(
        "--camera", action="append", default=[], help="restrict to this camera (repeatable)"
    )
    create.set_defaults(func=cmd_tokens_create)
    listing = actions.add_parser("list", help="tokens (never the tokens themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_tokens_revoke)
    for parser in (create, listing, revoke):
        parser.add_argument("--config", type=Path, default=None, help="read the store from it")
        parser.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="who read which events and media, when")
    audit.add_argument("--config", type=Path, default=None, help="read the store from it")
    audit.add_argument("--since", default=None, help="ISO time or a duration like 2h")
    audit.add_argument("--until", default=None, help="ISO time or a duration like 15m")
    audit.add_argument("--principal", default=None, help="a token id or name")
    audit.add_argument("--action", action="append", default=[], help="e.g. events.get")
    audit.add_argument("--camera", action="append", default=[])
    audit.add_argument("--limit", type=positive(int), default=50)
    audit.add_argument("--cursor", default=None)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)
