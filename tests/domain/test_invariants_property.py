"""Random sequences of commands and gateway facts on one escrow keep the money invariants.

A hypothesis state machine drives a single escrow through the pure transitions only (no
service, no store): payments (primary, overpaid, surplus, redelivered), cancels, releases to
ready and unready payees, refunds and their late outcomes, reversals, disputes, inquiries,
outside refunds and reversals, fraud warnings. Outside refunds and dispute withdrawals and
reinstatements (in any amounts) arrive before funding as well as after, as reordered webhooks
deliver them. A domain error (`BountyEscrowError`) is an acceptable answer to a command, and
must leave everything as it was.

After every step: I1-I4 hold (`violations(...) == []`: the escrow's debt and what is
available are never both positive), the postings over all accounts sum to zero per currency
(money never appears or vanishes), `held` is never negative, the ledger's fee, shortfall and
payee accounts agree with the escrow's own amounts, and `refunded` and `dispute_withdrawn`
equal what the gateway refunded and withdrew (tracked by the machine from the facts it
reported, not from the escrow's records).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bountyescrow.domain import ledger
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.errors import BountyEscrowError

from . import builders
from .builders import HUNTER, HUNTER_NOT_READY, POSTER_AS_PAYEE, usd

PENDING = OperationStatus.PENDING
AWAITING = OperationStatus.AWAITING_PAYEE
SUCCEEDED = OperationStatus.SUCCEEDED

#: Mostly amounts that fit, sometimes everything (None), too much, zero, negative or euros.
_fits = st.builds(usd, st.integers(min_value=1, max_value=4_000))
_any = st.builds(usd, st.integers(min_value=-100, max_value=15_000))
amounts = st.one_of(st.none(), _fits, _fits, _any)
amounts_or_wrong_currency = st.one_of(
    st.none(), _fits, _fits, _fits, _any, st.just(Money(1_000, "eur"))
)
payees = st.sampled_from([HUNTER, HUNTER, HUNTER, HUNTER, HUNTER_NOT_READY, POSTER_AS_PAYEE])
#: (dispute, status): ``dp_1`` is a chargeback, ``dp_2`` an inquiry on the same charge.
dispute_states = st.sampled_from(
    [
        ("dp_1", "needs_response"),
        ("dp_1", "under_review"),
        ("dp_1", "won"),
        ("dp_1", "lost"),
        ("dp_2", "warning_needs_response"),
        ("dp_2", "warning_closed"),
    ]
)


class EscrowMachine(RuleBasedStateMachine):
    """One $100.00 escrow with a 10 % + $0.30 fee, moved at random."""

    def __init__(self) -> None:
        super().__init__()
        self.book = builders.awaiting_funding(FeeSchedule(1000, fixed=usd(30)), strict=False)
        self.payments = 1
        self.outside_refunds = 0
        self.outside_reversals = 0
        #: What the gateway did, as reported: outside refunds still standing (ref -> cents)
        #: and each dispute's running totals (ref -> [withdrawn, reinstated]).
        self.refunded_outside: dict[str, int] = {}
        self.disputed: dict[str, list[int]] = {}

    @initialize(paid=st.sampled_from([True, True, False]))
    def opened(self, paid: bool) -> None:
        """Start awaiting funding, or (mostly) already funded, to reach payouts sooner."""
        if paid:
            self.book.pay()

    # --- helpers ------------------------------------------------------------------------------

    def attempt(self, action: Callable[[], object]) -> None:
        """Run one transition; a domain error is fine but must change nothing."""
        state = self.book.state()
        try:
            action()
        except BountyEscrowError:
            assert self.book.state() == state

    def ops(self, kind: OperationKind, *statuses: OperationStatus) -> list[Operation]:
        return self.book.of_kind(kind, *statuses)

    def pick(
        self, data: st.DataObject, kind: OperationKind, *statuses: OperationStatus
    ) -> Operation:
        return data.draw(st.sampled_from(self.ops(kind, *statuses)))

    def has(self, kind: OperationKind, *statuses: OperationStatus) -> bool:
        return bool(self.ops(kind, *statuses))

    # --- funding and cancel -------------------------------------------------------------------

    @rule(received=st.sampled_from([10_000, 12_000]))
    def primary_payment_succeeds(self, received: int) -> None:
        self.attempt(lambda: self.book.pay(amount=usd(received)))

    @rule(
        status=st.sampled_from(["requires_payment_method", "processing", "canceled"]),
        error=st.sampled_from(["card_declined", "insufficient_funds"]),
    )
    def primary_payment_changes(self, status: str, error: str) -> None:
        last_error = error if status == "requires_payment_method" else None
        self.attempt(lambda: self.book.pay(status=status, last_error=last_error))

    @precondition(lambda self: self.payments < 4)
    @rule(amount=st.integers(min_value=1, max_value=15_000))
    def another_payment_succeeds(self, amount: int) -> None:
        self.payments += 1
        self.attempt(lambda: self.book.pay(f"pi_{self.payments}", amount=usd(amount)))

    @precondition(lambda self: len(self.ops(OperationKind.FUNDING, SUCCEEDED)) > 0)
    @rule(data=st.data())
    def a_payment_is_reported_again(self, data: st.DataObject) -> None:
        funding = self.pick(data, OperationKind.FUNDING, SUCCEEDED)
        ref = funding.gateway_ref
        assert ref is not None
        self.attempt(lambda: self.book.pay(ref, amount=funding.gross))

    @precondition(lambda self: not self.book.escrow.funded)
    @rule()
    def start_cancel(self) -> None:
        self.attempt(self.book.start_cancel)

    @precondition(lambda self: self.has(OperationKind.CANCEL, PENDING))
    @rule(data=st.data())
    def cancel_answered(self, data: st.DataObject) -> None:
        cancel = self.pick(data, OperationKind.CANCEL, PENDING)
        self.attempt(lambda: self.book.complete_cancel(cancel))

    # --- releases -----------------------------------------------------------------------------

    @rule(gross=amounts_or_wrong_currency, payee=payees, answered=st.booleans())
    def start_release(self, gross: Money | None, payee: Payee, answered: bool) -> None:
        """Start a release; when `answered`, its transfer is created at once (if it was sent)."""

        def release() -> None:
            op = self.book.start_release(gross, payee)
            if answered and op.status is PENDING:
                self.book.complete_release(op)

        self.attempt(release)

    @precondition(lambda self: self.has(OperationKind.RELEASE, PENDING))
    @rule(data=st.data())
    def transfer_created(self, data: st.DataObject) -> None:
        release = self.pick(data, OperationKind.RELEASE, PENDING)
        self.attempt(lambda: self.book.complete_release(release))

    @precondition(lambda self: self.has(OperationKind.RELEASE, PENDING, AWAITING))
    @rule(data=st.data())
    def release_fails(self, data: st.DataObject) -> None:
        release = self.pick(data, OperationKind.RELEASE, PENDING, AWAITING)
        self.attempt(lambda: self.book.fail(release))

    @precondition(lambda self: self.has(OperationKind.RELEASE, PENDING))
    @rule(data=st.data())
    def destination_cannot_receive(self, data: st.DataObject) -> None:
        release = self.pick(data, OperationKind.RELEASE, PENDING)
        book = self.book
        self.attempt(
            lambda: book.apply(tr.wait_for_payee(book.escrow, release, "not ready", now=book.now()))
        )

    @precondition(lambda self: self.has(OperationKind.RELEASE, AWAITING))
    @rule(data=st.data())
    def payee_becomes_ready(self, data: st.DataObject) -> None:
        release = self.pick(data, OperationKind.RELEASE, AWAITING)
        payee = Payee(id=release.payee_id or "", account_ref="acct_ready", ready=True, country="US")
        book = self.book
        self.attempt(
            lambda: book.apply(tr.payee_ready(book.escrow, release, payee, now=book.now()))
        )

    @precondition(lambda self: self.has(OperationKind.RELEASE, AWAITING))
    @rule(data=st.data())
    def waiting_release_cancelled(self, data: st.DataObject) -> None:
        release = self.pick(data, OperationKind.RELEASE, AWAITING)
        book = self.book
        self.attempt(lambda: book.apply(tr.cancel_waiting(book.escrow, release, now=book.now())))

    # --- refunds ------------------------------------------------------------------------------

    @rule(amount=amounts_or_wrong_currency, allow_frozen=st.booleans())
    def start_refund(self, amount: Money | None, allow_frozen: bool) -> None:
        """Start a refund; its outcome comes later (`refund_reported`)."""
        self.attempt(lambda: self.book.start_refund(amount, allow_frozen=allow_frozen))

    @precondition(lambda self: self.has(OperationKind.REFUND))
    @rule(
        data=st.data(),
        status=st.sampled_from(["pending", "requires_action", "succeeded", "failed", "canceled"]),
    )
    def refund_reported(self, data: st.DataObject, status: str) -> None:
        """Any refund, in any state: includes late failures after success and stale news."""
        refund = self.pick(data, OperationKind.REFUND)
        self.attempt(lambda: self.book.refund_update(refund, status, "lost_or_stolen_card"))

    @precondition(lambda self: self.outside_refunds < 4)
    @rule(amount=st.integers(min_value=1, max_value=6_000))
    def refund_made_outside(self, amount: int) -> None:
        """A Dashboard refund, reported before or after the payment's success."""
        self.outside_refunds += 1
        ref = f"re_outside_{self.outside_refunds}"
        self.book.external_refund(usd(amount), ref)  # a fact: never refused
        self.refunded_outside[ref] = amount

    @precondition(lambda self: self.has(OperationKind.EXTERNAL_REFUND, SUCCEEDED))
    @rule(data=st.data())
    def outside_refund_fails_later(self, data: st.DataObject) -> None:
        refund = self.pick(data, OperationKind.EXTERNAL_REFUND, SUCCEEDED)
        self.book.refund_update(refund, "failed")
        self.refunded_outside.pop(refund.gateway_ref or "")

    # --- reversals ----------------------------------------------------------------------------

    @precondition(lambda self: self.has(OperationKind.RELEASE, SUCCEEDED))
    @rule(data=st.data(), amount=amounts, answered=st.booleans())
    def start_reversal(self, data: st.DataObject, amount: Money | None, answered: bool) -> None:
        """Start a reversal; when `answered`, the gateway makes it at once."""
        release = self.pick(data, OperationKind.RELEASE, SUCCEEDED)

        def reverse() -> None:
            op = self.book.start_reversal(release, amount)
            if answered:
                self.book.complete_reversal(op)

        self.attempt(reverse)

    @precondition(lambda self: self.has(OperationKind.REVERSAL, PENDING))
    @rule(data=st.data())
    def reversal_created(self, data: st.DataObject) -> None:
        reversal = self.pick(data, OperationKind.REVERSAL, PENDING)
        self.attempt(lambda: self.book.complete_reversal(reversal))

    @precondition(lambda self: self.has(OperationKind.REVERSAL, PENDING))
    @rule(data=st.data())
    def reversal_fails(self, data: st.DataObject) -> None:
        reversal = self.pick(data, OperationKind.REVERSAL, PENDING)
        self.attempt(lambda: self.book.fail(reversal, "insufficient_funds"))

    @precondition(lambda self: self.has(OperationKind.RELEASE, SUCCEEDED))
    @rule(data=st.data(), amount=st.integers(min_value=1, max_value=12_000))
    def reversal_made_outside(self, data: st.DataObject, amount: int) -> None:
        release = self.book.op(self.pick(data, OperationKind.RELEASE, SUCCEEDED).id)
        # Stripe never reverses more of a transfer than is left of it.
        left = release.net - (release.reversed or usd(0)) - self.book.pending_reversals(release)
        if not left.is_positive:
            return
        self.outside_reversals += 1
        ref = f"trr_outside_{self.outside_reversals}"
        self.attempt(lambda: self.book.external_reversal(release, usd(amount).min(left), ref))

    # --- disputes and fraud warnings ----------------------------------------------------------

    @rule(dispute=dispute_states, withdrawn=st.booleans(), reinstated=st.booleans())
    def dispute_reported(self, dispute: tuple[str, str], withdrawn: bool, reinstated: bool) -> None:
        """A dispute snapshot; only the chargeback takes (and may give back) the charge."""
        ref, status = dispute
        taken = self.book.escrow.amount.amount if withdrawn and ref == "dp_1" else 0
        given = taken if reinstated else 0
        self.book.dispute(ref, status, withdrawn=taken, reinstated=given)  # a fact
        self.gateway_dispute(ref, taken, given)

    @rule(
        withdraw=st.integers(min_value=0, max_value=6_000),
        reinstate=st.integers(min_value=0, max_value=6_000),
        closed=st.sampled_from([None, None, "won", "lost"]),
    )
    def chargeback_moves_part_of_the_charge(
        self, withdraw: int, reinstate: int, closed: str | None
    ) -> None:
        """Chargeback ``dp_3`` withdraws and reinstates parts, before or after funding."""
        withdrawn, reinstated = self.disputed.get("dp_3", [0, 0])
        withdrawn = min(self.book.escrow.amount.amount, withdrawn + withdraw)
        reinstated = min(withdrawn, reinstated + reinstate)
        status = closed or "needs_response"
        self.book.dispute(
            "dp_3", status, withdrawn=withdrawn, reinstated=reinstated, amount=usd(withdrawn or 1)
        )
        self.gateway_dispute("dp_3", withdrawn, reinstated)

    def gateway_dispute(self, ref: str, withdrawn: int, reinstated: int) -> None:
        """The gateway's running totals only grow; a stale snapshot changes nothing."""
        totals = self.disputed.setdefault(ref, [0, 0])
        totals[0] = max(totals[0], withdrawn)
        totals[1] = max(totals[1], reinstated)

    @rule(raised=st.booleans())
    def fraud_warning(self, raised: bool) -> None:
        """Radar raises an early fraud warning, or an admin clears it."""
        self.attempt(self.book.fraud_warning if raised else self.book.clear_fraud_warning)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def i1_to_i4_hold(self) -> None:
        assert self.book.check() == []

    @invariant()
    def money_never_appears_or_vanishes(self) -> None:
        totals: dict[str, int] = defaultdict(int)
        for entry in self.book.entries:
            for posting in entry.postings:
                totals[posting.amount.currency] += posting.amount.amount
        assert all(total == 0 for total in totals.values()), dict(totals)

    @invariant()
    def amounts_are_never_negative(self) -> None:
        escrow = self.book.escrow
        assert escrow.held.amount >= 0
        for name in ("reserved", "released", "refunded", "fees", "dispute_withdrawn", "shortfall"):
            assert getattr(escrow, name).amount >= 0, name

    @invariant()
    def ledger_agrees_with_the_escrow(self) -> None:
        book, escrow = self.book, self.book.escrow
        assert book.balance(ledger.PLATFORM_FEES) == escrow.fees.amount
        assert book.balance(ledger.PLATFORM_SHORTFALL) == -escrow.shortfall.amount
        paid = sum(
            amount
            for (account, _), amount in ledger.balances(book.entries).items()
            if account.startswith("payee:")
        )
        assert paid == (escrow.released - escrow.fees).amount

    @invariant()
    def gateway_refunds_and_withdrawals_are_counted_in_full(self) -> None:
        """The escrow's amounts are what really left at the gateway."""
        escrow = self.book.escrow
        own = sum(op.gross.amount for op in self.ops(OperationKind.REFUND, SUCCEEDED))
        assert escrow.refunded.amount == own + sum(self.refunded_outside.values())
        withdrawn = sum(w - r for w, r in self.disputed.values())
        assert escrow.dispute_withdrawn.amount == withdrawn

    @invariant()
    def nothing_available_while_the_escrow_owes(self) -> None:
        """Every available cent pays the debt first: no release or refund starts on it."""
        escrow = self.book.escrow
        assert not (escrow.shortfall.is_positive and escrow.available.is_positive)


#: I1-I4 and a balanced ledger after any sequence of steps.
TestEscrowInvariants = EscrowMachine.TestCase
TestEscrowInvariants.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
