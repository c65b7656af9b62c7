"""The storage port: a unit of work holding every repository.

One unit of work is one short database transaction. Everything a change writes (escrow,
operations, ledger entries, audit record, domain events, idempotency record, processed
webhook id) goes through the same unit of work, so it commits or rolls back as one.
The unit of work rolls back unless `commit()` was called.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import AuditRecord, IdempotencyRecord, WebhookEventRecord


class EscrowRepository(Protocol):
    """Escrows by id. `for_update=True` locks the row until the unit of work ends."""

    def get(self, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
        """Return the escrow, or None."""
        ...

    def add(self, escrow: Escrow) -> None:
        """Insert a new escrow."""
        ...

    def save(self, escrow: Escrow) -> None:
        """Update an escrow read in this unit of work."""
        ...

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        """Escrows matching the given ids, oldest first."""
        ...

    def lock_bounty(self, bounty_id: str, poster_id: str) -> None:
        """Hold back other units of work that lock this (bounty, poster) until this one ends.

        `open_escrow` takes it before looking for an open escrow of the pair, so two
        concurrent opens cannot both find none and both insert one. It works while no row
        exists yet (an advisory lock on PostgreSQL; stores whose units of work already run
        one at a time have nothing to do).
        """
        ...

    def ids(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        """Escrow ids in order, for paging through all escrows."""
        ...

    def held_total(self, currency: str) -> Money:
        """The sum of `held` over all escrows in `currency`."""
        ...


class OperationRepository(Protocol):
    """Operations by id, escrow and gateway object."""

    def get(self, operation_id: str, *, for_update: bool = False) -> Operation | None:
        """Return the operation, or None."""
        ...

    def add(self, operation: Operation) -> None:
        """Insert a new operation. (kind, gateway_ref) is unique when gateway_ref is set."""
        ...

    def save(self, operation: Operation) -> None:
        """Update an operation."""
        ...

    def for_escrow(self, escrow_id: str) -> list[Operation]:
        """The escrow's operations, oldest first."""
        ...

    def by_gateway_ref(self, kind: OperationKind, gateway_ref: str) -> Operation | None:
        """The operation of `kind` that recorded this gateway object, if any."""
        ...

    def awaiting_payee(
        self, payee_id: str | None = None, *, ready: bool | None = None, limit: int = 1000
    ) -> list[Operation]:
        """Releases waiting for a payee's account to become ready (any payee when None).

        `ready` keeps only releases whose payee's `ready` flag has that value (so a backstop
        looking for sendable releases is not starved by thousands still waiting). Ordered by
        escrow, then oldest first.
        """
        ...

    def claim_due(self, *, now: datetime, lease_until: datetime, limit: int) -> list[Operation]:
        """Claim pending operations due for another attempt and lease them to the caller.

        Due: status pending, lease (`claimed_until`) absent or expired, `next_attempt_at`
        absent or passed. Claimed rows get `claimed_until = lease_until`; rows another
        transaction holds are skipped (SKIP LOCKED), so instances never claim the same row.
        """
        ...

    def oldest_pending(self, *, limit: int = 1) -> list[Operation]:
        """Operations pending on the library or the gateway, oldest (`created_at`) first.

        Pending: status pending, except fundings whose payment exists (those wait for the
        payer, maybe for good). Releases awaiting a payee are not pending. Ties by id.
        """
        ...

    def count_pending(self) -> int:
        """How many operations `oldest_pending` would list without a limit."""
        ...


class DisputeRepository(Protocol):
    """Disputes by gateway id."""

    def get(self, dispute_id: str) -> Dispute | None:
        """Return the dispute, or None."""
        ...

    def save(self, dispute: Dispute) -> None:
        """Insert or update a dispute."""
        ...

    def for_escrow(self, escrow_id: str) -> list[Dispute]:
        """The escrow's disputes, oldest first."""
        ...


class PayeeRepository(Protocol):
    """Payees by id and by connected account."""

    def get(self, payee_id: str, *, for_update: bool = False) -> Payee | None:
        """Return the payee, or None."""
        ...

    def by_account(self, account_ref: str) -> Payee | None:
        """The payee owning this connected account, or None."""
        ...

    def waited_for(self, *, updated_before: datetime, limit: int) -> list[Payee]:
        """Payees not ready that releases wait for, last updated at or before `updated_before`.

        Least recently updated first, so that asking the gateway about them in turns reaches
        every one however many wait.
        """
        ...

    def save(self, payee: Payee) -> None:
        """Insert or update a payee."""
        ...


class LedgerRepository(Protocol):
    """Append-only journal entries; at most one per (kind, ref)."""

    def add(self, entry: JournalEntry) -> None:
        """Append an entry (stamped with `created_at`); the store assigns `seq`."""
        ...

    def exists(self, kind: str, ref: str) -> bool:
        """True when an entry of `kind` for `ref` is already booked."""
        ...

    def for_escrow(self, escrow_id: str) -> list[JournalEntry]:
        """The escrow's entries in booking order."""
        ...


class AuditRepository(Protocol):
    """Append-only audit trail."""

    def add(self, record: AuditRecord) -> None:
        """Append a record."""
        ...

    def for_escrow(self, escrow_id: str) -> list[AuditRecord]:
        """The escrow's audit records in order."""
        ...


class EventRepository(Protocol):
    """The domain-event outbox, in commit order."""

    def add(self, event: DomainEvent) -> DomainEvent:
        """Append an event and return it as stored, with the `seq` the store assigned.

        `seq` increases in commit order (gaps are allowed), so readers page with it.
        """
        ...

    def after(self, cursor: int, *, limit: int) -> list[DomainEvent]:
        """Events with `seq > cursor`, oldest first."""
        ...


class WebhookEventRepository(Protocol):
    """The log of gateway events seen, by event id."""

    def get(self, event_id: str, *, for_update: bool = False) -> WebhookEventRecord | None:
        """Return the record, or None."""
        ...

    def save(self, record: WebhookEventRecord) -> None:
        """Insert or update the record."""
        ...

    def failed(self, *, limit: int) -> list[WebhookEventRecord]:
        """Records whose processing failed (to be replayed), oldest first."""
        ...

    def prune(self, *, before: datetime) -> int:
        """Delete processed and ignored records received before `before`; return how many."""
        ...


class IdempotencyStore(Protocol):
    """Idempotency records for host calls, unique per (actor, key)."""

    def get(self, actor_id: str, key: str, *, for_update: bool = False) -> IdempotencyRecord | None:
        """Return the record, or None."""
        ...

    def save(self, record: IdempotencyRecord) -> None:
        """Insert or update the record."""
        ...

    def prune(self, *, now: datetime) -> int:
        """Delete records whose `expires_at` has passed; return how many."""
        ...


class UnitOfWork(Protocol):
    """One short transaction over all repositories. Rolls back unless committed."""

    @property
    def escrows(self) -> EscrowRepository:
        """The escrows repository of this unit of work."""
        ...

    @property
    def operations(self) -> OperationRepository:
        """The operations repository of this unit of work."""
        ...

    @property
    def disputes(self) -> DisputeRepository:
        """The disputes repository of this unit of work."""
        ...

    @property
    def payees(self) -> PayeeRepository:
        """The payees repository of this unit of work."""
        ...

    @property
    def ledger(self) -> LedgerRepository:
        """The ledger repository of this unit of work."""
        ...

    @property
    def audit(self) -> AuditRepository:
        """The audit repository of this unit of work."""
        ...

    @property
    def events(self) -> EventRepository:
        """The events repository of this unit of work."""
        ...

    @property
    def webhook_events(self) -> WebhookEventRepository:
        """The webhook events repository of this unit of work."""
        ...

    @property
    def idempotency(self) -> IdempotencyStore:
        """The idempotency repository of this unit of work."""
        ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Make every change of this unit of work durable, atomically."""
        ...


class EscrowStore(Protocol):
    """Where the library keeps its state (in memory, SQLite, PostgreSQL...)."""

    def unit_of_work(self) -> UnitOfWork:
        """Begin a unit of work (use it as a context manager)."""
        ...


__all__: Sequence[str] = (
    "AuditRepository",
    "DisputeRepository",
    "EscrowRepository",
    "EscrowStore",
    "EventRepository",
    "IdempotencyStore",
    "LedgerRepository",
    "OperationRepository",
    "PayeeRepository",
    "UnitOfWork",
    "WebhookEventRepository",
)
