"""`InMemoryStore`: a real, thread-safe store kept in process memory.

Each unit of work takes one lock for its whole (short) life and works on a copy of the
state; `commit()` swaps the copy in. So a unit of work that is not committed leaves no trace,
and two units of work never interleave: the same guarantees `SELECT ... FOR UPDATE` gives
the SQL store, without its concurrency.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime
from types import TracebackType

import attrs

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


def _refused(message: str, constraint: str | None) -> StorageError:
    """A write the store refuses, as the SQL store does: not retryable, constraint named."""
    error = StorageError(message, constraint=constraint) if constraint else StorageError(message)
    error.retryable = False
    return error


@attrs.define
class _State:
    escrows: dict[str, Escrow] = attrs.Factory(dict)
    operations: dict[str, Operation] = attrs.Factory(dict)
    disputes: dict[str, Dispute] = attrs.Factory(dict)
    payees: dict[str, Payee] = attrs.Factory(dict)
    entries: list[JournalEntry] = attrs.Factory(list)
    audit: list[AuditRecord] = attrs.Factory(list)
    events: list[DomainEvent] = attrs.Factory(list)
    webhook_events: dict[str, WebhookEventRecord] = attrs.Factory(dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = attrs.Factory(dict)

    def copy(self) -> _State:
        # Values are frozen, so copying the containers is enough.
        return _State(**{f.name: copy.copy(getattr(self, f.name)) for f in attrs.fields(_State)})


class _Escrows:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
        return self._s.escrows.get(escrow_id)

    def add(self, escrow: Escrow) -> None:
        if escrow.id in self._s.escrows:
            raise _refused(f"escrow {escrow.id} already exists", "escrows_pkey")
        self._s.escrows[escrow.id] = attrs.evolve(escrow, client_secret=None)

    def save(self, escrow: Escrow) -> None:
        current = self._s.escrows.get(escrow.id)
        if current is None:
            raise _refused(f"escrow {escrow.id} does not exist", None)
        self._s.escrows[escrow.id] = attrs.evolve(
            escrow, version=current.version + 1, client_secret=None
        )

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        found = [
            e
            for e in self._s.escrows.values()
            if (bounty_id is None or e.bounty_id == bounty_id)
            and (poster_id is None or e.poster_id == poster_id)
        ]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    def lock_bounty(self, bounty_id: str, poster_id: str) -> None:
        pass  # units of work already run one at a time (one lock for each)

    def ids(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        ids = sorted(i for i in self._s.escrows if after is None or i > after)
        return ids[:limit]

    def held_total(self, currency: str) -> Money:
        total = sum(e.held.amount for e in self._s.escrows.values() if e.currency == currency)
        return Money(total, currency)


class _Operations:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, operation_id: str, *, for_update: bool = False) -> Operation | None:
        return self._s.operations.get(operation_id)

    def _check_unique(self, op: Operation) -> None:
        if op.gateway_ref is None:
            return
        other = self.by_gateway_ref(op.kind, op.gateway_ref)
        if other is not None and other.id != op.id:
            raise _refused(
                f"{op.kind.value} {op.gateway_ref} is already recorded by {other.id}",
                "operations_kind_gateway_ref",
            )

    def add(self, operation: Operation) -> None:
        if operation.id in self._s.operations:
            raise _refused(f"operation {operation.id} already exists", "operations_pkey")
        self._check_unique(operation)
        self._s.operations[operation.id] = operation

    def save(self, operation: Operation) -> None:
        if operation.id not in self._s.operations:
            raise _refused(f"operation {operation.id} does not exist", None)
        self._check_unique(operation)
        self._s.operations[operation.id] = operation

    def for_escrow(self, escrow_id: str) -> list[Operation]:
        ops = [op for op in self._s.operations.values() if op.escrow_id == escrow_id]
        return sorted(ops, key=lambda op: (op.created_at, op.id))

    def by_gateway_ref(self, kind: OperationKind, gateway_ref: str) -> Operation | None:
        for op in self._s.operations.values():
            if op.kind is kind and op.gateway_ref == gateway_ref:
                return op
        return None

    def awaiting_payee(
        self, payee_id: str | None = None, *, ready: bool | None = None, limit: int = 1000
    ) -> list[Operation]:
        def payee_ready(op: Operation) -> bool:
            payee = self._s.payees.get(op.payee_id or "")
            return payee is not None and payee.ready

        ops = [
            op
            for op in self._s.operations.values()
            if (payee_id is None or op.payee_id == payee_id)
            and op.kind is OperationKind.RELEASE
            and op.status is OperationStatus.AWAITING_PAYEE
            and (ready is None or payee_ready(op) == ready)
        ]
        return sorted(ops, key=lambda op: (op.escrow_id, op.created_at, op.id))[:limit]

    def claim_due(self, *, now: datetime, lease_until: datetime, limit: int) -> list[Operation]:
        due = sorted(
            (
                op
                for op in self._s.operations.values()
                if op.status is OperationStatus.PENDING
                and (op.claimed_until is None or op.claimed_until <= now)
                and (op.next_attempt_at is None or op.next_attempt_at <= now)
            ),
            key=lambda op: (op.created_at, op.id),
        )[:limit]
        claimed = [attrs.evolve(op, claimed_until=lease_until) for op in due]
        for op in claimed:
            self._s.operations[op.id] = op
        return claimed

    def _pending(self) -> list[Operation]:
        return [
            op
            for op in self._s.operations.values()
            if op.status is OperationStatus.PENDING
            and not (op.kind is OperationKind.FUNDING and op.gateway_ref is not None)
        ]

    def oldest_pending(self, *, limit: int = 1) -> list[Operation]:
        return sorted(self._pending(), key=lambda op: (op.created_at, op.id))[:limit]

    def count_pending(self) -> int:
        return len(self._pending())


class _Disputes:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, dispute_id: str) -> Dispute | None:
        return self._s.disputes.get(dispute_id)

    def save(self, dispute: Dispute) -> None:
        self._s.disputes[dispute.id] = dispute

    def for_escrow(self, escrow_id: str) -> list[Dispute]:
        found = [d for d in self._s.disputes.values() if d.escrow_id == escrow_id]
        return sorted(found, key=lambda d: (d.created_at, d.id))


class _Payees:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, payee_id: str, *, for_update: bool = False) -> Payee | None:
        return self._s.payees.get(payee_id)

    def by_account(self, account_ref: str) -> Payee | None:
        for payee in self._s.payees.values():
            if payee.account_ref == account_ref:
                return payee
        return None

    def save(self, payee: Payee) -> None:
        self._s.payees[payee.id] = payee

    def waited_for(self, *, updated_before: datetime, limit: int) -> list[Payee]:
        waited = {
            op.payee_id
            for op in self._s.operations.values()
            if op.kind is OperationKind.RELEASE and op.status is OperationStatus.AWAITING_PAYEE
        }
        found = [
            p
            for p in self._s.payees.values()
            if p.id in waited
            and not p.ready
            and (p.updated_at is None or p.updated_at <= updated_before)
        ]
        return sorted(found, key=lambda p: (p.updated_at or datetime.min, p.id))[:limit]


class _Ledger:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add(self, entry: JournalEntry) -> None:
        if self.exists(entry.kind, entry.ref):
            raise _refused(
                f"ledger entry {entry.kind} {entry.ref} is already booked",
                "ledger_entries_kind_ref",
            )
        self._s.entries.append(attrs.evolve(entry, seq=len(self._s.entries) + 1))

    def exists(self, kind: str, ref: str) -> bool:
        return any(e.kind == kind and e.ref == ref for e in self._s.entries)

    def for_escrow(self, escrow_id: str) -> list[JournalEntry]:
        return [e for e in self._s.entries if e.escrow_id == escrow_id]


class _Audit:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add(self, record: AuditRecord) -> None:
        self._s.audit.append(attrs.evolve(record, seq=len(self._s.audit) + 1))

    def for_escrow(self, escrow_id: str) -> list[AuditRecord]:
        return [r for r in self._s.audit if r.escrow_id == escrow_id]


class _Events:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add(self, event: DomainEvent) -> DomainEvent:
        stored = attrs.evolve(event, seq=len(self._s.events) + 1)
        self._s.events.append(stored)
        return stored

    def after(self, cursor: int, *, limit: int) -> list[DomainEvent]:
        return self._s.events[cursor : cursor + limit]


class _WebhookEvents:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, event_id: str, *, for_update: bool = False) -> WebhookEventRecord | None:
        return self._s.webhook_events.get(event_id)

    def save(self, record: WebhookEventRecord) -> None:
        self._s.webhook_events[record.id] = record

    def failed(self, *, limit: int) -> list[WebhookEventRecord]:
        found = [r for r in self._s.webhook_events.values() if r.status is WebhookStatus.FAILED]
        return sorted(found, key=lambda r: (r.received_at, r.id))[:limit]

    def prune(self, *, before: datetime) -> int:
        old = [
            r.id
            for r in self._s.webhook_events.values()
            if r.status is not WebhookStatus.FAILED and r.received_at < before
        ]
        for event_id in old:
            del self._s.webhook_events[event_id]
        return len(old)


class _Idempotency:
    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, actor_id: str, key: str, *, for_update: bool = False) -> IdempotencyRecord | None:
        return self._s.idempotency.get((actor_id, key))

    def save(self, record: IdempotencyRecord) -> None:
        self._s.idempotency[(record.actor_id, record.key)] = record

    def prune(self, *, now: datetime) -> int:
        old = [k for k, r in self._s.idempotency.items() if r.expires_at <= now]
        for k in old:
            del self._s.idempotency[k]
        return len(old)


class _UnitOfWork:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self._bind(_State())

    def _bind(self, state: _State) -> None:
        self._state = state
        self.escrows = _Escrows(state)
        self.operations = _Operations(state)
        self.disputes = _Disputes(state)
        self.payees = _Payees(state)
        self.ledger = _Ledger(state)
        self.audit = _Audit(state)
        self.events = _Events(state)
        self.webhook_events = _WebhookEvents(state)
        self.idempotency = _Idempotency(state)

    def __enter__(self) -> _UnitOfWork:
        local = self._store._local
        if getattr(local, "open", False):
            # The SQL store refuses this too: a nested unit of work's commit would be lost
            # when the outer one commits its older copy.
            raise _refused("a unit of work is already open in this thread", None)
        self._store._lock.acquire()
        local.open = True
        self._bind(self._store._state.copy())
        return self

    def commit(self) -> None:
        self._store._state = self._state
        self._store.commits += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Without commit() the copy is dropped: that is the rollback.
        self._store._local.open = False
        self._store._lock.release()


class InMemoryStore:
    """A complete `EscrowStore` in process memory, for tests and quick starts.

    Thread-safe: units of work run one at a time. `commits` counts committed units of work,
    which tests use to see that a refused command wrote nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._state = _State()
        self.commits = 0

    def unit_of_work(self) -> _UnitOfWork:
        """Begin a unit of work."""
        return _UnitOfWork(self)
