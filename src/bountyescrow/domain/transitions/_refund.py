"""Refund transitions: refunds to the poster and refunds made outside the library.

A refund reserves money, succeeds or fails at the gateway (a late failure brings the
money back), and an outside refund is adopted from `held`, the rest becoming debt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import CreateRefund, RefundSnapshot
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.transitions._common import (
    GATEWAY_ACTOR,
    Outcome,
    _event,
    _metadata,
    _new_op,
    _pay_debt,
    _require_funded,
    _require_not_frozen,
    _settle,
    _take,
    _withdraw,
    check_amount,
    fail_operation,
)
from bountyescrow.errors import InvalidTransitionError


def start_refund(
    escrow: Escrow,
    *,
    op_id: str,
    amount: Money | None,
    actor_id: str,
    now: datetime,
    reason: str | None = None,
    allow_frozen: bool = False,
    namespace: str | None = None,
) -> Outcome:
    """Reserve `amount` (or everything available) for a refund to the poster."""
    _require_funded(escrow, "refund")
    if not allow_frozen:
        _require_not_frozen(escrow, "refund")
    if escrow.payment_ref is None:
        raise InvalidTransitionError(
            f"escrow {escrow.id} has no payment to refund",
            current=escrow.status.value,
            attempted="refund",
        )
    amount = _take(escrow, amount, "refund")
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.REFUND,
        gross=amount,
        actor_id=actor_id,
        now=now,
        reason=reason,
        request=CreateRefund(
            amount=amount,
            payment_ref=escrow.payment_ref,
            metadata=_metadata(escrow, op_id, namespace),
            reason=reason
            if reason in ("duplicate", "fraudulent", "requested_by_customer")
            else None,
        ),
    )
    escrow = attrs.evolve(escrow, reserved=escrow.reserved + amount)
    return Outcome(
        escrow=escrow, operations=(op,), events=(_event("operation.created", escrow, op),)
    )


def _refund_entry(
    escrow: Escrow, op: Operation, refund_ref: str, *, undo: bool = False
) -> JournalEntry:
    """A refund leaves `held` (what it could not take is debt); a late failure brings it back.

    The money a failed refund brings back comes into `held` whole; the debt is then paid
    from it by its own entry (`_pay_debt`).
    """
    if undo:
        return JournalEntry.of(
            escrow.id,
            "refund_failed",
            refund_ref,
            (ledger.escrow_account(escrow.id), op.gross),
            (ledger.gateway_account(escrow.currency), -op.gross),
            operation_id=op.id,
        )
    shortfall = op.shortfall or Money.zero(escrow.currency)
    return JournalEntry.of(
        escrow.id,
        "refund",
        refund_ref,
        (ledger.escrow_account(escrow.id), -(op.gross - shortfall)),
        (ledger.PLATFORM_SHORTFALL, -shortfall),
        (ledger.gateway_account(escrow.currency), op.gross),
        operation_id=op.id,
    )


def apply_refund(
    escrow: Escrow, op: Operation, refund: RefundSnapshot, *, now: datetime
) -> Outcome:
    """Apply a refund's state to the operation that made (or adopted) it."""
    if refund.status == "succeeded":
        if op.status is OperationStatus.SUCCEEDED:
            return Outcome(escrow=escrow)
        if not op.status.open:
            return Outcome(escrow=escrow)  # a refund we gave up on cannot succeed later
        escrow = attrs.evolve(
            escrow,
            held=escrow.held - op.gross,
            reserved=escrow.reserved - op.gross,
            refunded=escrow.refunded + op.gross,
        )
        op = _settle(
            op, now, OperationStatus.SUCCEEDED, gateway_ref=refund.ref, gateway_status="succeeded"
        )
        return Outcome(
            escrow=escrow,
            operations=(op,),
            entries=(_refund_entry(escrow, op, refund.ref),),
            events=(_event("operation.succeeded", escrow, op, gateway_ref=refund.ref),),
        )
    if refund.status in ("failed", "canceled"):
        reason = refund.failure_reason or refund.status
        if op.status.open:
            outcome = fail_operation(escrow, op, f"refund {refund.status}: {reason}", now=now)
            failed = attrs.evolve(
                outcome.operations[0], gateway_ref=refund.ref, gateway_status=refund.status
            )
            return attrs.evolve(
                outcome,
                operations=(failed,),
                events=(*outcome.events, _event("refund.failed", escrow, failed, reason=reason)),
            )
        if op.status is not OperationStatus.SUCCEEDED:
            return Outcome(escrow=escrow)
        # Stripe reports the failure after the refund looked done: the money is back in
        # `held`, and pays the escrow's debt first.
        escrow = attrs.evolve(
            escrow, held=escrow.held + op.gross, refunded=escrow.refunded - op.gross
        )
        op = _settle(
            op,
            now,
            OperationStatus.FAILED,
            gateway_status=refund.status,
            error=f"refund {refund.status}: {reason}",
        )
        return _pay_debt(
            Outcome(
                escrow=escrow,
                operations=(op,),
                entries=(_refund_entry(escrow, op, refund.ref, undo=True),),
                events=(_event("refund.failed", escrow, op, reason=reason),),
            ),
            f"refund_failed:{refund.ref}",
        )
    # pending or requires_action: the reservation stays until Stripe decides.
    if not op.status.open or (op.gateway_ref == refund.ref and op.gateway_status == refund.status):
        return Outcome(escrow=escrow)
    op = attrs.evolve(
        op, gateway_ref=refund.ref, gateway_status=refund.status, updated_at=now, claimed_until=None
    )
    return Outcome(escrow=escrow, operations=(op,))


def adopt_external_refund(
    escrow: Escrow,
    refund: RefundSnapshot,
    *,
    op_id: str,
    now: datetime,
    operations: Sequence[Operation] = (),
) -> Outcome:
    """Adopt a refund made outside the library: `refunded` counts all of it.

    The money is taken from `held`: what is available, then the reservations of releases
    waiting for their payee (never sent: they fail); what is committed to operations that
    may be in flight, or was not booked yet, becomes the escrow's debt (`shortfall`).
    `operations` are the escrow's operations (their latest versions).
    """
    check_amount(refund.amount, escrow, what="the outside refund")
    taken = _withdraw(
        escrow,
        refund.amount,
        operations,
        reason=f"funds refunded outside bountyescrow ({refund.ref})",
        now=now,
    )
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.EXTERNAL_REFUND,
        gross=refund.amount,
        actor_id=GATEWAY_ACTOR,
        now=now,
        status=OperationStatus.SUCCEEDED,
        gateway_ref=refund.ref,
        gateway_status=refund.status,
        shortfall=taken.debt,
    )
    escrow = attrs.evolve(taken.escrow, refunded=taken.escrow.refunded + refund.amount)
    outcome = Outcome(
        escrow=escrow,
        operations=(*taken.cut, op),
        entries=(_refund_entry(escrow, op, refund.ref),),
        events=(
            *taken.events,
            _event(
                "operation.adopted",
                escrow,
                op,
                gateway_ref=refund.ref,
                shortfall=taken.debt.amount,
            ),
        ),
    )
    # A reservation cut by the refund frees money: the debt is paid from it first.
    return _pay_debt(outcome, f"{refund.ref}:adopted")
