"""Build one escrow's records by chaining the real pure transitions.

A `Book` is what a store would hold for one escrow: the escrow, its operations, its journal
entries, its disputes and the domain events published. Every command method runs one or more
transitions from `bountyescrow.domain.transitions`, merges the outcome into the book and (unless
the book is made with ``strict=False``) checks `violations(...) == []` after each outcome.

Times are fixed (`T0` plus one minute per step) and ids are deterministic (``op_1``, ``op_2``...),
so a failing test prints the same state every run.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from bountyescrow.domain import transitions as tr
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.invariants import violations
from bountyescrow.domain.ledger import JournalEntry, balances
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ESCROW_ID = "esc_1"
POSTER_ID = "poster_1"
PAYMENT_REF = "pi_1"
#: The charge every dispute in these tests is about.
CHARGE_REF = "ch_pi_1"

HUNTER = Payee(id="hunter_1", account_ref="acct_hunter_1", ready=True, country="US")
HUNTER_NOT_READY = Payee(id="hunter_2", account_ref="acct_hunter_2", ready=False, country="US")
#: The poster registered as a payee: releasing to them is refused.
POSTER_AS_PAYEE = Payee(id=POSTER_ID, account_ref="acct_poster_1", ready=True, country="US")

#: The fee schedule of the lifecycle table: 10 %, no fixed part.
TEN_PERCENT = FeeSchedule(bps=1000)


def usd(amount: int) -> Money:
    """`amount` cents."""
    return Money(amount, "usd")


AMOUNT = usd(10_000)


@attrs.define
class Book:
    """One escrow and everything recorded about it, moved only by pure transitions."""

    escrow: Escrow
    ops: dict[str, Operation] = attrs.Factory(dict)
    entries: list[JournalEntry] = attrs.Factory(list)
    disputes: dict[str, Dispute] = attrs.Factory(dict)
    events: list[DomainEvent] = attrs.Factory(list)
    strict: bool = True
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))
    _minutes: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    # --- bookkeeping ----------------------------------------------------------------------------

    def new_id(self, prefix: str = "op") -> str:
        """The next deterministic id."""
        return f"{prefix}_{next(self._ids)}"

    def now(self) -> datetime:
        """A fixed time, one minute later at every call."""
        return T0 + timedelta(minutes=next(self._minutes))

    def apply(self, outcome: tr.Outcome) -> tr.Outcome:
        """Merge an outcome as a store would, then check the invariants (when strict)."""
        self.escrow = outcome.escrow
        for op in outcome.operations:
            self.ops[op.id] = op
        self.entries.extend(outcome.entries)
        for dispute in outcome.disputes:
            self.disputes[dispute.id] = dispute
        self.events.extend(outcome.events)
        if self.strict:
            problems = self.check()
            assert problems == [], problems
        return outcome

    def check(self) -> list[str]:
        """`violations` over everything recorded so far."""
        return violations(self.escrow, list(self.ops.values()), self.entries)

    def state(self) -> tuple[Any, ...]:
        """Everything recorded, for before/after comparisons."""
        return (
            self.escrow,
            dict(self.ops),
            list(self.entries),
            dict(self.disputes),
            len(self.events),
        )

    def balance(self, account: str) -> int:
        """The ledger balance of `account`, in minor units."""
        return balances(self.entries).get((account, self.escrow.currency), 0)

    def op(self, op_id: str) -> Operation:
        """The current version of an operation."""
        return self.ops[op_id]

    def of_kind(self, kind: OperationKind, *statuses: OperationStatus) -> list[Operation]:
        """Operations of `kind` (optionally only in `statuses`), oldest first."""
        return [
            op
            for op in self.ops.values()
            if op.kind is kind and (not statuses or op.status in statuses)
        ]

    def event_types(self) -> list[str]:
        """The type of every domain event published so far."""
        return [event.type for event in self.events]

    @property
    def funding(self) -> Operation:
        """The escrow's own funding operation (the first one)."""
        return self.of_kind(OperationKind.FUNDING)[0]

    # --- funding and cancel ---------------------------------------------------------------------

    def payment(
        self,
        ref: str = PAYMENT_REF,
        *,
        status: str = "succeeded",
        amount: Money | None = None,
        last_error: str | None = None,
        currency: str | None = None,
    ) -> PaymentSnapshot:
        """A PaymentIntent snapshot carrying this escrow's metadata."""
        money = amount or self.escrow.amount
        if currency is not None:
            money = Money(money.amount, currency)
        return PaymentSnapshot(
            ref=ref,
            status=status,
            amount=money,
            amount_received=money if status == "succeeded" else Money.zero(money.currency),
            charge_ref=f"ch_{ref}",
            metadata={META_ESCROW: self.escrow.id},
            last_error=last_error,
        )

    def pay(self, ref: str = PAYMENT_REF, **snapshot: Any) -> tr.Outcome:
        """Apply a PaymentIntent state, finding its funding operation as the service does."""
        funding = next(
            (op for op in self.of_kind(OperationKind.FUNDING) if op.gateway_ref == ref), None
        )
        return self.apply(
            tr.apply_payment(
                self.escrow,
                funding,
                self.payment(ref, **snapshot),
                now=self.now(),
                new_id=self.new_id,
            )
        )

    def start_cancel(self) -> Operation:
        """Record the intent to cancel."""
        outcome = self.apply(
            tr.start_cancel(self.escrow, op_id=self.new_id(), actor_id=POSTER_ID, now=self.now())
        )
        return outcome.operations[0]

    def complete_cancel(self, cancel: Operation) -> tr.Outcome:
        """The gateway answered the cancel."""
        return self.apply(
            tr.complete_cancel(self.escrow, self.op(cancel.id), self.funding, now=self.now())
        )

    def cancel(self) -> tr.Outcome:
        """Cancel, then the gateway confirms."""
        return self.complete_cancel(self.start_cancel())

    # --- release --------------------------------------------------------------------------------

    def start_release(self, gross: Money | None = None, payee: Payee = HUNTER) -> Operation:
        """Reserve `gross` (None: everything available) for `payee`."""
        outcome = self.apply(
            tr.start_release(
                self.escrow,
                op_id=self.new_id(),
                payee=payee,
                gross=gross,
                actor_id=POSTER_ID,
                now=self.now(),
            )
        )
        return outcome.operations[0]

    def transfer(self, op: Operation) -> TransferSnapshot:
        """The transfer the gateway made for release `op`."""
        assert op.payee_id is not None
        return TransferSnapshot(
            ref=f"tr_{op.id}",
            amount=op.net,
            destination=f"acct_{op.payee_id}",
            transfer_group=self.escrow.transfer_group,
            metadata={META_ESCROW: self.escrow.id},
            source_transaction=self.escrow.charge_ref,
        )

    def complete_release(self, op: Operation) -> tr.Outcome:
        """The transfer for release `op` exists."""
        op = self.op(op.id)
        return self.apply(tr.complete_release(self.escrow, op, self.transfer(op), now=self.now()))

    def release(self, gross: Money | None = None, payee: Payee = HUNTER) -> Operation:
        """Release and have the transfer succeed."""
        op = self.start_release(gross, payee)
        self.complete_release(op)
        return self.op(op.id)

    def fail(self, op: Operation, error: str = "declined") -> tr.Outcome:
        """A definitive gateway failure for `op`."""
        return self.apply(tr.fail_operation(self.escrow, self.op(op.id), error, now=self.now()))

    # --- refund ---------------------------------------------------------------------------------

    def start_refund(self, amount: Money | None = None, *, allow_frozen: bool = False) -> Operation:
        """Reserve `amount` (None: everything available) for a refund."""
        outcome = self.apply(
            tr.start_refund(
                self.escrow,
                op_id=self.new_id(),
                amount=amount,
                actor_id="admin_1",
                now=self.now(),
                allow_frozen=allow_frozen,
            )
        )
        return outcome.operations[0]

    def refund_snapshot(
        self, op: Operation, status: str, failure_reason: str | None = None
    ) -> RefundSnapshot:
        """The gateway's refund for `op` in `status`."""
        return RefundSnapshot(
            ref=self.op(op.id).gateway_ref or f"re_{op.id}",
            amount=op.gross,
            status=status,
            payment_ref=self.escrow.payment_ref,
            failure_reason=failure_reason,
        )

    def refund_update(
        self, op: Operation, status: str, failure_reason: str | None = None
    ) -> tr.Outcome:
        """Apply the refund's state to its operation."""
        op = self.op(op.id)
        snapshot = self.refund_snapshot(op, status, failure_reason)
        return self.apply(tr.apply_refund(self.escrow, op, snapshot, now=self.now()))

    def refund(self, amount: Money | None = None) -> Operation:
        """Refund and have the gateway say succeeded."""
        op = self.start_refund(amount)
        self.refund_update(op, "succeeded")
        return self.op(op.id)

    def external_refund(self, amount: Money, ref: str = "re_outside_1") -> tr.Outcome:
        """A refund made in the Stripe Dashboard."""
        snapshot = RefundSnapshot(
            ref=ref, amount=amount, status="succeeded", payment_ref=self.escrow.payment_ref
        )
        return self.apply(
            tr.adopt_external_refund(
                self.escrow,
                snapshot,
                op_id=self.new_id(),
                now=self.now(),
                operations=list(self.ops.values()),
            )
        )

    # --- reversal -------------------------------------------------------------------------------

    def pending_reversals(self, release: Operation) -> Money:
        """Net amounts of the open reversals of `release` (what the service passes)."""
        total = sum(
            op.net.amount
            for op in self.of_kind(OperationKind.REVERSAL)
            if op.target_id == release.id and op.status.open
        )
        return Money(total, self.escrow.currency)

    def start_reversal(self, release: Operation, amount: Money | None = None) -> Operation:
        """Record a reversal of `amount` (None: all that is left) of `release`."""
        release = self.op(release.id)
        outcome = self.apply(
            tr.start_reversal(
                self.escrow,
                release,
                op_id=self.new_id(),
                amount=amount,
                pending_reversals=self.pending_reversals(release),
                actor_id="admin_1",
                now=self.now(),
            )
        )
        return outcome.operations[0]

    def complete_reversal(self, op: Operation) -> tr.Outcome:
        """The transfer reversal for `op` exists."""
        op = self.op(op.id)
        release = self.op(op.target_id or "")
        assert release.gateway_ref is not None
        snapshot = ReversalSnapshot(
            ref=f"trr_{op.id}", amount=op.net, transfer_ref=release.gateway_ref
        )
        return self.apply(tr.complete_reversal(self.escrow, op, release, snapshot, now=self.now()))

    def reverse(self, release: Operation, amount: Money | None = None) -> Operation:
        """Reverse and have the gateway make the reversal."""
        op = self.start_reversal(release, amount)
        self.complete_reversal(op)
        return self.op(op.id)

    def external_reversal(
        self, release: Operation, amount: Money, ref: str = "trr_outside_1"
    ) -> tr.Outcome:
        """A transfer reversal made in the Stripe Dashboard."""
        release = self.op(release.id)
        assert release.gateway_ref is not None
        snapshot = ReversalSnapshot(ref=ref, amount=amount, transfer_ref=release.gateway_ref)
        return self.apply(
            tr.adopt_external_reversal(
                self.escrow, release, snapshot, op_id=self.new_id(), now=self.now()
            )
        )

    # --- disputes and fraud warnings --------------------------------------------------------------

    def dispute(
        self,
        ref: str = "dp_1",
        status: str = "needs_response",
        *,
        withdrawn: int = 0,
        reinstated: int = 0,
        amount: Money | None = None,
    ) -> tr.Outcome:
        """Apply a dispute snapshot (withdrawn/reinstated are the dispute's running totals)."""
        currency = self.escrow.currency
        snapshot = DisputeSnapshot(
            ref=ref,
            payment_ref=PAYMENT_REF,
            charge_ref=CHARGE_REF,
            amount=amount or self.escrow.amount,
            status=status,
            reason="fraudulent",
            funds_withdrawn=Money(withdrawn, currency),
            funds_reinstated=Money(reinstated, currency),
        )
        existing = self.disputes.get(ref)
        return self.apply(
            tr.apply_dispute(
                self.escrow, existing, snapshot, now=self.now(), operations=list(self.ops.values())
            )
        )

    def fraud_warning(self, ref: str = "issfr_1") -> tr.Outcome:
        """Radar raised an early fraud warning on the charge."""
        return self.apply(tr.apply_fraud_warning(self.escrow, ref))

    def clear_fraud_warning(self) -> tr.Outcome:
        """An admin cleared the fraud warning."""
        return self.apply(tr.clear_fraud_warning(self.escrow))


# --- states ---------------------------------------------------------------------------------------


def awaiting_funding(
    fees: FeeSchedule = TEN_PERCENT, amount: Money = AMOUNT, *, strict: bool = True
) -> Book:
    """An escrow opened for `amount` whose PaymentIntent ``pi_1`` exists, not paid yet."""
    book = Book(
        Escrow.new(
            id=ESCROW_ID,
            bounty_id="bounty_1",
            poster_id=POSTER_ID,
            amount=amount,
            fee_schedule=fees,
            created_at=T0,
        ),
        strict=strict,
    )
    funding = book.apply(
        tr.start_funding(book.escrow, op_id=book.new_id(), actor_id=POSTER_ID, now=T0)
    ).operations[0]
    created = book.payment(status="requires_payment_method")
    book.apply(tr.record_payment_created(book.escrow, funding, created, now=book.now()))
    return book


def funded(fees: FeeSchedule = TEN_PERCENT, amount: Money = AMOUNT) -> Book:
    """The poster's payment succeeded: everything held, nothing paid out."""
    book = awaiting_funding(fees, amount)
    book.pay()
    return book


def partially_settled(fees: FeeSchedule = TEN_PERCENT) -> Book:
    """Funded with $100.00, then $40.00 released to the hunter: $60.00 still held."""
    book = funded(fees)
    book.release(usd(4_000))
    return book


def released(fees: FeeSchedule = TEN_PERCENT) -> Book:
    """Funded with $100.00, everything released to the hunter."""
    book = funded(fees)
    book.release()
    return book


def refunded() -> Book:
    """Funded with $100.00, everything refunded to the poster."""
    book = funded()
    book.refund()
    return book


def settled() -> Book:
    """$40.00 released, the remaining $60.00 refunded: nothing held, a mix."""
    book = partially_settled()
    book.refund()
    return book


def disputed() -> Book:
    """Partially settled, then dispute ``dp_1`` withdrew the whole $100.00 charge.

    `dispute_withdrawn` is $100.00: $60.00 came out of the held money and $40.00 (already
    paid to the hunter) is the escrow's debt (`shortfall`); the escrow is frozen.
    """
    book = partially_settled()
    book.dispute("dp_1", "needs_response", withdrawn=10_000)
    return book


def cancelled() -> Book:
    """Cancelled before any payment succeeded."""
    book = awaiting_funding()
    book.cancel()
    return book
