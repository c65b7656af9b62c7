"""Functions behind the command line: ``bountyescrow db upgrade``, ``db current``, ``prune``.

Each takes a database URL (or the host's `Engine`) and does one job; the CLI only parses
arguments and prints. `alembic_include_object` keeps our tables out of a host's own Alembic
autogenerate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import URL, Engine

from bountyescrow.adapters.sqlalchemy._store import SqlAlchemyStore
from bountyescrow.adapters.sqlalchemy._tables import DEFAULT_SCHEMA, build_tables
from bountyescrow.ports.store import EscrowStore

#: How long processed and ignored webhook event ids are kept by default (DESIGN §13: Stripe
#: retries for up to three days and replays are possible for 30, so keep them at least 35).
KEEP_EVENTS_DAYS = 35

_BASE_NAMES = frozenset(
    table.name for table in build_tables(schema=None, prefix="").metadata.tables.values()
) | {"alembic_version"}


@contextmanager
def _store(url: str | URL | Engine, schema: str) -> Iterator[SqlAlchemyStore]:
    store = SqlAlchemyStore(url, schema=schema)
    try:
        yield store
    finally:
        store.dispose()


def upgrade(url: str | URL | Engine, *, schema: str = DEFAULT_SCHEMA) -> str | None:
    """Create or upgrade our tables at `url` to the newest migration; return the revision.

    Safe to run from several processes at once (PostgreSQL: under an advisory lock).

    Raises:
        StorageError: the database failed or could not be reached.
        ConfigurationError: the URL names an unsupported database or a missing driver.
    """
    with _store(url, schema) as store:
        store.migrate()
        return store.current_revision()


def current(url: str | URL | Engine, *, schema: str = DEFAULT_SCHEMA) -> str | None:
    """The migration revision applied at `url`, or None when our tables are not there yet."""
    with _store(url, schema) as store:
        return store.current_revision()


def prune(
    url_or_store: str | URL | Engine | EscrowStore,
    now: datetime | None = None,
    *,
    keep_events_days: int = KEEP_EVENTS_DAYS,
    schema: str = DEFAULT_SCHEMA,
) -> dict[str, int]:
    """Delete old processed/ignored webhook event ids and expired idempotency keys.

    Webhook events received more than `keep_events_days` before `now` (default: the current
    UTC time) go unless they failed (failed events are kept for replay); idempotency records go
    once their `expires_at` has passed. The ledger, audit trail, operations and domain events
    are never pruned.

    Returns:
        How many rows went: ``{"webhook_events": n, "idempotency_keys": m}``.
    """
    if keep_events_days < 0:
        raise ValueError(f"keep_events_days must not be negative, got {keep_events_days}")
    moment = now if now is not None else datetime.now(UTC)
    before = moment - timedelta(days=keep_events_days)
    if isinstance(url_or_store, str | URL | Engine):
        with _store(url_or_store, schema) as store:
            return _prune(store, now=moment, before=before)
    return _prune(url_or_store, now=moment, before=before)


def _prune(store: EscrowStore, *, now: datetime, before: datetime) -> dict[str, int]:
    with store.unit_of_work() as uow:
        counts = {
            "webhook_events": uow.webhook_events.prune(before=before),
            "idempotency_keys": uow.idempotency.prune(now=now),
        }
        uow.commit()
    return counts


def alembic_include_object(
    obj: Any,
    name: str | None,
    type_: str,
    reflected: bool,
    compare_to: Any,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> bool:
    """An Alembic ``include_object`` hook that leaves bountyescrow's tables alone.

    Use it (or call it from your own hook) in your ``env.py``: ``context.configure(...,
    include_object=alembic_include_object)``, so autogenerate neither drops our tables nor
    copies them into your migrations. For a store built with another `schema`, bind it with
    ``functools.partial(alembic_include_object, schema="...")``.
    """
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = getattr(table, "name", None)
    if not isinstance(table_name, str):
        return True
    if getattr(table, "schema", None) == schema:
        return False
    prefix = f"{schema}_"
    return not (table_name.startswith(prefix) and table_name[len(prefix) :] in _BASE_NAMES)
