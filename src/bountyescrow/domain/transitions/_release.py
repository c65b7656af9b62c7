"""Release transitions: reserving money for a payee and the transfer that completes it.

Also a release waiting for its payee: it waits, becomes ready to send, or is cancelled. Every
transfer names the funding charge as its ``source_transaction`` (`release_source`).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import CreateTransfer, PaymentSnapshot, TransferSnapshot
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.transitions._common import (
    Outcome,
    _event,
    _metadata,
    _new_op,
    _require_funded,
    _require_not_frozen,
    _settle,
    _take,
    fail_operation,
)
from bountyescrow.errors import InvalidTransitionError, ValidationError


def release_source(escrow: Escrow, payment: PaymentSnapshot | None = None) -> str:
    """The charge a release from `escrow` transfers from (its ``source_transaction``).

    The charge the funding recorded; else the ``latest_charge`` of `payment`, the escrow's own
    succeeded PaymentIntent as the service fetched it from the gateway (for a funding booked
    from a PaymentIntent that named no charge). A transfer without ``source_transaction``
    would draw on the platform's *available* balance instead of the charge: money that may
    not have settled yet, or that other escrows hold.

    Raises:
        InvalidTransitionError: neither names a charge, so no release may be sent yet.
    """
    if escrow.charge_ref is not None:
        return escrow.charge_ref
    if (
        payment is not None
        and payment.ref == escrow.payment_ref
        and payment.status == "succeeded"
        and payment.charge_ref
    ):
        return payment.charge_ref
    raise InvalidTransitionError(
        f"cannot release from escrow {escrow.id} yet: the charge of its payment "
        f"{escrow.payment_ref} is not known (Stripe reported no latest_charge), and a transfer "
        "must name it as source_transaction; try again later, and if the PaymentIntent still "
        "shows no charge in the Stripe Dashboard, refund instead",
        current=escrow.status.value,
        attempted="release",
    )


def start_release(
    escrow: Escrow,
    *,
    op_id: str,
    payee: Payee,
    gross: Money | None,
    actor_id: str,
    now: datetime,
    namespace: str | None = None,
    payment: PaymentSnapshot | None = None,
) -> Outcome:
    """Reserve `gross` (or everything available) for a transfer to `payee`.

    The transfer's source is the escrow's charge, or the one `payment` (its PaymentIntent,
    fetched by the service) names, which is then recorded on the escrow (`release_source`).

    Raises:
        InvalidTransitionError: the escrow is not funded, or no charge is known to transfer
            from.
    """
    _require_funded(escrow, "release")
    _require_not_frozen(escrow, "release")
    if payee.id == escrow.poster_id:
        raise ValidationError(
            f"cannot release escrow {escrow.id} to its own poster {payee.id}; refund instead"
        )
    source = release_source(escrow, payment)
    gross = _take(escrow, gross, "release")
    try:
        split = escrow.fee_schedule.split(gross, first_release=not escrow.fixed_fee_charged)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    status = OperationStatus.PENDING if payee.ready else OperationStatus.AWAITING_PAYEE
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.RELEASE,
        gross=gross,
        fee=split.fee,
        net=split.net,
        actor_id=actor_id,
        now=now,
        status=status,
        payee_id=payee.id,
        fixed_fee=split.fixed,
        reversed=Money.zero(escrow.currency),
        request=CreateTransfer(
            amount=split.net,
            destination=payee.account_ref,
            source_transaction=source,
            transfer_group=escrow.transfer_group,
            metadata=_metadata(escrow, op_id, namespace),
        ),
    )
    escrow = attrs.evolve(
        escrow,
        charge_ref=source,
        reserved=escrow.reserved + gross,
        fixed_fee_charged=escrow.fixed_fee_charged or split.fixed.is_positive,
    )
    return Outcome(
        escrow=escrow, operations=(op,), events=(_event("operation.created", escrow, op),)
    )


def complete_release(
    escrow: Escrow, op: Operation, transfer: TransferSnapshot, *, now: datetime
) -> Outcome:
    """The transfer exists: the money leaves `held` for the payee and the platform fee."""
    if op.status is OperationStatus.SUCCEEDED:
        return Outcome(escrow=escrow)
    if not op.status.open:
        raise InvalidTransitionError(
            f"transfer {transfer.ref} arrived for release {op.id}, which is {op.status.value}",
            current=op.status.value,
            attempted="complete_release",
        )
    assert op.payee_id is not None
    escrow = attrs.evolve(
        escrow,
        held=escrow.held - op.gross,
        reserved=escrow.reserved - op.gross,
        released=escrow.released + op.gross,
        fees=escrow.fees + op.fee,
    )
    op = _settle(op, now, OperationStatus.SUCCEEDED, gateway_ref=transfer.ref, error=None)
    entry = JournalEntry.of(
        escrow.id,
        "release",
        transfer.ref,
        (ledger.escrow_account(escrow.id), -op.gross),
        (ledger.payee_account(op.payee_id or ""), op.net),
        (ledger.PLATFORM_FEES, op.fee),
        operation_id=op.id,
    )
    return Outcome(
        escrow=escrow,
        operations=(op,),
        entries=(entry,),
        events=(_event("operation.succeeded", escrow, op, gateway_ref=transfer.ref),),
    )


def wait_for_payee(escrow: Escrow, op: Operation, reason: str, *, now: datetime) -> Outcome:
    """The payee's account cannot receive yet: keep the reservation and wait."""
    if op.status is not OperationStatus.PENDING:
        return Outcome(escrow=escrow)  # waiting already, or finished: nothing to hold back
    if escrow.shortfall.is_positive:
        # Money left at the gateway while this release might have been in flight; now it
        # certainly was not sent, so its reservation pays that debt instead of waiting.
        return fail_operation(
            escrow,
            op,
            f"{reason}; its money was taken by the escrow's shortfall of {escrow.shortfall}",
            now=now,
        )
    # The refusal was definitive, so nothing moved under the old key; Stripe replays a stored
    # refusal for that key, so the send after onboarding needs the next key generation.
    op = _settle(
        op, now, OperationStatus.AWAITING_PAYEE, error=reason, generation=op.generation + 1
    )
    return Outcome(
        escrow=escrow, operations=(op,), events=(_event("operation.awaiting_payee", escrow, op),)
    )


def payee_ready(escrow: Escrow, op: Operation, payee: Payee, *, now: datetime) -> Outcome:
    """The payee can receive now: the waiting release becomes pending, to be sent.

    While the escrow is frozen (open dispute, fraud warning) no money leaves: the release
    keeps waiting, and is sent once the escrow unfreezes. A release that knows no charge to
    transfer from (one stored before every release had to name one) keeps waiting too:
    nothing is sent without a ``source_transaction``.
    """
    if op.status is not OperationStatus.AWAITING_PAYEE or escrow.frozen:
        return Outcome(escrow=escrow)
    request = op.request
    if isinstance(request, CreateTransfer) and request.destination != payee.account_ref:
        request = attrs.evolve(request, destination=payee.account_ref)
    if isinstance(request, CreateTransfer):
        source = escrow.charge_ref or request.source_transaction
        if source is None:
            return Outcome(escrow=escrow)
        if request.source_transaction != source:
            request = attrs.evolve(request, source_transaction=source)
    op = attrs.evolve(
        op, status=OperationStatus.PENDING, error=None, request=request, updated_at=now
    )
    return Outcome(escrow=escrow, operations=(op,))


def cancel_waiting(escrow: Escrow, op: Operation, *, now: datetime) -> Outcome:
    """Cancel a release still waiting for its payee (nothing was sent)."""
    if op.status is not OperationStatus.AWAITING_PAYEE:
        raise InvalidTransitionError(
            f"cannot cancel operation {op.id}: it is {op.status.value}; only a release "
            "awaiting its payee can be cancelled",
            current=op.status.value,
            attempted="cancel_operation",
        )
    return fail_operation(escrow, op, "cancelled", now=now, status=OperationStatus.CANCELLED)
