"""The `bountyescrow` command line: demo, database migrations, pruning, webhook replay."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bountyescrow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="tell one escrow's whole story with the fake gateway")
    demo.add_argument("--db", help="database URL (default: a new SQLite file)")
    demo.add_argument("--json", action="store_true", help="print the story as JSON")
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "apply migrations"), ("current", "show the applied revision")):
        cmd = db_sub.add_parser(name, help=text)
        cmd.add_argument("--url", required=True, help="SQLAlchemy database URL")
    prune = sub.add_parser("prune", help="trim old webhook events and expired idempotency keys")
    prune.add_argument("--url", required=True, help="SQLAlchemy database URL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from bountyescrow import demo

        demo.run(db=args.db, as_json=args.json)
        return 0
    try:
        from bountyescrow.adapters.sqlalchemy import _commands
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "db" and args.db_command == "upgrade":
        _commands.upgrade(args.url)
        print(f"upgraded {args.url} to {_commands.current(args.url)}")
    elif args.command == "db":
        print(_commands.current(args.url) or "no revision applied")
    elif args.command == "prune":
        from datetime import datetime

        print(_commands.prune(args.url, datetime.now(UTC)))
    return 0
