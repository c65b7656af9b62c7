"""Dispute and fraud warning transitions: freezing the escrow and moving disputed money.

A dispute's withdrawals and reinstatements are booked; an open dispute or an early fraud
warning freezes the escrow until it closes or an admin clears the warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.gateway_objects import DisputeSnapshot
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation
from bountyescrow.domain.transitions._common import (
    Outcome,
    _debt_payment,
    _event,
    _pay_debt,
    _withdraw,
    check_amount,
)


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
    outcome = Outcome(
        escrow=escrow,
        operations=cut,
        entries=tuple(entries),
        events=tuple(events),
        disputes=(dispute,),
    )
    # A reservation cut by the withdrawal frees money: the debt is paid from it first.
    return _pay_debt(outcome, f"{snapshot.ref}:withdrawn:{snapshot.funds_withdrawn.amount}")


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
