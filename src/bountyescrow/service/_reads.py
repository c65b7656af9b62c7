"""Reads: escrows, operations, ledger, audit trail, events, invariants."""

from __future__ import annotations

import functools
from datetime import timedelta

from bountyescrow._alerts import alert
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.invariants import violations
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation
from bountyescrow.domain.records import (
    AuditRecord,
)
from bountyescrow.errors import (
    EscrowNotFoundError,
    OperationNotFoundError,
)
from bountyescrow.ports.policy import Actor
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._context import ServiceContext


class Reads:
    """The service's read side: escrows, operations, ledger, audit trail, events, invariants."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    # --- reads --------------------------------------------------------------------------------

    def lock_escrow_or_404(self, uow: UnitOfWork, escrow_id: str) -> Escrow:
        escrow = uow.escrows.get(escrow_id, for_update=True)
        if escrow is None:
            raise EscrowNotFoundError(f"no escrow with id {escrow_id!r}")
        return escrow

    def _get_escrow(self, escrow_id: str) -> Escrow:
        escrow = self.ctx.read(lambda uow: uow.escrows.get(escrow_id))
        if escrow is None:
            raise EscrowNotFoundError(f"no escrow with id {escrow_id!r}")
        return escrow

    def _check_read(self, actor: Actor | None, escrow: Escrow) -> None:
        if actor is None:
            return
        ops = self.ctx.read(lambda uow: uow.operations.for_escrow(escrow.id))
        decision = self.ctx.policy.decide(
            actor, "read", escrow, {"payee_ids": {op.payee_id for op in ops}}
        )
        if not decision.allowed:
            reason = decision.reason
            denied = self.ctx.tx(
                lambda uow: self.ctx.deny(uow, actor, "read", escrow.id, reason, None)
            )
            raise denied.error

    def get(self, escrow_id: str, *, actor: Actor | None = None) -> Escrow:
        """The escrow. With `actor`, the read is authorized. Raises `EscrowNotFoundError`."""
        escrow = self._get_escrow(escrow_id)
        self._check_read(actor, escrow)
        return escrow

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        """Escrows of a bounty and/or a poster, oldest first."""
        return self.ctx.read(lambda uow: uow.escrows.find(bounty_id=bounty_id, poster_id=poster_id))

    def get_operation(self, operation_id: str) -> Operation:
        """The operation. Raises `OperationNotFoundError`."""
        op = self.ctx.read(lambda uow: uow.operations.get(operation_id))
        if op is None:
            raise OperationNotFoundError(f"no operation with id {operation_id!r}")
        return op

    def operations(self, escrow_id: str, *, actor: Actor | None = None) -> list[Operation]:
        """The escrow's operations, oldest first. With `actor`, the read is authorized."""
        if actor is not None:
            self.get(escrow_id, actor=actor)
        return self.ctx.read(lambda uow: uow.operations.for_escrow(escrow_id))

    def ledger(self, escrow_id: str, *, actor: Actor | None = None) -> list[JournalEntry]:
        """The escrow's journal entries in booking order. With `actor`, the read is authorized."""
        if actor is not None:
            self.get(escrow_id, actor=actor)
        return self.ctx.read(lambda uow: uow.ledger.for_escrow(escrow_id))

    def audit_trail(self, escrow_id: str, *, actor: Actor | None = None) -> list[AuditRecord]:
        """The escrow's audit records in order. With `actor`, the read is authorized."""
        if actor is not None:
            self.get(escrow_id, actor=actor)
        return self.ctx.read(lambda uow: uow.audit.for_escrow(escrow_id))

    def disputes(self, escrow_id: str, *, actor: Actor | None = None) -> list[Dispute]:
        """The escrow's disputes. With `actor`, the read is authorized."""
        if actor is not None:
            self.get(escrow_id, actor=actor)
        return self.ctx.read(lambda uow: uow.disputes.for_escrow(escrow_id))

    def events(self, after: int = 0, *, limit: int = 100) -> list[DomainEvent]:
        """Domain events after the cursor `after` (an event's `seq`), oldest first."""
        return self.ctx.read(lambda uow: uow.events.after(after, limit=limit))

    def required_reserve(self, currency: str) -> Money:
        """How much must stay in the platform balance: everything held in `currency`."""
        return self.ctx.read(lambda uow: uow.escrows.held_total(currency))

    def nearing_max_hold(self, *, within: timedelta = timedelta(days=7)) -> list[Escrow]:
        """Escrows still holding money whose `max_hold` ends within `within`.

        Each one listed also raises the alert ``hold_nearing_limit`` (with ``escrow_id``,
        ``funded_at``, ``hold_ends_at`` and ``held``): a person must release or refund it. A
        scheduled call alerts again for as long as the escrow still holds money.
        """
        max_hold = self.ctx.settings.max_hold
        limit = self.ctx.now() - max_hold + within
        listed = [
            e
            for e in self._all_escrows()
            if e.held.is_positive and e.funded_at is not None and e.funded_at <= limit
        ]
        for escrow in listed:
            assert escrow.funded_at is not None
            ends = escrow.funded_at + max_hold
            alert(
                "hold_nearing_limit",
                "escrow %s has held %s since %s; max_hold ends %s: release or refund it",
                escrow.id,
                escrow.held,
                escrow.funded_at.isoformat(),
                ends.isoformat(),
                escrow_id=escrow.id,
                funded_at=escrow.funded_at.isoformat(),
                hold_ends_at=ends.isoformat(),
                held=str(escrow.held),
            )
        return listed

    def _all_escrows(self) -> list[Escrow]:
        found: list[Escrow] = []
        while True:
            after = found[-1].id if found else None
            page = self.ctx.read(functools.partial(self._escrow_page, after=after))
            if not page:
                return found
            found += page

    @staticmethod
    def _escrow_page(uow: UnitOfWork, after: str | None) -> list[Escrow]:
        ids = uow.escrows.ids(after=after, limit=500)
        return [e for i in ids if (e := uow.escrows.get(i)) is not None]

    def check_invariants(self) -> list[str]:
        """Check I1-I4 over every escrow; returns the violations (empty when all hold)."""
        problems: list[str] = []
        for escrow in self._all_escrows():
            ops, entries = self.ctx.read(functools.partial(self._records_of, escrow_id=escrow.id))
            problems += violations(escrow, ops, entries)
        return problems

    @staticmethod
    def _records_of(uow: UnitOfWork, escrow_id: str) -> tuple[list[Operation], list[JournalEntry]]:
        return uow.operations.for_escrow(escrow_id), uow.ledger.for_escrow(escrow_id)
