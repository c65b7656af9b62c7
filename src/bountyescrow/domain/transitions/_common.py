"""Pure transitions of the escrow aggregate.

Each function takes the current state and one command or gateway fact and returns an
`Outcome`: the new escrow, the operations created or changed, balanced journal entries and
domain events. Nothing here reads a clock, a database or the network; time and new ids come in
as arguments. A refused command raises a `bountyescrow.errors` error and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.amount_rules import round_down
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.gateway_objects import (
    META_BOUNTY,
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
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


def _withdraw(
    escrow: Escrow,
    amount: Money,
    operations: Sequence[Operation],
    *,
    reason: str,
    now: datetime,
) -> _Withdrawal:
    """Take `amount`, which left at the gateway, from the escrow's held money.

    First what is available; then the reservations of releases certainly never sent (waiting
    for their payee), newest first, which fail with `reason`; only what is committed to
    operations that may be in flight stays reserved, and the rest becomes debt.
    """
    zero = Money.zero(escrow.currency)
    cut: list[Operation] = []
    events: list[DomainEvent] = []
    waiting = sorted(
        (
            op
            for op in operations
            if op.escrow_id == escrow.id
            and op.kind is OperationKind.RELEASE
            and op.status is OperationStatus.AWAITING_PAYEE
        ),
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


# --- funding ----------------------------------------------------------------------------------


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


# --- cancel -----------------------------------------------------------------------------------


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


# --- release ----------------------------------------------------------------------------------


def start_release(
    escrow: Escrow,
    *,
    op_id: str,
    payee: Payee,
    gross: Money | None,
    actor_id: str,
    now: datetime,
    namespace: str | None = None,
) -> Outcome:
    """Reserve `gross` (or everything available) for a transfer to `payee`."""
    _require_funded(escrow, "release")
    _require_not_frozen(escrow, "release")
    if payee.id == escrow.poster_id:
        raise ValidationError(
            f"cannot release escrow {escrow.id} to its own poster {payee.id}; refund instead"
        )
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
            source_transaction=escrow.charge_ref,
            transfer_group=escrow.transfer_group,
            metadata=_metadata(escrow, op_id, namespace),
        ),
    )
    escrow = attrs.evolve(
        escrow,
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
    keeps waiting, and is sent once the escrow unfreezes.
    """
    if op.status is not OperationStatus.AWAITING_PAYEE or escrow.frozen:
        return Outcome(escrow=escrow)
    request = op.request
    if isinstance(request, CreateTransfer) and request.destination != payee.account_ref:
        request = attrs.evolve(request, destination=payee.account_ref)
    if isinstance(request, CreateTransfer) and request.source_transaction != escrow.charge_ref:
        request = attrs.evolve(request, source_transaction=escrow.charge_ref)
    op = attrs.evolve(
        op, status=OperationStatus.PENDING, error=None, request=request, updated_at=now
    )
    return Outcome(escrow=escrow, operations=(op,))


# --- refund -----------------------------------------------------------------------------------


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
    return Outcome(
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


# --- reversal ---------------------------------------------------------------------------------


def reversal_fee_share(release: Operation, amount: Money, *, already: Money | None = None) -> Money:
    """The fee given back when `amount` of a release's net is reversed.

    The written rule: after reversing `r` of the release's net in all, the fee given back in
    all is ``F(r) = floor(fee * r / net)``, rounded down to what Stripe moves in the
    currency (a multiple of 10 minor units for three-decimal currencies). A reversal of
    `amount` after `already` was reversed gives back ``F(already + amount) - F(already)``,
    so the shares of the pieces add up to `F` and reversing the whole net, at once or in
    pieces, gives the whole fee back (fixed part included).
    """
    done = already.amount if already is not None else 0

    def given_back(reversed_net: int) -> int:
        if reversed_net >= release.net.amount:
            return release.fee.amount
        share = release.fee.amount * reversed_net // release.net.amount
        return round_down(share, amount.currency)

    return Money(given_back(done + amount.amount) - given_back(done), amount.currency)


def start_reversal(
    escrow: Escrow,
    release: Operation,
    *,
    op_id: str,
    amount: Money | None,
    pending_reversals: Money,
    actor_id: str,
    now: datetime,
    namespace: str | None = None,
) -> Outcome:
    """Record a reversal of (part of) a succeeded release's transfer.

    `amount` is the transfer amount to pull back (the payee's side); the fee share comes
    back to `held` with it. The share recorded here assumes the reversals in flight succeed
    first; it is settled by `reversal_fee_share` when the reversal completes.
    """
    _require_not_frozen(escrow, "reverse")
    if release.kind is not OperationKind.RELEASE or release.status is not OperationStatus.SUCCEEDED:
        raise InvalidTransitionError(
            f"operation {release.id} is a {release.status.value} {release.kind.value}; only a "
            "succeeded release can be reversed",
            current=release.status.value,
            attempted="reverse",
        )
    assert release.gateway_ref is not None
    already = release.reversed or Money.zero(escrow.currency)
    remaining = release.net - already - pending_reversals
    if amount is None:
        amount = remaining
    else:
        check_amount(amount, escrow, what="the reversal amount")
    if not amount.is_positive or amount > remaining:
        raise InsufficientFundsError(
            f"cannot reverse {amount} of release {release.id}: {remaining} is left to reverse",
            available=remaining,
            requested=amount,
        )
    fee_back = reversal_fee_share(release, amount, already=already + pending_reversals)
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.REVERSAL,
        gross=amount + fee_back,
        fee=fee_back,
        net=amount,
        actor_id=actor_id,
        now=now,
        payee_id=release.payee_id,
        target_id=release.id,
        request=CreateReversal(
            amount=amount,
            transfer_ref=release.gateway_ref,
            metadata=_metadata(escrow, op_id, namespace),
        ),
    )
    return Outcome(
        escrow=escrow, operations=(op,), events=(_event("operation.created", escrow, op),)
    )


def complete_reversal(
    escrow: Escrow,
    op: Operation,
    release: Operation,
    reversal: ReversalSnapshot,
    *,
    now: datetime,
) -> Outcome:
    """The reversal exists: the money is back in `held`, the fee share too.

    The fee share is settled now, from what of the release had been reversed before this
    reversal (`reversal_fee_share`), so shares never add up to more than the release's fee.
    When the whole release is reversed its fixed fee is back, and the next release charges
    it again. The money that comes back pays the escrow's debt first.
    """
    if op.status is OperationStatus.SUCCEEDED:
        return Outcome(escrow=escrow)
    assert release.payee_id is not None
    already = release.reversed or Money.zero(escrow.currency)
    fee_back = reversal_fee_share(release, op.net, already=already)
    op = attrs.evolve(op, fee=fee_back, gross=op.net + fee_back)
    release = attrs.evolve(release, reversed=already + op.net, updated_at=now)
    changes: dict[str, Any] = {
        "held": escrow.held + op.gross,
        "released": escrow.released - op.gross,
        "fees": escrow.fees - op.fee,
    }
    if (
        release.fixed_fee is not None
        and release.fixed_fee.is_positive
        and release.reversed is not None
        and release.reversed >= release.net
    ):
        changes["fixed_fee_charged"] = False
    escrow = attrs.evolve(escrow, **changes)
    op = _settle(op, now, OperationStatus.SUCCEEDED, gateway_ref=reversal.ref, error=None)
    entry = JournalEntry.of(
        escrow.id,
        "reversal",
        reversal.ref,
        (ledger.payee_account(release.payee_id or ""), -op.net),
        (ledger.PLATFORM_FEES, -op.fee),
        (ledger.escrow_account(escrow.id), op.gross),
        operation_id=op.id,
    )
    name = (
        "operation.adopted" if op.kind is OperationKind.EXTERNAL_REVERSAL else "operation.succeeded"
    )
    return _pay_debt(
        Outcome(
            escrow=escrow,
            operations=(op, release),
            entries=(entry,),
            events=(_event(name, escrow, op, gateway_ref=reversal.ref),),
        ),
        f"reversal:{reversal.ref}",
    )


def adopt_external_reversal(
    escrow: Escrow, release: Operation, reversal: ReversalSnapshot, *, op_id: str, now: datetime
) -> Outcome:
    """Adopt a reversal made outside the library (Dashboard): money back into `held`."""
    check_amount(reversal.amount, escrow, what="the outside reversal")
    already = release.reversed or Money.zero(escrow.currency)
    amount = reversal.amount.min(release.net - already)
    fee_back = (
        reversal_fee_share(release, amount, already=already)
        if amount.is_positive
        else Money.zero(escrow.currency)
    )
    op = _new_op(
        escrow,
        op_id=op_id,
        kind=OperationKind.EXTERNAL_REVERSAL,
        gross=amount + fee_back,
        fee=fee_back,
        net=amount,
        actor_id=GATEWAY_ACTOR,
        now=now,
        payee_id=release.payee_id,
        target_id=release.id,
    )
    return complete_reversal(escrow, op, release, reversal, now=now)


# --- disputes and fraud warnings --------------------------------------------------------------


def apply_dispute(
    escrow: Escrow,
    existing: Dispute | None,
    snapshot: DisputeSnapshot,
    *,
    now: datetime,
    operations: Sequence[Operation] = (),
) -> Outcome:
    """Apply a dispute's state: open or close it, book withdrawals and reinstatements.

    `dispute_withdrawn` counts all the money the gateway withdrew. It is taken from `held`:
    what is available, then the reservations of releases waiting for their payee (never
    sent: they fail); what is committed to operations that may be in flight, or was not
    booked yet, becomes the escrow's debt (`shortfall`). A reinstatement comes back into
    `held` and pays the debt first. `operations` are the escrow's operations.
    """
    zero = Money.zero(escrow.currency)
    check_amount(snapshot.amount, escrow, what="the disputed amount")
    dispute = existing or Dispute(
        id=snapshot.ref,
        escrow_id=escrow.id,
        amount=snapshot.amount,
        status=snapshot.status,
        reason=snapshot.reason,
        withdrawn=zero,
        reinstated=zero,
        from_held=zero,
        from_shortfall=zero,
        created_at=now,
        updated_at=now,
    )
    events: list[DomainEvent] = []
    entries: list[JournalEntry] = []
    was_open = existing.open if existing else False
    was_frozen = escrow.frozen

    cut: tuple[Operation, ...] = ()
    withdraw = snapshot.funds_withdrawn - dispute.withdrawn
    if withdraw.is_positive:
        taken = _withdraw(
            escrow,
            withdraw,
            operations,
            reason=f"funds withdrawn by dispute {snapshot.ref}",
            now=now,
        )
        cut = taken.cut
        events.extend(taken.events)
        escrow = attrs.evolve(
            taken.escrow, dispute_withdrawn=taken.escrow.dispute_withdrawn + withdraw
        )
        dispute = attrs.evolve(
            dispute,
            withdrawn=snapshot.funds_withdrawn,
            from_held=dispute.from_held + taken.from_held,
            from_shortfall=dispute.from_shortfall + taken.debt,
        )
        entries.append(
            JournalEntry.of(
                escrow.id,
                "dispute_withdrawal",
                f"{snapshot.ref}:{snapshot.funds_withdrawn.amount}",
                (ledger.escrow_account(escrow.id), -taken.from_held),
                (ledger.PLATFORM_SHORTFALL, -taken.debt),
                (ledger.gateway_account(escrow.currency), withdraw),
            )
        )
        events.append(
            _event(
                "dispute.funds_withdrawn",
                escrow,
                dispute_id=snapshot.ref,
                amount=withdraw.amount,
                from_held=taken.from_held.amount,
                shortfall=taken.debt.amount,
            )
        )

    give = snapshot.funds_reinstated - dispute.reinstated
    if give.is_positive:
        # The money comes back into `held` and pays the escrow's debt first.
        escrow = attrs.evolve(
            escrow,
            held=escrow.held + give,
            dispute_withdrawn=escrow.dispute_withdrawn - give,
        )
        back_from_debt = give.min(dispute.from_shortfall)
        dispute = attrs.evolve(
            dispute,
            reinstated=snapshot.funds_reinstated,
            from_shortfall=dispute.from_shortfall - back_from_debt,
            from_held=dispute.from_held - (give - back_from_debt).min(dispute.from_held),
        )
        entries.append(
            JournalEntry.of(
                escrow.id,
                "dispute_reinstatement",
                f"{snapshot.ref}:{snapshot.funds_reinstated.amount}",
                (ledger.escrow_account(escrow.id), give),
                (ledger.gateway_account(escrow.currency), -give),
            )
        )
        events.append(
            _event("dispute.funds_reinstated", escrow, dispute_id=snapshot.ref, amount=give.amount)
        )
        escrow, paid, told = _debt_payment(
            escrow, f"dispute_reinstatement:{snapshot.ref}:{snapshot.funds_reinstated.amount}"
        )
        entries.extend(paid)
        events.extend(told)

    status_changed = existing is None or existing.status != snapshot.status
    refundable_changed = dispute.charge_refundable != snapshot.charge_refundable
    dispute = attrs.evolve(
        dispute,
        status=snapshot.status,
        reason=snapshot.reason or dispute.reason,
        charge_refundable=snapshot.charge_refundable,
        updated_at=now,
    )
    if dispute.open:
        escrow = attrs.evolve(escrow, open_disputes=escrow.open_disputes | {dispute.id})
        if not was_open:
            events.insert(
                0,
                _event(
                    "dispute.opened",
                    escrow,
                    dispute_id=dispute.id,
                    amount=dispute.amount.amount,
                    inquiry=dispute.is_inquiry,
                ),
            )
    else:
        escrow = attrs.evolve(escrow, open_disputes=escrow.open_disputes - {dispute.id})
        if status_changed:
            events.append(
                _event("dispute.closed", escrow, dispute_id=dispute.id, outcome=dispute.status)
            )
    if was_frozen and not escrow.frozen:
        events.append(_event("escrow.unfrozen", escrow))
    if not was_frozen and escrow.frozen:
        events.append(_event("escrow.frozen", escrow, dispute_id=dispute.id))
    if not status_changed and not entries and not refundable_changed:
        return Outcome(escrow=escrow)
    return Outcome(
        escrow=escrow,
        operations=cut,
        entries=tuple(entries),
        events=tuple(events),
        disputes=(dispute,),
    )


def apply_fraud_warning(escrow: Escrow, warning_ref: str) -> Outcome:
    """An early fraud warning freezes the escrow while it holds money, until an admin clears it."""
    if escrow.fraud_warning:
        return Outcome(escrow=escrow)
    escrow = attrs.evolve(escrow, fraud_warning=True)
    return Outcome(
        escrow=escrow, events=(_event("escrow.frozen", escrow, fraud_warning=warning_ref),)
    )


def clear_fraud_warning(escrow: Escrow) -> Outcome:
    """An admin has looked at the fraud warning and lets the escrow move again."""
    if not escrow.fraud_warning:
        return Outcome(escrow=escrow)
    escrow = attrs.evolve(escrow, fraud_warning=False)
    events = () if escrow.frozen else (_event("escrow.unfrozen", escrow),)
    return Outcome(escrow=escrow, events=events)


def metadata_of(mapping: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (escrow id, operation id) a gateway object's metadata names, if any."""
    return mapping.get(META_ESCROW), mapping.get(META_OPERATION)
