"""`SqlAlchemyStore`: the `EscrowStore` port on PostgreSQL or SQLite, with SQLAlchemy 2 Core.

One module, longer than most, on purpose: the nine repositories are thin and each works through
the unit of work's private helpers (`first`, `all`, `run`, `update`, `remember`, the key
locks), whose rules (changed-column and status-guarded UPDATEs, locks before first reads) are
read best next to their only callers.

A unit of work is one connection and one short transaction: the connection is taken from the
pool on ``__enter__`` and given back on `commit()` or ``__exit__`` (rolled back unless
committed), so no connection is held between units of work or across a gateway call.

Locking. PostgreSQL runs at READ COMMITTED; ``for_update=True`` is ``SELECT ... FOR UPDATE``.
A ``for_update`` read of a payee, webhook event or idempotency record first takes a
transaction-scoped advisory lock on its key, so two concurrent first calls with one idempotency
key (or two deliveries of one event) run one after the other instead of both inserting.
Adding domain events takes a transaction-scoped advisory lock per schema, so event numbers are
handed out in commit order and `events.after(cursor)` never skips an event committed late.
SQLite starts every unit of work with ``BEGIN IMMEDIATE``: writers run one at a time, and
``for_update`` has nothing more to do.

Statements are built once per store (`_statements`); an UPDATE sets only the columns that
changed since the unit of work read the row. Every statement runs through `_UnitOfWork.first`,
`all` or `run`, the one place where database errors become `StorageError`.
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
from sqlalchemy.engine import URL, Engine, RowMapping

from bountyescrow.adapters.sqlalchemy import _mapping as m
from bountyescrow.adapters.sqlalchemy import _migrate
from bountyescrow.adapters.sqlalchemy._engine import (
    PreparedEngine,
    adopt_engine,
    advisory_key,
    create_engine,
)
from bountyescrow.adapters.sqlalchemy._errors import STATUS_GUARD, refused, stale, translating
from bountyescrow.adapters.sqlalchemy._statements import KEY, STATUS, Statements
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

#: Columns an UPDATE never sets from the value: the key, and the version the store bumps.
_NEVER_SET = frozenset({"id", "version"})


class _Repository:
    def __init__(self, uow: _UnitOfWork) -> None:
        self._uow = uow
        self._t = uow.tables
        self._sql = uow.statements


class _Escrows(_Repository):
    def get(self, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
        stmt = self._sql.escrow_locked if for_update else self._sql.escrow
        row = self._uow.first(stmt, {"id": escrow_id})
        if row is None:
            return None
        escrow = m.escrow_from(row)
        self._uow.remember(self._t.escrows, escrow.id, escrow)
        return escrow

    def add(self, escrow: Escrow) -> None:
        row = m.escrow_row(escrow)
        if self._uow.first(self._sql.add_escrow, row) is None:
            raise refused(f"escrow {escrow.id} already exists", constraint="escrows_pkey")
        self._uow.remember(self._t.escrows, escrow.id, row)

    def save(self, escrow: Escrow) -> None:
        # The UPDATE always bumps `version`, so it runs even when no other column changed.
        if self._uow.update(self._t.escrows, escrow.id, m.escrow_row(escrow), m.escrow_row) == 0:
            raise refused(f"escrow {escrow.id} does not exist", constraint="escrows_pkey")

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        if bounty_id is not None and poster_id is not None:
            params = {"bounty_id": bounty_id, "poster_id": poster_id}
            rows = self._uow.all(self._sql.escrows_of_bounty_and_poster, params)
            return [m.escrow_from(row) for row in rows]
        t = self._t.escrows
        stmt = self._sql.escrows_ordered
        if bounty_id is not None:
            stmt = stmt.where(t.c.bounty_id == bounty_id)
        if poster_id is not None:
            stmt = stmt.where(t.c.poster_id == poster_id)
        return [m.escrow_from(row) for row in self._uow.all(stmt)]

    def lock_bounty(self, bounty_id: str, poster_id: str) -> None:
        self._uow.lock_key("open_escrow", bounty_id, poster_id)

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
    def _read(self, row: RowMapping) -> Operation:
        op = m.operation_from(row)
        self._uow.remember(self._t.operations, op.id, op)
        return op

    def get(self, operation_id: str, *, for_update: bool = False) -> Operation | None:
        stmt = self._sql.operation_locked if for_update else self._sql.operation
        row = self._uow.first(stmt, {"id": operation_id})
        return None if row is None else self._read(row)

    def add(self, operation: Operation) -> None:
        row = m.operation_row(operation)
        # `bounty_of` names the escrow whose bounty id the sub-select copies.
        if self._uow.first(self._sql.add_operation, {**row, "bounty_of": operation.escrow_id}):
            self._uow.remember(self._t.operations, operation.id, row)
            return
        # Nothing inserted and the transaction still usable: say which rule refused it.
        if self.get(operation.id) is not None:
            raise refused(f"operation {operation.id} already exists", constraint="operations_pkey")
        ref = operation.gateway_ref
        other = None if ref is None else self.by_gateway_ref(operation.kind, ref)
        if other is not None:
            raise refused(
                f"{operation.kind.value} {ref} is already recorded by {other.id}",
                constraint="operations_kind_gateway_ref",
            )
        raise refused(  # pragma: no cover - the conflicting row vanished meanwhile
            f"operation {operation.id} conflicts with another operation",
            constraint="operations_kind_gateway_ref",
        )

    def save(self, operation: Operation) -> None:
        # A gateway ref another operation of the same kind recorded is refused by the unique
        # index `operations_kind_gateway_ref`; the error translation names it. The UPDATE is
        # guarded by the status this transaction read: a copy read before another transaction
        # settled the operation (cancelled it, say) must never write it back to life.
        row = m.operation_row(operation)
        t = self._t.operations
        if self._uow.update(t, operation.id, row, m.operation_row, guard="status") == 0:
            current = self._uow.first(self._sql.operation, {"id": operation.id})
            if current is None:
                raise refused(
                    f"operation {operation.id} does not exist", constraint="operations_pkey"
                )
            raise stale(
                f"operation {operation.id} is {current['status']} now; this transaction's copy "
                "was read before it changed, so the write is refused and the work rerun",
                constraint=STATUS_GUARD,
            )

    def for_escrow(self, escrow_id: str) -> list[Operation]:
        rows = self._uow.all(self._sql.operations_of_escrow, {"escrow_id": escrow_id})
        return [self._read(row) for row in rows]

    def by_gateway_ref(self, kind: OperationKind, gateway_ref: str) -> Operation | None:
        params = {"kind": kind.value, "gateway_ref": gateway_ref}
        row = self._uow.first(self._sql.operation_by_ref, params)
        return None if row is None else self._read(row)

    def awaiting_payee(
        self, payee_id: str | None = None, *, ready: bool | None = None, limit: int = 1000
    ) -> list[Operation]:
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
        if ready is not None:
            payees = self._t.payees
            readiness = sa.select(payees.c.id).where(payees.c.ready.is_(True))
            stmt = stmt.where(
                t.c.payee_id.in_(readiness) if ready else t.c.payee_id.not_in(readiness)
            )
        return [self._read(row) for row in self._uow.all(stmt)]

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
        claimed = [attrs.evolve(op, claimed_until=lease_until) for op in due]
        for op in claimed:
            self._uow.remember(t, op.id, op)
        return claimed

    def _pending(self) -> sa.ColumnElement[bool]:
        t = self._t.operations
        awaiting_payer = sa.and_(
            t.c.kind == OperationKind.FUNDING.value, t.c.gateway_ref.is_not(None)
        )
        return sa.and_(t.c.status == OperationStatus.PENDING.value, sa.not_(awaiting_payer))

    def oldest_pending(self, *, limit: int = 1) -> list[Operation]:
        t = self._t.operations
        stmt = sa.select(t).where(self._pending()).order_by(t.c.created_at, t.c.id).limit(limit)
        return [self._read(row) for row in self._uow.all(stmt)]

    def count_pending(self) -> int:
        t = self._t.operations
        rows = self._uow.all(
            sa.select(sa.func.count().label("n")).select_from(t).where(self._pending())
        )
        return int(rows[0]["n"])


class _Disputes(_Repository):
    def get(self, dispute_id: str) -> Dispute | None:
        row = self._uow.first(self._sql.dispute, {"id": dispute_id})
        return None if row is None else m.dispute_from(row)

    def save(self, dispute: Dispute) -> None:
        self._uow.run(self._sql.save_dispute, m.dispute_row(dispute))

    def for_escrow(self, escrow_id: str) -> list[Dispute]:
        rows = self._uow.all(self._sql.disputes_of_escrow, {"escrow_id": escrow_id})
        return [m.dispute_from(row) for row in rows]


class _Payees(_Repository):
    def get(self, payee_id: str, *, for_update: bool = False) -> Payee | None:
        stmt = self._sql.payee_locked if for_update else self._sql.payee
        row = self._uow.first_locking(stmt, {"id": payee_id}, for_update, "payee", payee_id)
        return None if row is None else m.payee_from(row)

    def by_account(self, account_ref: str) -> Payee | None:
        row = self._uow.first(self._sql.payee_by_account, {"account_ref": account_ref})
        return None if row is None else m.payee_from(row)

    def save(self, payee: Payee) -> None:
        other = self.by_account(payee.account_ref)
        if other is not None and other.id != payee.id:
            raise refused(
                f"account {payee.account_ref} already belongs to payee {other.id}",
                constraint="payees_account_ref",
            )
        self._uow.run(self._sql.save_payee, m.payee_row(payee))

    def waited_for(self, *, updated_before: datetime, limit: int) -> list[Payee]:
        payees, ops = self._t.payees, self._t.operations
        waited = sa.select(ops.c.payee_id).where(
            ops.c.status == OperationStatus.AWAITING_PAYEE.value,
            ops.c.kind == OperationKind.RELEASE.value,
        )
        stmt = (
            sa.select(payees)
            .where(
                payees.c.ready.is_(False),
                sa.or_(payees.c.updated_at.is_(None), payees.c.updated_at <= updated_before),
                payees.c.id.in_(waited),
            )
            .order_by(payees.c.updated_at.asc().nulls_first(), payees.c.id)
            .limit(limit)
        )
        return [m.payee_from(row) for row in self._uow.all(stmt)]


class _Ledger(_Repository):
    def add(self, entry: JournalEntry) -> None:
        row = self._uow.first(self._sql.add_entry, m.entry_row(entry))
        if row is None:
            raise refused(
                f"ledger entry {entry.kind} {entry.ref} is already booked",
                constraint="ledger_entries_kind_ref",
            )
        if entry.postings:
            self._uow.run(self._sql.add_postings, m.posting_rows(row["seq"], entry.postings))

    def exists(self, kind: str, ref: str) -> bool:
        return self._uow.first(self._sql.entry_exists, {"kind": kind, "ref": ref}) is not None

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
        self._uow.run(self._sql.add_audit, m.audit_row(record))

    def for_escrow(self, escrow_id: str) -> list[AuditRecord]:
        t = self._t.audit
        stmt = sa.select(t).where(t.c.escrow_id == escrow_id).order_by(t.c.seq)
        return [m.audit_from(row) for row in self._uow.all(stmt)]


class _Events(_Repository):
    def add(self, event: DomainEvent) -> DomainEvent:
        self._uow.lock_event_log()
        row = self._uow.first(self._sql.add_event, m.event_row(event))
        assert row is not None
        return attrs.evolve(event, seq=int(row["seq"]))

    def after(self, cursor: int, *, limit: int) -> list[DomainEvent]:
        t = self._t.domain_events
        stmt = sa.select(t).where(t.c.seq > cursor).order_by(t.c.seq).limit(limit)
        return [m.event_from(row) for row in self._uow.all(stmt)]


class _WebhookEvents(_Repository):
    def get(self, event_id: str, *, for_update: bool = False) -> WebhookEventRecord | None:
        stmt = self._sql.webhook_event_locked if for_update else self._sql.webhook_event
        row = self._uow.first_locking(stmt, {"id": event_id}, for_update, "webhook_event", event_id)
        return None if row is None else m.webhook_from(row)

    def save(self, record: WebhookEventRecord) -> None:
        self._uow.run(self._sql.save_webhook_event, m.webhook_row(record))

    def failed(self, *, limit: int) -> list[WebhookEventRecord]:
        t = self._t.webhook_events
        stmt = (
            sa.select(t)
            .where(t.c.status == WebhookStatus.FAILED.value)
            .order_by(t.c.received_at, t.c.id)
            .limit(limit)
        )
        return [m.webhook_from(row) for row in self._uow.all(stmt)]

    def prune(self, *, before: datetime) -> int:
        t = self._t.webhook_events
        kept = (WebhookStatus.PROCESSED.value, WebhookStatus.IGNORED.value)
        stmt = sa.delete(t).where(t.c.status.in_(kept), t.c.received_at < before)
        return self._uow.run(stmt)


class _Idempotency(_Repository):
    def get(self, actor_id: str, key: str, *, for_update: bool = False) -> IdempotencyRecord | None:
        stmt = self._sql.idempotency_locked if for_update else self._sql.idempotency
        params = {"actor_id": actor_id, "key": key}
        row = self._uow.first_locking(stmt, params, for_update, "idempotency", actor_id, key)
        return None if row is None else m.idempotency_from(row)

    def save(self, record: IdempotencyRecord) -> None:
        self._uow.run(self._sql.save_idempotency, m.idempotency_row(record))

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
        self.statements = store._statements
        self._conn: sa.Connection | None = None
        self._entered = False
        self._events_locked = False
        # Escrows and operations as this transaction last read or wrote them (a domain value,
        # or the row written), so an UPDATE sets only the columns that change.
        self._known: dict[tuple[str, str], Any] = {}
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
        self._known.clear()

    def _release(self, *, rollback: bool) -> None:
        conn, self._conn = self._conn, None
        self._known.clear()
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

    def all(
        self, stmt: sa.Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[RowMapping]:
        """Run a statement and return every row."""
        with self._translating():
            return self._connection().execute(stmt, params).mappings().all()

    def first(
        self, stmt: sa.Executable, params: Mapping[str, Any] | None = None
    ) -> RowMapping | None:
        """Run a statement and return its first row, or None."""
        with self._translating():
            return self._connection().execute(stmt, params).mappings().first()

    def run(
        self,
        stmt: sa.Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Run a statement (once per parameter set when given many) and return the row count."""
        with self._translating():
            return int(self._connection().execute(stmt, params).rowcount)

    def remember(self, table: sa.Table, key: str, value: Any) -> None:
        """Note a row as this transaction read it (a domain value) or wrote it (its row)."""
        self._known[table.name, key] = value

    def update(
        self,
        table: sa.Table,
        key: str,
        row: dict[str, Any],
        to_row: Callable[[Any], dict[str, Any]],
        *,
        guard: str | None = None,
    ) -> int:
        """UPDATE the row `key` to `row`; return the row count.

        With `guard` (a column name), a row this transaction read is written only while that
        column still holds the value read (0 rows otherwise).

        Only the columns that differ from the row as this transaction last read or wrote it
        are set (every column if it did neither): the others already hold those values, or,
        after a read without a lock, whatever another transaction wrote since, which a stale
        value must not overwrite. An escrow's `version` is bumped even when nothing else
        changed.
        """
        known = self._known.get((table.name, key))
        before = None if known is None else known if isinstance(known, dict) else to_row(known)
        columns = tuple(
            name
            for name, value in row.items()
            if name not in _NEVER_SET and (before is None or before.get(name) != value)
        )
        if not columns and table is not self.tables.escrows:
            return 1  # nothing changed in a row this transaction has seen: it exists
        params = {name: row[name] for name in columns}
        params[KEY] = key
        guarded = False
        if guard is not None and before is not None and guard in before:
            guarded = True
            params[STATUS] = before[guard]
        count = self.run(self.statements.update(table, columns, guarded=guarded), params)
        if count:
            self._known[table.name, key] = row
        return count

    def first_locking(
        self, stmt: sa.Select[Any], params: Mapping[str, Any], for_update: bool, *key: str
    ) -> RowMapping | None:
        """Read one row; `stmt` locks it when `for_update`, and so does its key on PostgreSQL.

        The key lock serialises callers of one key even while its row does not exist yet (an
        idempotency key's or a webhook event's first use, the usual case), which FOR UPDATE
        alone cannot: the second caller waits until the first commits, and its read, a new
        statement at READ COMMITTED, then sees the first's row. Locking before the first read
        saves a statement when the row is new (lock, read; not read, lock, read again) and
        costs one when it exists.
        """
        if for_update and self._store.backend == "postgresql":
            self.advisory_lock(*key)
        return self.first(stmt, params)

    def lock_key(self, *key: str) -> None:
        """Serialise transactions on `key` until this one ends (SQLite's writers already are)."""
        if self._store.backend == "postgresql":
            self.advisory_lock(*key)

    def advisory_lock(self, *key: str) -> None:
        """Take a PostgreSQL advisory lock held until this transaction ends."""
        self.first(self.statements.advisory_lock, {"lock": advisory_key(self._store.schema, *key)})

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
        self._statements = Statements(self.tables, postgresql=self.backend == "postgresql")
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
        _migrate.upgrade_engine(self._prepared, self.tables, schema=self.schema)

    def current_revision(self) -> str | None:
        """The applied migration revision, or None before the first `migrate()`."""
        return _migrate.current_revision(self.engine, self.tables)

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
