"""Pieces every lifecycle area of the transitions uses.

The `Outcome` a transition returns; building domain events, operations and gateway
metadata; amount and state checks; the escrow's debt for money the gateway no longer
holds (`SHORTFALL_SETTLED`, paying it, withdrawing from `held`); and ending an open
operation (`fail_operation`). The lifecycle modules import from here, never the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.gateway_objects import (
    META_BOUNTY,
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
)
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import (
    RESERVING_KINDS,
    Operation,
    OperationKind,
    OperationStatus,
)
from bountyescrow.errors import (
    EscrowFrozenError,
    InsufficientFundsError,
    InvalidTransitionError,
    ValidationError,
)

#: The actor recorded for changes the gateway reports (webhooks, outside refunds).
GATEWAY_ACTOR = "gateway:external"


@attrs.frozen
class Outcome:
    """What a transition decided: state to persist, money to book, events to publish."""

    escrow: Escrow
    operations: tuple[Operation, ...] = ()
    entries: tuple[JournalEntry, ...] = ()
    events: tuple[DomainEvent, ...] = ()
    disputes: tuple[Dispute, ...] = ()

    @property
    def changed(self) -> bool:
        """False when the transition found nothing to do."""
        return bool(self.operations or self.entries or self.events or self.disputes)


def _event(type: str, escrow: Escrow, op: Operation | None = None, **data: Any) -> DomainEvent:
    if op is not None:
        data.setdefault("kind", op.kind.value)
        data.setdefault("status", op.status.value)
        data.setdefault("amount", op.gross.amount)
    data.setdefault("currency", escrow.currency)
    return DomainEvent(
        type=type, escrow_id=escrow.id, operation_id=op.id if op else None, data=data
    )


def _metadata(escrow: Escrow, op_id: str, namespace: str | None = None) -> dict[str, str]:
    metadata = {META_ESCROW: escrow.id, META_OPERATION: op_id, META_BOUNTY: escrow.bounty_id}
    if namespace is not None:
        metadata[META_NAMESPACE] = namespace
    return metadata


def metadata_of(mapping: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (escrow id, operation id) a gateway object's metadata names, if any."""
    return mapping.get(META_ESCROW), mapping.get(META_OPERATION)


def _new_op(
    escrow: Escrow,
    *,
    op_id: str,
    kind: OperationKind,
    gross: Money,
    actor_id: str,
    now: datetime,
    status: OperationStatus = OperationStatus.PENDING,
    fee: Money | None = None,
    net: Money | None = None,
    **extra: Any,
) -> Operation:
    zero = Money.zero(escrow.currency)
    return Operation(
        id=op_id,
        escrow_id=escrow.id,
        kind=kind,
        status=status,
        gross=gross,
        fee=fee if fee is not None else zero,
        net=net if net is not None else gross,
        actor_id=actor_id,
        created_at=now,
        updated_at=now,
        request_id=escrow.request_id,
        **extra,
    )


def _settle(op: Operation, now: datetime, status: OperationStatus, **changes: Any) -> Operation:
    return attrs.evolve(op, status=status, updated_at=now, claimed_until=None, **changes)


def check_amount(amount: Money, escrow: Escrow, *, what: str) -> None:
    """Refuse amounts of the wrong currency, zero or negative."""
    if amount.currency != escrow.currency:
        raise ValidationError(
            f"{what} is in {amount.currency} but escrow {escrow.id} holds {escrow.currency}"
        )
    if amount.amount <= 0:
        raise ValidationError(f"{what} must be positive, got {amount}")


def _require_funded(escrow: Escrow, attempted: str) -> None:
    if not escrow.funded:
        raise InvalidTransitionError(
            f"cannot {attempted} escrow {escrow.id}: it is {escrow.status.value}, not funded",
            current=escrow.status.value,
            attempted=attempted,
        )


def _require_not_frozen(escrow: Escrow, attempted: str) -> None:
    if escrow.frozen:
        raise EscrowFrozenError(
            f"cannot {attempted} escrow {escrow.id}: it is frozen by an open dispute or fraud "
            "warning; operations already started will finish",
            escrow_id=escrow.id,
        )


def _take(escrow: Escrow, amount: Money | None, attempted: str) -> Money:
    """The amount asked for, or everything available when None, checked against available."""
    available = escrow.available
    if amount is None:
        if not available.is_positive:
            raise InsufficientFundsError(
                f"cannot {attempted}: nothing is available in escrow {escrow.id}",
                available=available,
                requested=None,
            )
        return available
    check_amount(amount, escrow, what=f"the {attempted} amount")
    if amount > available:
        raise InsufficientFundsError(
            f"cannot {attempted} {amount}: only {available} is available in escrow {escrow.id}",
            available=available,
            requested=amount,
        )
    return amount


# --- money the gateway no longer holds --------------------------------------------------------

#: The kind of the journal entry that pays an escrow's debt (`shortfall`) from its held money.
SHORTFALL_SETTLED = "shortfall_settled"


def _pay_debt(outcome: Outcome, cause: str) -> Outcome:
    """Pay the escrow's debt first from money that came into `held` or was given back.

    Every transition that adds to `held` or ends a reservation ends with this, so the escrow
    never shows as available money the gateway no longer holds: while `shortfall` is
    positive, `available` is zero. `cause` names what freed the money (an operation and its
    new status, a gateway object); with the escrow id it makes the entry's (kind, ref) unique.
    """
    escrow, entries, events = _debt_payment(outcome.escrow, cause)
    if not entries:
        return outcome
    return attrs.evolve(
        outcome,
        escrow=escrow,
        entries=(*outcome.entries, *entries),
        events=(*outcome.events, *events),
    )


def _debt_payment(
    escrow: Escrow, cause: str
) -> tuple[Escrow, tuple[JournalEntry, ...], tuple[DomainEvent, ...]]:
    """The escrow with its debt paid from what is available, and the entry and event saying so."""
    available = escrow.available
    if not escrow.shortfall.is_positive or not available.is_positive:
        return escrow, (), ()
    paid = escrow.shortfall.min(available)
    escrow = attrs.evolve(escrow, held=escrow.held - paid, shortfall=escrow.shortfall - paid)
    entry = JournalEntry.of(
        escrow.id,
        SHORTFALL_SETTLED,
        f"{escrow.id}:{cause}",
        (ledger.escrow_account(escrow.id), -paid),
        (ledger.PLATFORM_SHORTFALL, paid),
    )
    event = _event(
        "escrow.shortfall_settled",
        escrow,
        amount=paid.amount,
        shortfall=escrow.shortfall.amount,
        cause=cause,
    )
    return escrow, (entry,), (event,)


@attrs.frozen
class _Withdrawal:
    """Where money that left outside the library was taken from."""

    escrow: Escrow
    #: Taken from `held` (available money and the reservations cut).
    from_held: Money
    #: Not covered by `held`: the escrow's new debt.
    debt: Money
    #: Releases that had not been sent, failed because their money is gone.
    cut: tuple[Operation, ...]
    events: tuple[DomainEvent, ...]


def _never_sent(op: Operation) -> bool:
    """An open operation whose money has certainly not left: a release waiting for its payee,
    or an operation whose last key generation was refused and whose next one has not gone
    out (`sent_at` is None, and only recovery sends it, under the escrow lock)."""
    if op.kind is OperationKind.RELEASE and op.status is OperationStatus.AWAITING_PAYEE:
        return True
    return (
        op.status is OperationStatus.PENDING
        and op.kind in RESERVING_KINDS
        and op.gateway_ref is None
        and op.sent_at is None
        and op.generation > 0
    )


def _withdraw(
    escrow: Escrow,
    amount: Money,
    operations: Sequence[Operation],
    *,
    reason: str,
    now: datetime,
) -> _Withdrawal:
    """Take `amount`, which left at the gateway, from the escrow's held money.

    First what is available; then the reservations of operations certainly never sent,
    newest first, which fail with `reason`; only what is committed to operations that may be
    in flight stays reserved, and the rest becomes debt.
    """
    zero = Money.zero(escrow.currency)
    cut: list[Operation] = []
    events: list[DomainEvent] = []
    waiting = sorted(
        (op for op in operations if op.escrow_id == escrow.id and _never_sent(op)),
        key=lambda op: (op.created_at, op.id),
        reverse=True,
    )
    for op in waiting:
        if escrow.available >= amount:
            break
        outcome = _give_back(escrow, op, reason, now=now, status=OperationStatus.FAILED)
        escrow = outcome.escrow
        cut.extend(outcome.operations)
        events.extend(outcome.events)
    available = escrow.available if escrow.available.is_positive else zero
    from_held = amount.min(available)
    debt = amount - from_held
    escrow = attrs.evolve(escrow, held=escrow.held - from_held, shortfall=escrow.shortfall + debt)
    return _Withdrawal(
        escrow=escrow, from_held=from_held, debt=debt, cut=tuple(cut), events=tuple(events)
    )


# --- operations in general --------------------------------------------------------------------


def fail_operation(
    escrow: Escrow,
    op: Operation,
    error: str,
    *,
    now: datetime,
    status: OperationStatus = OperationStatus.FAILED,
) -> Outcome:
    """A definitive failure (or a cancellation): the reservation goes back to `available`.

    The escrow's debt, if any, is paid from it first.
    """
    outcome = _give_back(escrow, op, error, now=now, status=status)
    if not outcome.operations:
        return outcome
    return _pay_debt(outcome, f"{op.id}:{status.value}")


def _give_back(
    escrow: Escrow, op: Operation, error: str, *, now: datetime, status: OperationStatus
) -> Outcome:
    """End an open operation with `status`, giving its reservation back (debt not paid)."""
    if not op.status.open:
        return Outcome(escrow=escrow)
    changes: dict[str, Any] = {"reserved": escrow.reserved - op.reserves}
    if op.fixed_fee is not None and op.fixed_fee.is_positive:
        changes["fixed_fee_charged"] = False  # the fixed part is charged on the next release
    escrow = attrs.evolve(escrow, **changes)
    op = _settle(op, now, status, error=error)
    name = "operation.cancelled" if status is OperationStatus.CANCELLED else "operation.failed"
    return Outcome(escrow=escrow, operations=(op,), events=(_event(name, escrow, op, error=error),))
