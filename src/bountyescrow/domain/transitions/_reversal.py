"""Reversal transitions: pulling (part of) a succeeded release's transfer back.

The written fee-share rule (`reversal_fee_share`), starting and completing a reversal,
and adopting one made outside the library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.amount_rules import round_down
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import CreateReversal, ReversalSnapshot
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
    _require_not_frozen,
    _settle,
    check_amount,
)
from bountyescrow.errors import InsufficientFundsError, InvalidTransitionError


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
