"""`SqlAlchemyStore`: the `EscrowStore` port on PostgreSQL or SQLite, with SQLAlchemy 2 Core.

A unit of work is one connection and one short transaction: the connection is taken from the
pool on ``__enter__`` and given back on `commit()` or ``__exit__`` (rolled back unless
committed), so no connection is held between units of work or across a gateway call.

Locking. PostgreSQL runs at READ COMMITTED; ``for_update=True`` is ``SELECT ... FOR UPDATE``.
A ``for_update`` read of a payee, webhook event or idempotency record that does not exist yet
takes a transaction-scoped advisory lock on its key and reads again, so two concurrent first
calls with one idempotency key (or two deliveries of one event) run one after the other instead
of both inserting. Adding domain events takes a transaction-scoped advisory lock per schema, so
event numbers are handed out in commit order and `events.after(cursor)` never skips an event
committed late. SQLite starts every unit of work with ``BEGIN IMMEDIATE``: writers run one at a
time, and ``for_update`` has nothing more to do.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Engine, RowMapping

from bountyescrow.adapters.sqlalchemy import _mapping as m
from bountyescrow.adapters.sqlalchemy._engine import (
    PreparedEngine,
    adopt_engine,
    advisory_key,
    create_engine,
)
from bountyescrow.adapters.sqlalchemy._errors import refused, translating
from bountyescrow.adapters.sqlalchemy._tables import (
    DEFAULT_SCHEMA,
    build_tables,
    layout,
)
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import (
    AuditRecord,
    IdempotencyRecord,
    WebhookEventRecord,
    WebhookStatus,
)
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import (
    AuditRepository,
    DisputeRepository,
    EscrowRepository,
    EventRepository,
    IdempotencyStore,
    LedgerRepository,
    OperationRepository,
    PayeeRepository,
    UnitOfWork,
    WebhookEventRepository,
)

T = TypeVar("T")


class _Repository:
    def __init__(self, uow: _UnitOfWork) -> None:
        self._uow = uow
        self._t = uow.tables


class _Escrows(_Repository):
    def get(self, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
        t = self._t.escrows
        stmt = sa.select(t).where(t.c.id == escrow_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._uow.first(stmt)
        return None if row is None else m.escrow_from(row)

    def add(self, escrow: Escrow) -> None:
        t = self._t.escrows
        stmt = (
            self._uow.insert(t)
            .values(m.escrow_row(escrow))
            .on_conflict_do_nothing()
            .returning(t.c.id)
        )
        if self._uow.first(stmt) is None:
            raise refused(f"escrow {escrow.id} already exists", constraint="escrows_pkey")

    def save(self, escrow: Escrow) -> None:
        t = self._t.escrows
        row = m.escrow_row(escrow)
        del row["id"]
        row["version"] = t.c.version + 1
        if self._uow.run(sa.update(t).where(t.c.id == escrow.id).values(row)) == 0:
            raise refused(f"escrow {escrow.id} does not exist", constraint="escrows_pkey")

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        t = self._t.escrows
        stmt = sa.select(t).order_by(t.c.created_at, t.c.id)
        if bounty_id is not None:
            stmt = stmt.where(t.c.bounty_id == bounty_id)
        if poster_id is not None:
            stmt = stmt.where(t.c.poster_id == poster_id)
        return [m.escrow_from(row) for row in self._uow.all(stmt)]

    def ids(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        t = self._t.escrows
        stmt = sa.select(t.c.id).order_by(t.c.id).limit(limit)
        if after is not None:
            stmt = stmt.where(t.c.id > after)
        return [row["id"] for row in self._uow.all(stmt)]

    def held_total(self, currency: str) -> Money:
        t = self._t.escrows
        stmt = sa.select(sa.func.coalesce(sa.func.sum(t.c.held), 0).label("total")).where(
            t.c.currency == currency
        )
        row = self._uow.first(stmt)
        return Money(int(row["total"]) if row is not None else 0, currency)


class _Operations(_Repository):
    def get(self, operation_id: str, *, for_update: bool = False) -> Operation | None:
        t = self._t.operations
        stmt = sa.select(t).where(t.c.id == operation_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._uow.first(stmt)
        return None if row is None else m.operation_from(row)

    def _refuse_duplicate_ref(self, op: Operation) -> None:
        if op.gateway_ref is None:
            return
        other = self.by_gateway_ref(op.kind, op.gateway_ref)
        if other is not None and other.id != op.id:
            raise refused(
                f"{op.kind.value} {op.gateway_ref} is already recorded by {other.id}",
                constraint="operations_kind_gateway_ref",
            )

    def add(self, operation: Operation) -> None:
        t, escrows = self._t.operations, self._t.escrows
        bounty = sa.select(escrows.c.bounty_id).where(escrows.c.id == operation.escrow_id)
        stmt = (
            self._uow.insert(t)
            .values({**m.operation_row(operation), "bounty_id": bounty.scalar_subquery()})
            .on_conflict_do_nothing()
            .returning(t.c.id)
        )
        if self._uow.first(stmt) is None:
            # Nothing inserted and the transaction still usable: say which rule refused it.
            if self.get(operation.id) is not None:
                raise refused(
                    f"operation {operation.id} already exists", constraint="operations_pkey"
                )
            self._refuse_duplicate_ref(operation)
            raise refused(  # pragma: no cover - the conflicting row vanished meanwhile
                f"operation {operation.id} conflicts with another operation",
                constraint="operations_kind_gateway_ref",
            )

    def save(self, operation: Operation) -> None:
        t = self._t.operations
        self._refuse_duplicate_ref(operation)
        row = m.operation_row(operation)
        del row["id"]
        if self._uow.run(sa.update(t).where(t.c.id == operation.id).values(row)) == 0:
            raise refused(f"operation {operation.id} does not exist", constraint="operations_pkey")

    def for_escrow(self, escrow_id: str) -> list[Operation]:
        t = self._t.operations
        stmt = sa.select(t).where(t.c.escrow_id == escrow_id).order_by(t.c.created_at, t.c.id)
        return [m.operation_from(row) for row in self._uow.all(stmt)]

    def by_gateway_ref(self, kind: OperationKind, gateway_ref: str) -> Operation | None:
        t = self._t.operations
        stmt = sa.select(t).where(t.c.kind == kind.value, t.c.gateway_ref == gateway_ref)
        row = self._uow.first(stmt)
        return None if row is None else m.operation_from(row)

    def awaiting_payee(self, payee_id: str | None = None, *, limit: int = 1000) -> list[Operation]:
        t = self._t.operations
        stmt = (
            sa.select(t)
            .where(
                t.c.status == OperationStatus.AWAITING_PAYEE.value,
                t.c.kind == OperationKind.RELEASE.value,
            )
            .order_by(t.c.escrow_id, t.c.created_at, t.c.id)
            .limit(limit)
        )
        if payee_id is not None:
            stmt = stmt.where(t.c.payee_id == payee_id)
        return [m.operation_from(row) for row in self._uow.all(stmt)]

    def claim_due(self, *, now: datetime, lease_until: datetime, limit: int) -> list[Operation]:
        t = self._t.operations
        stmt = (
            sa.select(t)
            .where(
                t.c.status == OperationStatus.PENDING.value,
                sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until <= now),
                sa.or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
            )
            .order_by(t.c.created_at, t.c.id)
            .limit(limit)
            # Rows another transaction is claiming are skipped, not waited for.
            .with_for_update(skip_locked=True)
        )
        due = [m.operation_from(row) for row in self._uow.all(stmt)]
        if due:
            ids = [op.id for op in due]
            self._uow.run(sa.update(t).where(t.c.id.in_(ids)).values(claimed_until=lease_until))
        return [attrs.evolve(op, claimed_until=lease_until) for op in due]


class _Disputes(_Repository):
    def get(self, dispute_id: str) -> Dispute | None:
        t = self._t.disputes
        row = self._uow.first(sa.select(t).where(t.c.id == dispute_id))
        return None if row is None else m.dispute_from(row)

    def save(self, dispute: Dispute) -> None:
        self._uow.upsert(self._t.disputes, m.dispute_row(dispute), key=("id",))

    def for_escrow(self, escrow_id: str) -> list[Dispute]:
        t = self._t.disputes
        stmt = sa.select(t).where(t.c.escrow_id == escrow_id).order_by(t.c.created_at, t.c.id)
        return [m.dispute_from(row) for row in self._uow.all(stmt)]


class _Payees(_Repository):
    def get(self, payee_id: str, *, for_update: bool = False) -> Payee | None:
        t = self._t.payees
        row = self._uow.first_locking(
            sa.select(t).where(t.c.id == payee_id), for_update, "payee", payee_id
        )
        return None if row is None else m.payee_from(row)

    def by_account(self, account_ref: str) -> Payee | None:
        t = self._t.payees
        row = self._uow.first(sa.select(t).where(t.c.account_ref == account_ref))
        return None if row is None else m.payee_from(row)

    def save(self, payee: Payee) -> None:
        other = self.by_account(payee.account_ref)
        if other is not None and other.id != payee.id:
            raise refused(
                f"account {payee.account_ref} already belongs to payee {other.id}",
                constraint="payees_account_ref",
            )
        self._uow.upsert(self._t.payees, m.payee_row(payee), key=("id",))


class _Ledger(_Repository):
    def add(self, entry: JournalEntry) -> None:
        t = self._t.ledger_entries
        stmt = (
            self._uow.insert(t)
            .values(m.entry_row(entry))
            .on_conflict_do_nothing()
            .returning(t.c.seq)
        )
        row = self._uow.first(stmt)
        if row is None:
            raise refused(
                f"ledger entry {entry.kind} {entry.ref} is already booked",
                constraint="ledger_entries_kind_ref",
            )
        if entry.postings:
            self._uow.run(
                sa.insert(self._t.ledger_postings), m.posting_rows(row["seq"], entry.postings)
            )

    def exists(self, kind: str, ref: str) -> bool:
        t = self._t.ledger_entries
        stmt = sa.select(t.c.seq).where(t.c.kind == kind, t.c.ref == ref).limit(1)
        return self._uow.first(stmt) is not None

    def for_escrow(self, escrow_id: str) -> list[JournalEntry]:
        t, p = self._t.ledger_entries, self._t.ledger_postings
        entries = self._uow.all(sa.select(t).where(t.c.escrow_id == escrow_id).order_by(t.c.seq))
        if not entries:
            return []
        postings = self._uow.all(
            sa.select(p)
            .join(t, p.c.entry_seq == t.c.seq)
            .where(t.c.escrow_id == escrow_id)
            .order_by(p.c.entry_seq, p.c.line)
        )
        by_entry: dict[int, list[RowMapping]] = {}
        for posting in postings:
            by_entry.setdefault(posting["entry_seq"], []).append(posting)
        return [m.entry_from(row, by_entry.get(row["seq"], ())) for row in entries]


class _Audit(_Repository):
    def add(self, record: AuditRecord) -> None:
        self._uow.run(sa.insert(self._t.audit).values(m.audit_row(record)))

    def for_escrow(self, escrow_id: str) -> list[AuditRecord]:
        t = self._t.audit
        stmt = sa.select(t).where(t.c.escrow_id == escrow_id).order_by(t.c.seq)
        return [m.audit_from(row) for row in self._uow.all(stmt)]


class _Events(_Repository):
    def add(self, event: DomainEvent) -> DomainEvent:
        self._uow.lock_event_log()
        t = self._t.domain_events
        row = self._uow.first(sa.insert(t).values(m.event_row(event)).returning(t.c.seq))
        assert row is not None
        return attrs.evolve(event, seq=int(row["seq"]))

    def after(self, cursor: int, *, limit: int) -> list[DomainEvent]:
        t = self._t.domain_events
        stmt = sa.select(t).where(t.c.seq > cursor).order_by(t.c.seq).limit(limit)
        return [m.event_from(row) for row in self._uow.all(stmt)]


class _WebhookEvents(_Repository):
    def get(self, event_id: str, *, for_update: bool = False) -> WebhookEventRecord | None:
        t = self._t.webhook_events
        row = self._uow.first_locking(
            sa.select(t).where(t.c.id == event_id), for_update, "webhook_event", event_id
        )
        return None if row is None else m.webhook_from(row)

    def save(self, record: WebhookEventRecord) -> None:
        self._uow.upsert(self._t.webhook_events, m.webhook_row(record), key=("id",))

    def prune(self, *, before: datetime) -> int:
        t = self._t.webhook_events
        kept = (WebhookStatus.PROCESSED.value, WebhookStatus.IGNORED.value)
        stmt = sa.delete(t).where(t.c.status.in_(kept), t.c.received_at < before)
        return self._uow.run(stmt)


class _Idempotency(_Repository):
    def get(self, actor_id: str, key: str, *, for_update: bool = False) -> IdempotencyRecord | None:
        t = self._t.idempotency_keys
        stmt = sa.select(t).where(t.c.actor_id == actor_id, t.c.key == key)
        row = self._uow.first_locking(stmt, for_update, "idempotency", actor_id, key)
        return None if row is None else m.idempotency_from(row)

    def save(self, record: IdempotencyRecord) -> None:
        self._uow.upsert(
            self._t.idempotency_keys, m.idempotency_row(record), key=("actor_id", "key")
        )

    def prune(self, *, now: datetime) -> int:
        t = self._t.idempotency_keys
        return self._uow.run(sa.delete(t).where(t.c.expires_at <= now))


class _UnitOfWork:
    """One connection and one transaction; rolled back on exit unless `commit()` was called.

    After `commit()` the connection goes back to the pool at once. Using a repository again
    in the same ``with`` block opens a new transaction, which needs its own `commit()`.
    """

    def __init__(self, store: SqlAlchemyStore) -> None:
        self._store = store
        self.tables = store.tables
        self._conn: sa.Connection | None = None
        self._entered = False
        self._events_locked = False
        self.escrows: EscrowRepository = _Escrows(self)
        self.operations: OperationRepository = _Operations(self)
        self.disputes: DisputeRepository = _Disputes(self)
        self.payees: PayeeRepository = _Payees(self)
        self.ledger: LedgerRepository = _Ledger(self)
        self.audit: AuditRepository = _Audit(self)
        self.events: EventRepository = _Events(self)
        self.webhook_events: WebhookEventRepository = _WebhookEvents(self)
        self.idempotency: IdempotencyStore = _Idempotency(self)

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> _UnitOfWork:
        if self._entered:
            raise _usage_error("this unit of work is already open: start a new one instead")
        self._store._enter_thread()
        try:
            self._begin()
        except BaseException:
            self._store._leave_thread()
            raise
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._release(rollback=True)
        finally:
            self._entered = False
            self._store._leave_thread()

    def commit(self) -> None:
        """Make every change of this unit of work durable, atomically."""
        if not self._entered:
            raise _usage_error("commit() outside the with block of its unit of work")
        conn = self._conn
        if conn is None:
            return  # nothing happened since the last commit
        try:
            with self._translating(committing=True):
                conn.commit()
        finally:
            self._release(rollback=False)

    def _begin(self) -> None:
        with self._translating():
            conn = self._store._prepared.engine.connect()
            try:
                conn.begin()
            except BaseException:
                _close_quietly(conn)
                raise
        self._conn = conn
        self._events_locked = False

    def _release(self, *, rollback: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if rollback:
            try:
                conn.rollback()
            except Exception:
                # The connection is gone, and with it the transaction: nothing was written.
                _invalidate_quietly(conn)
        _close_quietly(conn)

    def _translating(self, *, committing: bool = False) -> Any:
        return translating(self.tables, committing=committing, dbapi_error=self._store._dbapi_error)

    # --- statements (the only place repositories reach the connection) ----------------------

    def _connection(self) -> sa.Connection:
        if not self._entered:
            raise _usage_error("use the unit of work inside its with block")
        if self._conn is None:
            self._begin()
        assert self._conn is not None
        return self._conn

    def all(self, stmt: sa.Executable) -> Sequence[RowMapping]:
        """Run a statement and return every row."""
        with self._translating():
            return self._connection().execute(stmt).mappings().all()

    def first(self, stmt: sa.Executable) -> RowMapping | None:
        """Run a statement and return its first row, or None."""
        with self._translating():
            return self._connection().execute(stmt).mappings().first()

    def run(self, stmt: sa.Executable, params: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Run a statement (with many parameter sets when given) and return the row count."""
        with self._translating():
            conn = self._connection()
            result = conn.execute(stmt) if params is None else conn.execute(stmt, params)
            return int(result.rowcount)

    def insert(self, table: sa.Table) -> Any:
        """A dialect INSERT, which knows ``ON CONFLICT``."""
        if self._store.backend == "postgresql":
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)

    def upsert(self, table: sa.Table, row: Mapping[str, Any], *, key: Sequence[str]) -> None:
        """Insert `row`, or update the row with the same `key` columns."""
        stmt = self.insert(table).values(dict(row))
        changes = {name: stmt.excluded[name] for name in row if name not in key}
        self.run(stmt.on_conflict_do_update(index_elements=list(key), set_=changes))

    def first_locking(self, stmt: sa.Select[Any], for_update: bool, *key: str) -> RowMapping | None:
        """Read one row; with `for_update`, lock it, or lock its key if it does not exist yet."""
        if not for_update:
            return self.first(stmt)
        row = self.first(stmt.with_for_update())
        if row is None and self._store.backend == "postgresql":
            # Serialise first writers of the same key: the second waits here until the first
            # commits, then reads its row (READ COMMITTED: each statement sees new commits).
            self.advisory_lock(*key)
            row = self.first(stmt.with_for_update())
        return row

    def advisory_lock(self, *key: str) -> None:
        """Take a PostgreSQL advisory lock held until this transaction ends."""
        lock = advisory_key(self._store.schema, *key)
        self.first(sa.select(sa.func.pg_advisory_xact_lock(lock)))

    def lock_event_log(self) -> None:
        """Hand out event numbers in commit order (PostgreSQL; SQLite writers are serial)."""
        if self._events_locked or self._store.backend != "postgresql":
            return
        self.advisory_lock("domain_events")
        self._events_locked = True


def _usage_error(message: str) -> StorageError:
    error = StorageError(message)
    error.retryable = False
    return error


def _close_quietly(conn: sa.Connection) -> None:
    try:
        conn.close()
    except Exception:
        _invalidate_quietly(conn)


def _invalidate_quietly(conn: sa.Connection) -> None:
    # Nothing more can be done for a dead connection.
    with contextlib.suppress(Exception):
        conn.invalidate()


class SqlAlchemyStore:
    """The `EscrowStore` on PostgreSQL (production) or SQLite (embedded), via SQLAlchemy 2.

    Args:
        url_or_engine: a database URL (``postgresql+psycopg://user@host/db``,
            ``sqlite:///path/escrow.db``, ``sqlite://`` for memory) or the host's own `Engine`.
            A bare ``postgresql://`` URL uses psycopg 3.
        schema: the PostgreSQL schema holding our tables; on SQLite the tables are named
            ``<schema>_<table>`` instead.
        engine_options: extra `sqlalchemy.create_engine` arguments (pool size...) when the
            store creates the engine from a URL.
        busy_timeout: SQLite only: seconds a unit of work waits for the write lock.

    Every database failure is raised as `bountyescrow.errors.StorageError`; see
    `run_in_transaction` for redoing a unit of work after a retryable one.
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        schema: str = DEFAULT_SCHEMA,
        engine_options: Mapping[str, Any] | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        if isinstance(url_or_engine, Engine):
            if engine_options:
                raise TypeError("engine_options only apply when the store creates the engine")
            self._prepared: PreparedEngine = adopt_engine(url_or_engine, busy_timeout=busy_timeout)
        else:
            self._prepared = create_engine(
                url_or_engine, busy_timeout=busy_timeout, options=engine_options
            )
        self.schema = schema
        self.backend = self._prepared.backend
        pg_schema, prefix = layout(schema, sqlite=self.backend == "sqlite")
        self.tables = build_tables(schema=pg_schema, prefix=prefix)
        self._busy_timeout = busy_timeout
        dbapi = self._prepared.engine.dialect.loaded_dbapi
        self._dbapi_error: type[BaseException] | None = getattr(dbapi, "Error", None)
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._serial = threading.Lock() if self._prepared.memory else None
        self._threads = threading.local()

    # --- public API -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine units of work use (a view of the host's engine when one was given)."""
        return self._prepared.engine

    @property
    def metadata(self) -> sa.MetaData:
        """This store's tables, for a host's Alembic ``include_object`` filter or reports."""
        return self.tables.metadata

    def unit_of_work(self) -> UnitOfWork:
        """Begin a unit of work (use it as a context manager)."""
        return _UnitOfWork(self)

    def run_in_transaction(
        self,
        fn: Callable[[UnitOfWork], T],
        *,
        attempts: int = 5,
        backoff: float = 0.05,
    ) -> T:
        """Run ``fn(uow)`` in a unit of work and commit it, redoing it on retryable errors.

        `fn` must not commit and must not call the payment gateway: it may run several times.
        Between attempts the store sleeps a random time up to ``backoff * 2**attempt`` seconds
        (full jitter), so colliding transactions do not collide again.

        Raises:
            StorageError: the last error, once `attempts` are used up or it is not retryable.
        """
        for attempt in range(attempts):
            try:
                with self.unit_of_work() as uow:
                    result = fn(uow)
                    uow.commit()
                    return result
            except StorageError as exc:
                if not exc.retryable or attempt + 1 >= attempts:
                    raise
            time.sleep(random.uniform(0, backoff * 2**attempt))
        raise ValueError("attempts must be at least 1")

    def migrate(self) -> None:
        """Create or upgrade our tables to the newest migration (safe to run concurrently)."""
        from bountyescrow.adapters.sqlalchemy._migrate import upgrade_engine

        upgrade_engine(self)

    def current_revision(self) -> str | None:
        """The applied migration revision, or None before the first `migrate()`."""
        from bountyescrow.adapters.sqlalchemy._migrate import current_revision

        return current_revision(self)

    def dispose(self) -> None:
        """Close the pooled connections of an engine the store created (a host's is left)."""
        if self._prepared.owned:
            self._prepared.engine.dispose()

    def __enter__(self) -> SqlAlchemyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def __repr__(self) -> str:
        url = self._prepared.engine.url.render_as_string(hide_password=True)
        return f"SqlAlchemyStore({url!r}, schema={self.schema!r})"

    # --- internals --------------------------------------------------------------------------

    def _enter_thread(self) -> None:
        if getattr(self._threads, "open", False):
            raise _usage_error(
                "a unit of work is already open in this thread: units of work must not be "
                "nested (finish or commit the first one before starting another)"
            )
        if self._serial is not None and not self._serial.acquire(timeout=self._busy_timeout):
            raise StorageError(
                "database is locked: the in-memory database stayed busy", transient=True
            )
        self._threads.open = True

    def _leave_thread(self) -> None:
        self._threads.open = False
        if self._serial is not None:
            self._serial.release()
