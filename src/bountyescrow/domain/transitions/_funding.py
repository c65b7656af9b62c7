"""Funding transitions: the PaymentIntent request, its creation and its states.

A payment that succeeds is booked; money beyond the bounty amount, a second payment or a
payment for a cancelled escrow is booked and refunded at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import CreatePayment, CreateRefund, PaymentSnapshot
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
    _settle,
)
from bountyescrow.errors import ValidationError


def start_funding(
    escrow: Escrow,
    *,
    op_id: str,
    actor_id: str,
    now: datetime,
    payment_method_types: tuple[str, ...] = ("card",),
    description: str | None = None,
    receipt_email: str | None = None,
    namespace: str | None = None,
) -> Outcome:
    """Record the funding operation with the PaymentIntent request it will send.

    With `namespace`, the request's metadata names the deployment (as every request does).
    """
    request = CreatePayment(
        amount=escrow.amount,
        transfer_group=escrow.transfer_group,
        metadata=_metadata(escrow, op_id, namespace),
        payment_method_types=payment_method_types,
        description=description,
        receipt_email=receipt_email,
    )
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.FUNDING,
        gross=escrow.amount,
        actor_id=actor_id,
        now=now,
        request=request,
    )
    return Outcome(
        escrow=escrow,
        operations=(op,),
        events=(_event("escrow.opened", escrow, amount=escrow.amount.amount),),
    )


def record_payment_created(
    escrow: Escrow, op: Operation, payment: PaymentSnapshot, *, now: datetime
) -> Outcome:
    """The PaymentIntent exists: remember its id. The funding stays pending until paid."""
    if op.gateway_ref == payment.ref:
        return Outcome(escrow=escrow)
    op = attrs.evolve(
        op,
        gateway_ref=payment.ref,
        gateway_status=payment.status,
        updated_at=now,
        claimed_until=None,
    )
    escrow = attrs.evolve(escrow, payment_ref=payment.ref, payment_status=payment.status)
    return Outcome(escrow=escrow, operations=(op,))


def apply_payment(
    escrow: Escrow,
    funding: Operation | None,
    payment: PaymentSnapshot,
    *,
    now: datetime,
    new_id: Callable[[], str],
    namespace: str | None = None,
) -> Outcome:
    """Apply a PaymentIntent's state: succeeded, processing, failed or canceled.

    `funding` is the funding operation whose gateway object this is, or None for a payment
    carrying this escrow's metadata that the library did not create (a second payment).
    A refund of surplus money it creates carries `namespace` in its metadata.
    """
    if payment.amount.currency != escrow.currency:
        raise ValidationError(
            f"payment {payment.ref} is in {payment.amount.currency}, "
            f"escrow {escrow.id} in {escrow.currency}"
        )
    if funding is not None and funding.status is OperationStatus.SUCCEEDED:
        return Outcome(
            escrow=escrow
        )  # booked already; later states of a paid intent change nothing
    primary = funding is not None and payment.ref == escrow.payment_ref
    if payment.status == "succeeded":
        return _book_funding(
            escrow,
            funding,
            payment,
            primary=primary,
            now=now,
            new_id=new_id,
            namespace=namespace,
        )
    if funding is None or not primary or escrow.funded or escrow.cancelled:
        # Only the escrow's own payment, while it still awaits funding, has news to record.
        return Outcome(escrow=escrow)
    if payment.status == "canceled":
        if not funding.status.open:
            return Outcome(escrow=escrow)
        funding = _settle(funding, now, OperationStatus.CANCELLED, gateway_status="canceled")
        escrow = attrs.evolve(escrow, cancelled=True, payment_status="canceled")
        return Outcome(
            escrow=escrow,
            operations=(funding,),
            events=(_event("escrow.cancelled", escrow, by=GATEWAY_ACTOR),),
        )
    if payment.status == "processing":
        if escrow.payment_status == "processing":
            return Outcome(escrow=escrow)
        escrow = attrs.evolve(escrow, payment_status="processing")
        funding = attrs.evolve(funding, gateway_status="processing", updated_at=now)
        return Outcome(
            escrow=escrow,
            operations=(funding,),
            events=(_event("escrow.payment_processing", escrow),),
        )
    if payment.last_error is not None and payment.last_error != escrow.last_payment_error:
        # A failed attempt: the poster may retry with another payment method.
        escrow = attrs.evolve(
            escrow, payment_status=payment.status, last_payment_error=payment.last_error
        )
        funding = attrs.evolve(funding, gateway_status=payment.status, updated_at=now)
        return Outcome(
            escrow=escrow,
            operations=(funding,),
            events=(_event("escrow.payment_failed", escrow, error=payment.last_error),),
        )
    return Outcome(escrow=escrow)


def _book_funding(
    escrow: Escrow,
    funding: Operation | None,
    payment: PaymentSnapshot,
    *,
    primary: bool,
    now: datetime,
    new_id: Callable[[], str],
    namespace: str | None,
) -> Outcome:
    received = payment.amount_received if payment.amount_received else payment.amount
    if funding is None:
        funding = _new_op(
            escrow,
            op_id=new_id(),
            kind=OperationKind.FUNDING,
            gross=received,
            actor_id=GATEWAY_ACTOR,
            now=now,
            reason="additional_payment",
        )
    funding = _settle(
        funding,
        now,
        OperationStatus.SUCCEEDED,
        gross=received,
        net=received,
        gateway_ref=payment.ref,
        gateway_status="succeeded",
    )
    # Money beyond the bounty amount, a second payment, or a payment for a cancelled escrow
    # is not the poster's intent: it is booked (it did arrive) and refunded at once.
    if escrow.cancelled:
        surplus, reason = received, "paid_after_cancel"
    elif not primary:
        surplus, reason = received, "duplicate_payment"
    else:
        # The escrow's own payment is booked once, so only its own excess is surplus.
        over = received - escrow.amount
        surplus, reason = (over if over.is_positive else Money.zero(escrow.currency)), "overpayment"
    changes: dict[str, Any] = {
        "funded": escrow.funded + received,
        "held": escrow.held + received,
        "funded_at": escrow.funded_at or now,
    }
    if primary:
        changes.update(payment_status="succeeded", charge_ref=payment.charge_ref)
    escrow = attrs.evolve(escrow, **changes)
    entry = JournalEntry.of(
        escrow.id,
        "funding",
        payment.ref,
        (ledger.gateway_account(escrow.currency), -received),
        (ledger.escrow_account(escrow.id), received),
        operation_id=funding.id,
    )
    operations = [funding]
    events = [_event("escrow.funded", escrow, funding, payment_ref=payment.ref)]
    if surplus.is_positive:
        refund_id = new_id()
        refund = _new_op(
            escrow,
            op_id=refund_id,
            kind=OperationKind.REFUND,
            gross=surplus,
            actor_id=GATEWAY_ACTOR,
            now=now,
            reason=reason,
            request=CreateRefund(
                amount=surplus,
                payment_ref=payment.ref,
                metadata=_metadata(escrow, refund_id, namespace),
                reason="duplicate" if reason == "duplicate_payment" else "requested_by_customer",
            ),
        )
        escrow = attrs.evolve(escrow, reserved=escrow.reserved + surplus)
        operations.append(refund)
        events.append(_event("operation.created", escrow, refund, reason=reason))
    # Money that left at the gateway before this payment was booked (an outside refund or a
    # dispute withdrawal reported first) is the escrow's debt: what the payment leaves
    # available pays it first. A surplus is the payer's money and is refunded whole; if the
    # gateway refunded it already, that refund fails and its reservation pays the debt.
    return _pay_debt(
        Outcome(
            escrow=escrow, operations=tuple(operations), entries=(entry,), events=tuple(events)
        ),
        f"funding:{payment.ref}",
    )
