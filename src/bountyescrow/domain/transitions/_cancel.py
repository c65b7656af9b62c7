"""Cancel transitions: cancelling an escrow that has not been paid."""

from __future__ import annotations

from datetime import datetime

import attrs

from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import CancelPayment
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.transitions._common import (
    Outcome,
    _event,
    _new_op,
    _settle,
    fail_operation,
)
from bountyescrow.errors import InvalidTransitionError


def start_cancel(escrow: Escrow, *, op_id: str, actor_id: str, now: datetime) -> Outcome:
    """Record the intent to cancel an escrow that has not been paid."""
    if escrow.funded or escrow.cancelled or escrow.payment_status in ("succeeded", "processing"):
        raise InvalidTransitionError(
            f"cannot cancel escrow {escrow.id}: it is {escrow.status.value}"
            + (" (payment processing)" if escrow.payment_status == "processing" else "")
            + "; only an escrow awaiting funding can be cancelled, refund it instead",
            current=escrow.status.value,
            attempted="cancel",
        )
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.CANCEL,
        gross=escrow.amount,
        actor_id=actor_id,
        now=now,
        request=CancelPayment(payment_ref=escrow.payment_ref) if escrow.payment_ref else None,
    )
    return Outcome(
        escrow=escrow, operations=(op,), events=(_event("operation.created", escrow, op),)
    )


def complete_cancel(
    escrow: Escrow, cancel: Operation, funding: Operation | None, *, now: datetime
) -> Outcome:
    """The payment is cancelled (or was never created): the escrow is cancelled."""
    if escrow.funded:
        return fail_operation(
            escrow, cancel, "the payment succeeded before it was cancelled", now=now
        )
    if not cancel.status.open:
        return Outcome(escrow=escrow)
    operations = [_settle(cancel, now, OperationStatus.SUCCEEDED, gateway_ref=escrow.payment_ref)]
    if funding is not None and funding.status.open:
        operations.append(
            _settle(funding, now, OperationStatus.CANCELLED, gateway_status="canceled")
        )
    if escrow.cancelled:
        # Cancelled already (a Dashboard cancel reported first, or another cancel): the
        # escrow was announced cancelled once; this operation only records its own end.
        return Outcome(
            escrow=escrow,
            operations=tuple(operations),
            events=(_event("operation.succeeded", escrow, operations[0]),),
        )
    escrow = attrs.evolve(escrow, cancelled=True, payment_status="canceled")
    return Outcome(
        escrow=escrow,
        operations=tuple(operations),
        events=(_event("escrow.cancelled", escrow, operations[0]),),
    )
