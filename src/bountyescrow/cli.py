"""The `bountyescrow` command line: demo, migrations, pruning, recovery, checks, replay,
reconciliation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bountyescrow.errors import BountyEscrowError

if TYPE_CHECKING:  # the service pulls in the whole library; the CLI imports it when needed
    from bountyescrow.service import EscrowService, ReconciliationReport

#: Builds the service `webhooks replay` applies events to, from (database URL, namespace).
ServiceFactory = Callable[[str, str], AbstractContextManager["EscrowService"]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bountyescrow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="tell one escrow's whole story with the fake gateway")
    demo.add_argument("--db", help="database URL (default: a new SQLite file)")
    demo.add_argument("--json", action="store_true", help="print the story as JSON")
    demo.add_argument(
        "--schema",
        default="bountyescrow",
        help="PostgreSQL schema for --db (default: bountyescrow)",
    )
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    commands = [
        db_sub.add_parser("upgrade", help="apply migrations"),
        db_sub.add_parser("current", help="show the applied revision"),
        sub.add_parser("prune", help="trim old webhook events and expired idempotency keys"),
    ]
    for cmd in commands:
        cmd.add_argument("--url", required=True, help="SQLAlchemy database URL")
        cmd.add_argument(
            "--schema",
            default="bountyescrow",
            help="PostgreSQL schema (SQLite: table prefix) of the tables (default: bountyescrow)",
        )
    webhooks = sub.add_parser("webhooks", help="webhook tools")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    replay = webhooks_sub.add_parser(
        "replay",
        help="apply a failed webhook event again from its stored payload",
        description="Apply a failed webhook event again from the payload stored when it "
        "failed, with the Stripe API key in STRIPE_API_KEY. Exits 0 when the event is "
        "applied (or did not need it), 1 otherwise.",
    )
    replay.add_argument(
        "event_id", help="the event id from the event log (evt_..., or evt_...:re_...)"
    )
    replay.add_argument("--url", required=True, help="SQLAlchemy database URL")
    replay.add_argument(
        "--namespace",
        default=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
        help="the namespace your app gives EscrowService, so operations the event starts use "
        "the same gateway idempotency keys (default: $BOUNTYESCROW_NAMESPACE or 'default')",
    )
    failed = webhooks_sub.add_parser(
        "failed",
        help="list webhook events whose processing failed, oldest first",
        description="List webhook events whose processing failed (id, type, attempts, "
        "error), oldest first; replay each with `bountyescrow webhooks replay`.",
    )
    failed.add_argument("--url", required=True, help="SQLAlchemy database URL")
    failed.add_argument("--schema", default="bountyescrow", help="PostgreSQL schema / prefix")
    failed.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    # --- webhooks backfill -----------------------------------------------------------------
    backfill = webhooks_sub.add_parser(
        "backfill",
        help="apply the events Stripe lists for a window, after missed webhooks",
        description="Read Stripe's events list (it keeps 30 days) for a window and apply "
        "each event as a delivered webhook, with the Stripe API key in STRIPE_API_KEY. "
        "Events already in the event log change nothing. Exits 0 when no event failed, 1 "
        "when some did (replay them), 2 when the events could not be read.",
    )
    backfill.add_argument("--url", required=True, help="SQLAlchemy database URL")
    backfill.add_argument(
        "--since",
        required=True,
        help="start of the window: an age (30m, 12h, 2d, 1w) or an ISO 8601 time "
        "(2026-12-01T08:00:00+00:00; UTC when no offset is given)",
    )
    backfill.add_argument(
        "--until", help="end of the window, as --since (default: now)", default=None
    )
    backfill.add_argument(
        "--namespace",
        default=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
        help="the namespace your app gives EscrowService (default: $BOUNTYESCROW_NAMESPACE "
        "or 'default')",
    )
    for name, text in (
        ("recover", "re-drive operations left pending (run it every minute from cron)"),
        ("check", "check the money invariants over every escrow; exit 1 on a violation"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--url", required=True, help="SQLAlchemy database URL")
        cmd.add_argument(
            "--namespace",
            default=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
            help="the namespace your app gives EscrowService (default: "
            "$BOUNTYESCROW_NAMESPACE or 'default')",
        )
    # --- reconcile ------------------------------------------------------------------------
    reconcile = sub.add_parser(
        "reconcile",
        help="compare the books with Stripe's own objects (run it nightly); exit 1 on a "
        "discrepancy",
        description="Compare the books with the objects Stripe lists for a window (or those "
        "of the escrows named), and the platform balance with the reserve, with the Stripe "
        "API key in STRIPE_API_KEY. With --repair, adopt what webhooks missed (never sending "
        "money). Exits 0 when nothing is left to look at, 1 when discrepancies remain, 2 when "
        "something could not be checked.",
    )
    reconcile.add_argument("--url", required=True, help="SQLAlchemy database URL")
    reconcile.add_argument(
        "--since",
        default=None,
        help="start of the window: an age (30m, 12h, 2d, 1w) or an ISO 8601 time (UTC when "
        "no offset is given); default: the beginning",
    )
    reconcile.add_argument(
        "--until",
        default=None,
        help="end of the window, as --since (default: 5 minutes ago; younger objects are left "
        "to their webhooks)",
    )
    reconcile.add_argument(
        "--escrow",
        action="append",
        dest="escrows",
        metavar="ID",
        help="reconcile only this escrow (repeat for several); no window, no balance check",
    )
    reconcile.add_argument(
        "--repair",
        action="store_true",
        help="adopt what the gateway did and the books missed, as webhooks would (never sends "
        "money)",
    )
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON")
    reconcile.add_argument(
        "--namespace",
        default=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
        help="the namespace your app gives EscrowService (default: $BOUNTYESCROW_NAMESPACE "
        "or 'default')",
    )
    return parser


@contextmanager
def stripe_service(url: str, namespace: str) -> Iterator[EscrowService]:
    """The production service: `SqlAlchemyStore(url)` and `StripeGateway` on $STRIPE_API_KEY.

    Raises:
        ConfigurationError: STRIPE_API_KEY is not set or not a secret key.
        ImportError: the ``stripe`` or ``sqlalchemy`` extra is missing.
    """
    from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    from bountyescrow.adapters.stripe import StripeGateway
    from bountyescrow.errors import ConfigurationError
    from bountyescrow.service import EscrowService

    api_key = os.environ.get("STRIPE_API_KEY")
    if not api_key:
        raise ConfigurationError(
            "set STRIPE_API_KEY to the secret key of the Stripe account the event came from"
        )
    gateway = StripeGateway(api_key=api_key)
    store = SqlAlchemyStore(url)
    try:
        yield EscrowService(store=store, gateway=gateway, namespace=namespace)
    finally:
        store.dispose()


def _replay(event_id: str, url: str, namespace: str, factory: ServiceFactory) -> int:
    try:
        from bountyescrow.webhooks import replay_event

        with factory(url, namespace) as service:
            response = replay_event(service, event_id)
    except (ImportError, BountyEscrowError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{event_id}: {response.status} {response.body.decode()}")
    return 0 if response.ok else 1


# --- webhooks backfill ---------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _when(text: str, now: datetime) -> datetime:
    """A point in time from ``--since``/``--until``: an age before `now`, or ISO 8601.

    Raises:
        ValueError: neither form.
    """
    value = text.strip()
    if len(value) > 1 and value[-1] in _UNITS and value[:-1].isdigit():
        return now - timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (30m, 12h, 2d, 1w) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _backfill(
    since: str, until: str | None, url: str, namespace: str, factory: ServiceFactory
) -> int:
    now = datetime.now(UTC)
    try:
        start = _when(since, now)
        end = None if until is None else _when(until, now)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        from bountyescrow.webhooks import backfill_events

        with factory(url, namespace) as service:
            report = backfill_events(service, since=start, until=end)
    except (ImportError, ValueError, BountyEscrowError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        f"read {report.read}: processed {report.processed}, ignored {report.ignored}, "
        f"failed {report.failed}, already seen {report.seen}"
    )
    for event_id in report.failed_event_ids:
        print(f"failed: {event_id} (bountyescrow webhooks replay {event_id})")
    return 0 if report.ok else 1


# --- reconcile -----------------------------------------------------------------------------


def _reconcile(args: argparse.Namespace, factory: ServiceFactory) -> int:
    import json

    try:
        with factory(args.url, args.namespace) as service:
            now = service.now()
            since = None if args.since is None else _when(args.since, now)
            until = None if args.until is None else _when(args.until, now)
            report = service.reconcile(
                since=since, until=until, escrow_ids=args.escrows, repair=args.repair
            )
    except (ImportError, ValueError, BountyEscrowError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.errors:
        return 2
    return 1 if report.unresolved else 0


def _print_report(report: ReconciliationReport) -> None:
    """The report as a table, one discrepancy per row with its details below, then a summary."""
    rows = [
        (
            d.kind.value,
            d.escrow_id or "-",
            d.operation_id or "-",
            d.gateway_ref or "-",
            "repaired" if d.repaired else "repairable" if d.repairable else "to look at",
        )
        for d in report.discrepancies
    ]
    if rows:
        header = ("KIND", "ESCROW", "OPERATION", "GATEWAY", "STATE")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row, found in zip(rows, report.discrepancies, strict=True):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            print(f"    books:   {found.ours}")
            print(f"    gateway: {found.theirs}")
            print(f"    action:  {found.action} ({found.runbook})")
    for error in report.errors:
        print(f"error: {error}")
    window = (
        "the escrows named"
        if report.since is None and report.until is None
        else f"{report.since.isoformat() if report.since else 'the beginning'} to "
        f"{report.until.isoformat() if report.until else 'now'}"
    )
    counts = ", ".join(f"{kind} {n}" for kind, n in report.counts().items()) or "none"
    print(
        f"reconciled {report.escrows_checked} escrows and {report.objects_read} gateway objects "
        f"({window}) in {report.duration.total_seconds():.1f} s: discrepancies {counts}; "
        f"repaired {len(report.repaired)}, unresolved {len(report.unresolved)}, errors "
        f"{len(report.errors)}"
    )


def _list_failed(url: str, schema: str, limit: int) -> int:
    # Reading the event log needs no gateway: the store alone answers.
    try:
        from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    store = SqlAlchemyStore(url, schema=schema)
    try:
        with store.unit_of_work() as uow:
            records = uow.webhook_events.failed(limit=limit)
    finally:
        store.dispose()
    for record in records:
        print(f"{record.id}\t{record.type}\tattempts={record.attempts}\t{record.error or ''}")
    print(f"{len(records)} failed event(s)")
    return 0


def _maintain(command: str, url: str, namespace: str, factory: ServiceFactory) -> int:
    try:
        with factory(url, namespace) as service:
            if command == "recover":
                report = service.recover()
                oldest = report.oldest_pending_age
                print(
                    f"claimed {report.claimed}, completed {report.completed}, "
                    f"still pending {report.still_pending}, errors {report.errors}, "
                    f"oldest pending {'none' if oldest is None else _age(oldest)}"
                )
                return 0 if report.errors == 0 else 1
            problems = service.check_invariants()
    except (ImportError, BountyEscrowError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print("invariants hold" if not problems else f"{len(problems)} violation(s)")
    return 0 if not problems else 1


def _age(age: timedelta) -> str:
    """An age for the recover output: ``2h05m``, ``4m10s``, ``12s``."""
    seconds = int(age.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def main(
    argv: Sequence[str] | None = None, *, service_factory: ServiceFactory | None = None
) -> int:
    """Run the command line; returns the exit status.

    `service_factory` replaces `stripe_service` for ``webhooks replay``, ``recover``,
    ``check`` and ``reconcile`` (tests pass a service over the fake gateway).
    """
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from bountyescrow import demo

        demo.run(db=args.db, schema=args.schema, as_json=args.json)
        return 0
    if args.command == "webhooks" and args.webhooks_command == "failed":
        return _list_failed(args.url, args.schema, args.limit)
    if args.command == "webhooks" and args.webhooks_command == "backfill":
        return _backfill(
            args.since, args.until, args.url, args.namespace, service_factory or stripe_service
        )
    if args.command == "webhooks":
        return _replay(args.event_id, args.url, args.namespace, service_factory or stripe_service)
    if args.command == "reconcile":
        return _reconcile(args, service_factory or stripe_service)
    if args.command in ("recover", "check"):
        return _maintain(args.command, args.url, args.namespace, service_factory or stripe_service)
    try:
        from bountyescrow.adapters.sqlalchemy import _commands
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    from sqlalchemy.engine import make_url

    # Never print a database password: the URL is shown with it masked.
    shown = make_url(args.url).render_as_string(hide_password=True)
    schema = args.schema
    if args.command == "db" and args.db_command == "upgrade":
        revision = _commands.upgrade(args.url, schema=schema)
        print(f"upgraded {shown} to revision {revision}")
    elif args.command == "db":
        print(_commands.current(args.url, schema=schema) or "no revision applied")
    elif args.command == "prune":
        from datetime import datetime

        counts = _commands.prune(args.url, datetime.now(UTC), schema=schema)
        print(f"pruned {shown}: {counts}")
    return 0
