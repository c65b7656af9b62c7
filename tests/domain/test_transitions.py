"""Focused behaviour of each pure transition (one class per transition).

Every outcome goes through `Book.apply`, which asserts ``violations(escrow, operations,
entries) == []`` over everything recorded so far; a test that reaches its end has therefore
kept I1-I4 after every step.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bountyescrow.domain import ledger
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.escrow import EscrowStatus
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import (
    META_BOUNTY,
    META_ESCROW,
    META_OPERATION,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
)
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.errors import (
    EscrowFrozenError,
    InsufficientFundsError,
    InvalidTransitionError,
    ValidationError,
)

from . import builders
from .builders import (
    ESCROW_ID,
    HUNTER,
    HUNTER_NOT_READY,
    PAYMENT_REF,
    POSTER_AS_PAYEE,
    T0,
    Book,
    usd,
)

WITH_FIXED = FeeSchedule(bps=1000, fixed=usd(30))
ESCROW = ledger.escrow_account(ESCROW_ID)
GATEWAY = ledger.gateway_account("usd")
HUNTER_ACCOUNT = ledger.payee_account(HUNTER.id)


def postings(book: Book, kind: str) -> dict[str, int]:
    """The postings of the one entry of `kind`, as {account: amount}."""
    (entry,) = [entry for entry in book.entries if entry.kind == kind]
    return {posting.account: posting.amount.amount for posting in entry.postings}


class TestStartFunding:
    def test_records_a_pending_funding_with_the_payment_request_it_will_send(self) -> None:
        book = builders.awaiting_funding()
        funding = book.funding
        assert funding.kind is OperationKind.FUNDING
        assert funding.status is OperationStatus.PENDING
        assert funding.request == CreatePayment(
            amount=usd(10_000),
            transfer_group=f"escrow_{ESCROW_ID}",
            metadata={META_ESCROW: ESCROW_ID, META_OPERATION: funding.id, META_BOUNTY: "bounty_1"},
        )
        assert book.event_types() == ["escrow.opened"]
        assert book.escrow.status is EscrowStatus.AWAITING_FUNDING
        assert book.entries == []


class TestRecordPaymentCreated:
    def test_remembers_the_payment_on_the_escrow_and_the_funding(self) -> None:
        book = builders.awaiting_funding()
        assert book.escrow.payment_ref == PAYMENT_REF
        assert book.funding.gateway_ref == PAYMENT_REF
        assert book.funding.status is OperationStatus.PENDING

    def test_recording_the_same_payment_again_changes_nothing(self) -> None:
        book = builders.awaiting_funding()
        again = tr.record_payment_created(
            book.escrow, book.funding, book.payment(status="requires_payment_method"), now=T0
        )
        assert not again.changed
        assert again.escrow == book.escrow


class TestApplyPayment:
    def test_success_books_the_funding(self) -> None:
        book = builders.awaiting_funding()
        book.pay()
        assert book.escrow.status is EscrowStatus.FUNDED
        assert (book.escrow.funded, book.escrow.held, book.escrow.available) == (
            usd(10_000),
            usd(10_000),
            usd(10_000),
        )
        assert book.escrow.charge_ref == "ch_pi_1"
        assert book.escrow.funded_at is not None
        assert book.funding.status is OperationStatus.SUCCEEDED
        assert postings(book, "funding") == {GATEWAY: -10_000, ESCROW: 10_000}
        assert book.event_types()[-1] == "escrow.funded"

    def test_the_same_success_twice_books_once(self) -> None:
        book = builders.funded()
        state = book.state()
        assert not book.pay().changed
        assert book.state() == state

    def test_a_failure_is_recorded_and_the_escrow_keeps_awaiting(self) -> None:
        book = builders.awaiting_funding()
        book.pay(status="requires_payment_method", last_error="card_declined")
        assert book.escrow.status is EscrowStatus.AWAITING_FUNDING
        assert book.escrow.last_payment_error == "card_declined"
        assert book.funding.status is OperationStatus.PENDING
        assert book.event_types()[-1] == "escrow.payment_failed"

    def test_the_same_failure_twice_is_recorded_once(self) -> None:
        book = builders.awaiting_funding()
        book.pay(status="requires_payment_method", last_error="card_declined")
        assert not book.pay(status="requires_payment_method", last_error="card_declined").changed

    def test_a_late_failure_after_success_is_ignored(self) -> None:
        book = builders.funded()
        state = book.state()
        assert not book.pay(status="requires_payment_method", last_error="card_declined").changed
        assert book.state() == state

    def test_processing_is_recorded_and_blocks_cancel(self) -> None:
        book = builders.awaiting_funding()
        book.pay(status="processing")
        assert book.escrow.status is EscrowStatus.AWAITING_FUNDING
        assert book.escrow.payment_status == "processing"
        assert book.event_types()[-1] == "escrow.payment_processing"
        with pytest.raises(InvalidTransitionError, match="processing") as caught:
            book.start_cancel()
        assert (caught.value.current, caught.value.attempted) == ("awaiting_funding", "cancel")

    def test_an_overpayment_is_booked_and_the_surplus_refunded(self) -> None:
        book = builders.awaiting_funding()
        book.pay(amount=usd(12_000))
        (refund,) = book.of_kind(OperationKind.REFUND)
        assert (refund.gross, refund.status, refund.reason) == (
            usd(2_000),
            OperationStatus.PENDING,
            "overpayment",
        )
        assert refund.request == CreateRefund(
            amount=usd(2_000),
            payment_ref=PAYMENT_REF,
            metadata={META_ESCROW: ESCROW_ID, META_OPERATION: refund.id, META_BOUNTY: "bounty_1"},
            reason="requested_by_customer",
        )
        assert (book.escrow.held, book.escrow.available) == (usd(12_000), usd(10_000))
        book.refund_update(refund, "succeeded")
        assert book.escrow.status is EscrowStatus.PARTIALLY_SETTLED
        assert (book.escrow.held, book.escrow.refunded) == (usd(10_000), usd(2_000))

    def test_a_second_payment_is_booked_and_refunded_as_a_duplicate(self) -> None:
        book = builders.funded()
        book.pay("pi_2")
        second = book.of_kind(OperationKind.FUNDING)[-1]
        assert (second.gateway_ref, second.reason, second.actor_id) == (
            "pi_2",
            "additional_payment",
            tr.GATEWAY_ACTOR,
        )
        (refund,) = book.of_kind(OperationKind.REFUND)
        assert (refund.gross, refund.reason) == (usd(10_000), "duplicate_payment")
        assert isinstance(refund.request, CreateRefund)
        assert (refund.request.payment_ref, refund.request.reason) == ("pi_2", "duplicate")
        assert (book.escrow.funded, book.escrow.held, book.escrow.available) == (
            usd(20_000),
            usd(20_000),
            usd(10_000),
        )
        assert book.escrow.payment_ref == PAYMENT_REF
        assert book.escrow.charge_ref == "ch_pi_1"

    def test_the_same_second_payment_twice_books_once(self) -> None:
        book = builders.funded()
        book.pay("pi_2")
        state = book.state()
        assert not book.pay("pi_2").changed
        assert book.state() == state

    def test_a_second_payment_before_the_first_does_not_refund_the_first(self) -> None:
        """Only the second payment is surplus: the escrow still ends up holding its amount.

        The primary payment's overpayment is measured against the bounty amount alone, not
        against `funded`, which already counts the earlier second payment.
        """
        book = builders.awaiting_funding()
        book.pay("pi_2")
        book.pay(PAYMENT_REF)
        surplus = [(op.gross, op.reason) for op in book.of_kind(OperationKind.REFUND)]
        assert surplus == [(usd(10_000), "duplicate_payment")]
        assert book.escrow.available == usd(10_000)

    def test_payments_before_the_first_never_reserve_more_than_is_held(self) -> None:
        """Found by the state machine: two early payments made the surplus exceed `held` (I2)."""
        book = builders.awaiting_funding()
        book.pay("pi_2", amount=usd(7_883))
        book.pay("pi_3", amount=usd(2_118))
        book.pay(PAYMENT_REF)
        assert book.escrow.reserved == usd(10_001)
        assert (book.escrow.held, book.escrow.available) == (usd(20_001), usd(10_000))

    def test_success_after_cancel_books_then_refunds_everything(self) -> None:
        book = builders.cancelled()
        book.pay()
        assert book.escrow.status is EscrowStatus.FUNDED
        (refund,) = book.of_kind(OperationKind.REFUND)
        assert (refund.gross, refund.reason) == (usd(10_000), "paid_after_cancel")
        assert book.escrow.available == usd(0)
        with pytest.raises(InsufficientFundsError):
            book.start_release()
        book.refund_update(refund, "succeeded")
        assert book.escrow.status is EscrowStatus.REFUNDED
        assert (book.escrow.funded, book.escrow.refunded) == (usd(10_000), usd(10_000))

    def test_canceled_in_the_dashboard_cancels_an_unfunded_escrow(self) -> None:
        book = builders.awaiting_funding()
        book.pay(status="canceled")
        assert book.escrow.status is EscrowStatus.CANCELLED
        assert book.funding.status is OperationStatus.CANCELLED
        assert book.events[-1].type == "escrow.cancelled"
        assert book.events[-1].data["by"] == tr.GATEWAY_ACTOR

    def test_canceled_after_success_changes_nothing(self) -> None:
        book = builders.funded()
        assert not book.pay(status="canceled").changed

    def test_canceled_event_for_an_already_cancelled_escrow_changes_nothing(self) -> None:
        """Stripe's ``payment_intent.canceled`` follows every cancel the library makes.

        It must not settle the cancelled funding again nor publish a second
        ``escrow.cancelled`` event attributed to ``gateway:external``.
        """
        book = builders.cancelled()
        state = book.state()
        assert not book.pay(status="canceled").changed
        assert book.state() == state
        assert book.event_types().count("escrow.cancelled") == 1

    def test_refuses_a_payment_in_another_currency(self) -> None:
        book = builders.awaiting_funding()
        with pytest.raises(ValidationError, match="eur"):
            book.pay(currency="eur")


class TestCancel:
    def test_records_the_intent_then_cancels(self) -> None:
        book = builders.awaiting_funding()
        cancel = book.start_cancel()
        assert cancel.status is OperationStatus.PENDING
        assert cancel.request == CancelPayment(payment_ref=PAYMENT_REF)
        assert book.escrow.status is EscrowStatus.AWAITING_FUNDING
        book.complete_cancel(cancel)
        assert book.escrow.status is EscrowStatus.CANCELLED
        assert book.op(cancel.id).status is OperationStatus.SUCCEEDED
        assert book.funding.status is OperationStatus.CANCELLED
        assert not book.escrow.is_open

    def test_without_a_payment_there_is_nothing_to_send(self) -> None:
        book = builders.awaiting_funding()
        book.escrow = book.escrow.__class__.new(
            id="esc_9",
            bounty_id="b",
            poster_id="p",
            amount=usd(100),
            fee_schedule=FeeSchedule(0),
            created_at=T0,
        )
        outcome = tr.start_cancel(book.escrow, op_id="op_c", actor_id="p", now=T0)
        assert outcome.operations[0].request is None

    @pytest.mark.parametrize("state", [builders.funded, builders.cancelled, builders.released])
    def test_only_an_escrow_awaiting_funding_can_be_cancelled(self, state: object) -> None:
        book: Book = state()  # type: ignore[operator]
        with pytest.raises(InvalidTransitionError, match="refund it instead") as caught:
            book.start_cancel()
        assert caught.value.current == book.escrow.status.value
        assert caught.value.attempted == "cancel"

    def test_a_payment_that_succeeds_before_the_cancel_lands_wins(self) -> None:
        book = builders.awaiting_funding()
        cancel = book.start_cancel()
        book.pay()
        book.complete_cancel(cancel)
        assert book.escrow.status is EscrowStatus.FUNDED
        failed = book.op(cancel.id)
        assert failed.status is OperationStatus.FAILED
        assert failed.error == "the payment succeeded before it was cancelled"
        assert book.escrow.held == usd(10_000)


class TestStartRelease:
    def test_reserves_the_gross_and_records_the_transfer_request(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        assert (op.kind, op.status) == (OperationKind.RELEASE, OperationStatus.PENDING)
        assert (op.gross, op.fee, op.net) == (usd(4_000), usd(400), usd(3_600))
        assert op.request == CreateTransfer(
            amount=usd(3_600),
            destination=HUNTER.account_ref,
            source_transaction="ch_pi_1",
            transfer_group=f"escrow_{ESCROW_ID}",
            metadata={META_ESCROW: ESCROW_ID, META_OPERATION: op.id, META_BOUNTY: "bounty_1"},
        )
        assert (book.escrow.held, book.escrow.reserved, book.escrow.available) == (
            usd(10_000),
            usd(4_000),
            usd(6_000),
        )
        assert book.escrow.status is EscrowStatus.FUNDED
        assert book.entries[-1].kind == "funding"  # nothing booked until the transfer exists

    def test_none_takes_everything_available(self) -> None:
        book = builders.funded()
        book.start_release(usd(3_000))
        op = book.start_release(None)
        assert op.gross == usd(7_000)
        assert book.escrow.available == usd(0)

    def test_charges_the_fixed_fee_on_the_first_release_only(self) -> None:
        book = builders.funded(WITH_FIXED)
        first = book.release(usd(5_000))
        second = book.release(usd(5_000))
        assert (first.fee, first.fixed_fee, first.net) == (usd(530), usd(30), usd(4_470))
        assert (second.fee, second.fixed_fee, second.net) == (usd(500), usd(0), usd(4_500))
        assert book.escrow.fees == usd(1_030)

    def test_charges_the_fixed_fee_again_after_the_first_release_failed(self) -> None:
        book = builders.funded(WITH_FIXED)
        first = book.start_release(usd(5_000))
        book.fail(first)
        assert not book.escrow.fixed_fee_charged
        again = book.release(usd(5_000))
        assert (again.fee, again.fixed_fee) == (usd(530), usd(30))

    def test_charges_the_fixed_fee_again_after_a_waiting_first_release_was_cancelled(
        self,
    ) -> None:
        book = builders.funded(WITH_FIXED)
        first = book.start_release(usd(5_000), HUNTER_NOT_READY)
        book.apply(tr.cancel_waiting(book.escrow, book.op(first.id), now=T0))
        assert book.release(usd(5_000)).fixed_fee == usd(30)

    def test_a_release_started_while_the_first_is_pending_carries_no_fixed_fee(self) -> None:
        book = builders.funded(WITH_FIXED)
        book.start_release(usd(5_000))
        assert book.start_release(usd(5_000)).fixed_fee == usd(0)

    def test_waits_for_a_payee_that_is_not_ready_and_keeps_the_money_reserved(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000), HUNTER_NOT_READY)
        assert op.status is OperationStatus.AWAITING_PAYEE
        assert book.escrow.available == usd(6_000)

    def test_refuses_more_than_available(self) -> None:
        book = builders.funded()
        book.start_release(usd(7_000))
        with pytest.raises(InsufficientFundsError, match=r"only \$30.00 is available") as caught:
            book.start_release(usd(4_000))
        assert (caught.value.available, caught.value.requested) == (usd(3_000), usd(4_000))

    def test_refuses_when_nothing_is_available(self) -> None:
        book = builders.released()
        with pytest.raises(InsufficientFundsError, match="nothing is available") as caught:
            book.start_release()
        assert (caught.value.available, caught.value.requested) == (usd(0), None)

    def test_refuses_a_release_that_leaves_nothing_for_the_payee(self) -> None:
        book = builders.funded(FeeSchedule(1000, fixed=usd(500)))
        with pytest.raises(ValidationError, match="leaves nothing for the payee"):
            book.start_release(usd(500))
        assert book.escrow.available == usd(10_000)

    def test_refuses_to_release_to_the_poster(self) -> None:
        book = builders.funded()
        with pytest.raises(ValidationError, match="own poster"):
            book.start_release(usd(1_000), POSTER_AS_PAYEE)

    def test_refuses_another_currency(self) -> None:
        book = builders.funded()
        with pytest.raises(ValidationError, match="eur"):
            book.start_release(Money(1_000, "eur"))

    @pytest.mark.parametrize("amount", [0, -100])
    def test_refuses_zero_or_negative_amounts(self, amount: int) -> None:
        book = builders.funded()
        with pytest.raises(ValidationError, match="must be positive"):
            book.start_release(usd(amount))

    def test_refuses_before_funding(self) -> None:
        book = builders.awaiting_funding()
        with pytest.raises(InvalidTransitionError) as caught:
            book.start_release(usd(1_000))
        assert (caught.value.current, caught.value.attempted) == ("awaiting_funding", "release")


class TestCompleteRelease:
    def test_books_escrow_out_payee_net_and_platform_fee(self) -> None:
        book = builders.funded(WITH_FIXED)
        op = book.release(usd(4_000))
        assert postings(book, "release") == {
            ESCROW: -4_000,
            HUNTER_ACCOUNT: 3_570,
            ledger.PLATFORM_FEES: 430,
        }
        assert book.entries[-1].ref == op.gateway_ref == f"tr_{op.id}"
        assert op.status is OperationStatus.SUCCEEDED
        assert (book.escrow.held, book.escrow.released, book.escrow.fees) == (
            usd(6_000),
            usd(4_000),
            usd(430),
        )
        assert book.escrow.reserved == usd(0)
        assert book.escrow.status is EscrowStatus.PARTIALLY_SETTLED

    def test_the_same_transfer_twice_books_once(self) -> None:
        book = builders.funded()
        op = book.release(usd(4_000))
        state = book.state()
        assert not book.complete_release(op).changed
        assert book.state() == state

    def test_a_transfer_for_a_failed_release_is_refused_loudly(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        book.fail(op)
        with pytest.raises(InvalidTransitionError) as caught:
            book.complete_release(op)
        assert (caught.value.current, caught.value.attempted) == ("failed", "complete_release")

    def test_finishes_while_the_escrow_is_frozen(self) -> None:
        """Operations already in flight finish when a dispute opens."""
        book = builders.funded()
        op = book.start_release(usd(4_000))
        book.dispute()
        book.complete_release(op)
        assert book.escrow.status is EscrowStatus.DISPUTED
        assert book.escrow.released == usd(4_000)


class TestFailOperation:
    def test_gives_the_reservation_back(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        book.fail(op, "account_closed")
        failed = book.op(op.id)
        assert (failed.status, failed.error) == (OperationStatus.FAILED, "account_closed")
        assert (book.escrow.held, book.escrow.available) == (usd(10_000), usd(10_000))
        assert book.events[-1].type == "operation.failed"

    def test_a_finished_operation_is_left_alone(self) -> None:
        book = builders.funded()
        op = book.release(usd(4_000))
        state = book.state()
        assert not book.fail(op).changed
        assert book.state() == state


class TestWaitForPayeeAndPayeeReady:
    def test_a_destination_that_cannot_receive_sends_the_release_back_to_waiting(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        book.apply(tr.wait_for_payee(book.escrow, book.op(op.id), "cannot receive", now=T0))
        assert book.op(op.id).status is OperationStatus.AWAITING_PAYEE
        assert book.escrow.available == usd(6_000)

    def test_a_ready_payee_makes_the_waiting_release_pending_with_the_current_account(
        self,
    ) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000), HUNTER_NOT_READY)
        moved = Payee(id=HUNTER_NOT_READY.id, account_ref="acct_new", ready=True, country="US")
        book.apply(tr.payee_ready(book.escrow, book.op(op.id), moved, now=T0))
        ready = book.op(op.id)
        assert ready.status is OperationStatus.PENDING
        assert isinstance(ready.request, CreateTransfer)
        assert ready.request.destination == "acct_new"
        assert book.escrow.available == usd(6_000)

    def test_payee_ready_leaves_a_pending_release_alone(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        assert not tr.payee_ready(book.escrow, op, HUNTER, now=T0).changed


class TestCancelWaiting:
    def test_cancels_a_release_waiting_for_its_payee(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000), HUNTER_NOT_READY)
        book.apply(tr.cancel_waiting(book.escrow, book.op(op.id), now=T0))
        assert book.op(op.id).status is OperationStatus.CANCELLED
        assert book.escrow.available == usd(10_000)

    def test_refuses_a_release_already_sent(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(4_000))
        with pytest.raises(InvalidTransitionError) as caught:
            tr.cancel_waiting(book.escrow, op, now=T0)
        assert (caught.value.current, caught.value.attempted) == ("pending", "cancel_operation")


class TestStartRefund:
    def test_reserves_the_amount_and_records_the_refund_request(self) -> None:
        book = builders.funded()
        op = book.start_refund(usd(2_500))
        assert (op.kind, op.status, op.gross, op.fee) == (
            OperationKind.REFUND,
            OperationStatus.PENDING,
            usd(2_500),
            usd(0),
        )
        assert isinstance(op.request, CreateRefund)
        assert (op.request.amount, op.request.payment_ref) == (usd(2_500), PAYMENT_REF)
        assert book.escrow.available == usd(7_500)

    def test_refuses_more_than_available(self) -> None:
        book = builders.partially_settled()
        with pytest.raises(InsufficientFundsError) as caught:
            book.start_refund(usd(7_000))
        assert (caught.value.available, caught.value.requested) == (usd(6_000), usd(7_000))

    def test_refuses_before_funding(self) -> None:
        with pytest.raises(InvalidTransitionError) as caught:
            builders.cancelled().start_refund()
        assert (caught.value.current, caught.value.attempted) == ("cancelled", "refund")

    def test_refuses_another_currency(self) -> None:
        with pytest.raises(ValidationError):
            builders.funded().start_refund(Money(100, "eur"))


class TestApplyRefund:
    def test_success_moves_the_money_out_of_held(self) -> None:
        book = builders.funded()
        op = book.refund(usd(2_500))
        assert op.status is OperationStatus.SUCCEEDED
        assert postings(book, "refund") == {ESCROW: -2_500, GATEWAY: 2_500}
        assert (book.escrow.held, book.escrow.refunded, book.escrow.reserved) == (
            usd(7_500),
            usd(2_500),
            usd(0),
        )

    def test_pending_keeps_the_reservation(self) -> None:
        book = builders.funded()
        op = book.start_refund(usd(2_500))
        book.refund_update(op, "pending")
        pending = book.op(op.id)
        assert (pending.status, pending.gateway_ref, pending.gateway_status) == (
            OperationStatus.PENDING,
            f"re_{op.id}",
            "pending",
        )
        assert (book.escrow.held, book.escrow.available) == (usd(10_000), usd(7_500))
        assert not book.refund_update(op, "pending").changed

    def test_failure_gives_the_reservation_back(self) -> None:
        book = builders.funded()
        op = book.start_refund(usd(2_500))
        book.refund_update(op, "pending")
        book.refund_update(op, "failed", "expired_or_canceled_card")
        failed = book.op(op.id)
        assert failed.status is OperationStatus.FAILED
        assert failed.error == "refund failed: expired_or_canceled_card"
        assert book.escrow.available == usd(10_000)
        assert book.event_types()[-2:] == ["operation.failed", "refund.failed"]

    def test_failure_after_success_books_the_money_back(self) -> None:
        book = builders.funded()
        op = book.refund()
        assert book.escrow.status is EscrowStatus.REFUNDED
        book.refund_update(op, "failed", "lost_or_stolen_card")
        assert postings(book, "refund_failed") == {ESCROW: 10_000, GATEWAY: -10_000}
        assert book.op(op.id).status is OperationStatus.FAILED
        assert (book.escrow.held, book.escrow.refunded, book.escrow.available) == (
            usd(10_000),
            usd(0),
            usd(10_000),
        )
        assert book.escrow.status is EscrowStatus.FUNDED
        assert book.event_types()[-1] == "refund.failed"

    def test_success_twice_books_once(self) -> None:
        book = builders.funded()
        op = book.refund()
        assert not book.refund_update(op, "succeeded").changed

    def test_success_after_failure_is_ignored(self) -> None:
        book = builders.funded()
        op = book.start_refund()
        book.refund_update(op, "failed")
        assert not book.refund_update(op, "succeeded").changed
        assert book.escrow.available == usd(10_000)

    def test_refund_started_while_frozen_with_allow_frozen(self) -> None:
        book = builders.funded()
        book.fraud_warning()
        op = book.start_refund(allow_frozen=True)
        book.refund_update(op, "succeeded")
        assert book.escrow.refunded == usd(10_000)
        # Nothing is held any more, so the warning has nothing left to freeze.
        assert book.escrow.status is EscrowStatus.REFUNDED
        assert book.escrow.fraud_warning


class TestAdoptExternalRefund:
    def test_takes_the_refund_from_available(self) -> None:
        book = builders.funded()
        book.external_refund(usd(3_000))
        (op,) = book.of_kind(OperationKind.EXTERNAL_REFUND)
        assert (op.status, op.gateway_ref, op.actor_id, op.shortfall) == (
            OperationStatus.SUCCEEDED,
            "re_outside_1",
            tr.GATEWAY_ACTOR,
            usd(0),
        )
        assert (book.escrow.held, book.escrow.refunded) == (usd(7_000), usd(3_000))
        assert postings(book, "refund") == {ESCROW: -3_000, GATEWAY: 3_000}
        assert book.event_types()[-1] == "operation.adopted"

    def test_beyond_available_and_in_flight_is_the_escrows_debt(self) -> None:
        """`refunded` counts the whole refund; what `held` could not cover is debt."""
        book = builders.funded()
        book.start_release(usd(8_000))  # may be in flight: the outside refund cannot take it
        book.external_refund(usd(3_000))
        (op,) = book.of_kind(OperationKind.EXTERNAL_REFUND)
        assert op.shortfall == usd(1_000)
        assert (book.escrow.held, book.escrow.refunded, book.escrow.shortfall) == (
            usd(8_000),
            usd(3_000),
            usd(1_000),
        )
        assert postings(book, "refund") == {
            ESCROW: -2_000,
            ledger.PLATFORM_SHORTFALL: -1_000,
            GATEWAY: 3_000,
        }
        assert book.escrow.available == usd(0)

    def test_a_late_failure_gives_back_what_it_took(self) -> None:
        book = builders.released()
        book.external_refund(usd(3_000))
        assert book.escrow.shortfall == usd(3_000)
        (op,) = book.of_kind(OperationKind.EXTERNAL_REFUND)
        book.refund_update(op, "failed")
        assert book.escrow.shortfall == usd(0)
        assert book.balance(ledger.PLATFORM_SHORTFALL) == 0
        assert book.escrow.status is EscrowStatus.RELEASED

    def test_adopted_even_while_frozen(self) -> None:
        book = builders.funded()
        book.fraud_warning()
        book.external_refund(usd(10_000))
        assert book.escrow.refunded == usd(10_000)

    def test_refuses_another_currency(self) -> None:
        book = builders.funded()
        with pytest.raises(ValidationError):
            book.external_refund(Money(100, "eur"))


class TestReversalFeeShare:
    @staticmethod
    def release(fee: int, net: int) -> Operation:
        return Operation(
            id="op_r",
            escrow_id=ESCROW_ID,
            kind=OperationKind.RELEASE,
            status=OperationStatus.SUCCEEDED,
            gross=usd(fee + net),
            fee=usd(fee),
            net=usd(net),
            actor_id="p",
            created_at=T0,
            updated_at=T0,
        )

    def test_the_whole_net_gives_the_whole_fee_back_fixed_part_included(self) -> None:
        assert tr.reversal_fee_share(self.release(1_030, 8_970), usd(8_970)) == usd(1_030)

    def test_part_of_the_net_gives_the_same_share_of_the_fee_rounded_down(self) -> None:
        # 1030 * 1000 / 8970 = 114.8...
        assert tr.reversal_fee_share(self.release(1_030, 8_970), usd(1_000)) == usd(114)

    def test_pieces_that_add_up_to_the_net_may_leave_rounding_with_the_platform(self) -> None:
        release = self.release(3, 7)
        pieces = [tr.reversal_fee_share(release, usd(n)) for n in (3, 4)]
        assert pieces == [usd(1), usd(1)]  # the written rule: each piece rounds down

    @given(
        fee=st.integers(min_value=0, max_value=10**9),
        net=st.integers(min_value=1, max_value=10**9),
        data=st.data(),
    )
    def test_never_more_than_the_fee_and_never_negative(
        self, fee: int, net: int, data: st.DataObject
    ) -> None:
        release = self.release(fee, net)
        pieces = data.draw(st.lists(st.integers(1, net), min_size=1, max_size=5))
        shares = []
        left = net
        for piece in pieces:
            piece = min(piece, left)
            if piece <= 0:
                break
            shares.append(tr.reversal_fee_share(release, usd(piece)).amount)
            left -= piece
        assert all(share >= 0 for share in shares)
        assert sum(shares) <= fee


class TestStartReversal:
    def test_records_the_reversal_with_its_fee_share(self) -> None:
        book = builders.funded(WITH_FIXED)
        release = book.release(usd(10_000))  # fee 1030, net 8970
        op = book.start_reversal(release, usd(1_000))
        assert (op.kind, op.status) == (OperationKind.REVERSAL, OperationStatus.PENDING)
        assert (op.net, op.fee, op.gross) == (usd(1_000), usd(114), usd(1_114))
        assert (op.target_id, op.payee_id) == (release.id, HUNTER.id)
        assert op.request == CreateReversal(
            amount=usd(1_000),
            transfer_ref=release.gateway_ref or "",
            metadata={META_ESCROW: ESCROW_ID, META_OPERATION: op.id, META_BOUNTY: "bounty_1"},
        )
        assert book.escrow.held == usd(0)  # nothing moves until the reversal exists

    def test_none_reverses_everything_left(self) -> None:
        book = builders.released()
        release = book.of_kind(OperationKind.RELEASE)[0]
        book.reverse(release, usd(2_000))
        op = book.start_reversal(release)
        assert op.net == usd(7_000)

    def test_refuses_more_than_is_left_to_reverse(self) -> None:
        book = builders.released()
        release = book.of_kind(OperationKind.RELEASE)[0]
        book.reverse(release, usd(6_000))
        with pytest.raises(InsufficientFundsError, match="left to reverse") as caught:
            book.start_reversal(release, usd(3_001))
        assert (caught.value.available, caught.value.requested) == (usd(3_000), usd(3_001))

    def test_pending_reversals_count_against_what_is_left(self) -> None:
        book = builders.released()
        release = book.of_kind(OperationKind.RELEASE)[0]
        book.start_reversal(release, usd(6_000))
        with pytest.raises(InsufficientFundsError) as caught:
            book.start_reversal(release, usd(3_001))
        assert caught.value.available == usd(3_000)

    def test_refuses_when_nothing_is_left(self) -> None:
        book = builders.released()
        release = book.reverse(book.of_kind(OperationKind.RELEASE)[0])
        with pytest.raises(InsufficientFundsError):
            book.start_reversal(book.op(release.target_id or ""))

    def test_only_a_succeeded_release_can_be_reversed(self) -> None:
        book = builders.funded()
        pending = book.start_release(usd(1_000))
        with pytest.raises(InvalidTransitionError, match="only a succeeded release") as caught:
            book.start_reversal(pending)
        assert (caught.value.current, caught.value.attempted) == ("pending", "reverse")
        refund = book.refund(usd(1_000))
        with pytest.raises(InvalidTransitionError):
            book.start_reversal(refund)


class TestCompleteReversal:
    def test_brings_the_money_and_the_fee_share_back_to_held(self) -> None:
        book = builders.funded(WITH_FIXED)
        release = book.release(usd(10_000))
        op = book.reverse(release, usd(1_000))
        assert op.status is OperationStatus.SUCCEEDED
        assert postings(book, "reversal") == {
            HUNTER_ACCOUNT: -1_000,
            ledger.PLATFORM_FEES: -114,
            ESCROW: 1_114,
        }
        assert (book.escrow.held, book.escrow.released, book.escrow.fees) == (
            usd(1_114),
            usd(8_886),
            usd(916),
        )
        assert book.op(release.id).reversed == usd(1_000)
        assert book.escrow.status is EscrowStatus.PARTIALLY_SETTLED

    def test_a_whole_reversal_undoes_the_release(self) -> None:
        book = builders.funded(WITH_FIXED)
        release = book.release()
        book.reverse(release)
        assert (book.escrow.held, book.escrow.released, book.escrow.fees) == (
            usd(10_000),
            usd(0),
            usd(0),
        )
        assert book.balance(HUNTER_ACCOUNT) == 0
        assert book.balance(ledger.PLATFORM_FEES) == 0
        assert book.escrow.status is EscrowStatus.FUNDED

    def test_the_same_reversal_twice_books_once(self) -> None:
        book = builders.released()
        op = book.reverse(book.of_kind(OperationKind.RELEASE)[0], usd(1_000))
        assert not book.complete_reversal(op).changed

    def test_a_failed_reversal_moves_nothing(self) -> None:
        book = builders.released()
        op = book.start_reversal(book.of_kind(OperationKind.RELEASE)[0])
        book.fail(op, "insufficient_funds")
        assert book.op(op.id).status is OperationStatus.FAILED
        assert book.escrow.status is EscrowStatus.RELEASED


class TestAdoptExternalReversal:
    def test_brings_the_money_back_to_held(self) -> None:
        book = builders.released()
        release = book.of_kind(OperationKind.RELEASE)[0]
        book.external_reversal(release, usd(4_500))
        (op,) = book.of_kind(OperationKind.EXTERNAL_REVERSAL)
        assert (op.status, op.net, op.fee, op.actor_id) == (
            OperationStatus.SUCCEEDED,
            usd(4_500),
            usd(500),
            tr.GATEWAY_ACTOR,
        )
        assert (book.escrow.held, book.escrow.released) == (usd(5_000), usd(5_000))
        assert book.op(release.id).reversed == usd(4_500)
        assert book.event_types()[-1] == "operation.adopted"

    def test_never_takes_more_than_is_left_of_the_release(self) -> None:
        book = builders.released()
        release = book.of_kind(OperationKind.RELEASE)[0]
        book.reverse(release, usd(6_000))
        book.external_reversal(release, usd(5_000))
        (op,) = book.of_kind(OperationKind.EXTERNAL_REVERSAL)
        assert op.net == usd(3_000)
        # The pieces' fee shares (666 + 334) add up to the whole fee.
        assert (op.fee, book.escrow.held, book.escrow.released, book.escrow.fees) == (
            usd(334),
            usd(10_000),
            usd(0),
            usd(0),
        )

    def test_adopted_even_while_frozen(self) -> None:
        book = builders.released()
        book.fraud_warning()
        book.external_reversal(book.of_kind(OperationKind.RELEASE)[0], usd(9_000))
        assert book.escrow.held == usd(10_000)


class TestApplyDispute:
    def test_created_freezes_without_taking_money(self) -> None:
        book = builders.funded()
        book.dispute()
        assert book.escrow.status is EscrowStatus.DISPUTED
        assert book.escrow.frozen
        assert book.escrow.held == usd(10_000)
        assert book.disputes["dp_1"].open
        assert book.event_types()[-2:] == ["dispute.opened", "escrow.frozen"]

    def test_withdrawal_takes_from_available_first_and_the_rest_is_debt(self) -> None:
        book = builders.funded()
        release = book.start_release(usd(7_000))  # in flight: keeps its reservation
        book.dispute(withdrawn=10_000)
        assert (book.escrow.held, book.escrow.dispute_withdrawn, book.escrow.shortfall) == (
            usd(7_000),
            usd(10_000),
            usd(7_000),
        )
        assert book.escrow.available == usd(0)
        dispute = book.disputes["dp_1"]
        assert (dispute.from_held, dispute.from_shortfall) == (usd(3_000), usd(7_000))
        assert postings(book, "dispute_withdrawal") == {
            ESCROW: -3_000,
            ledger.PLATFORM_SHORTFALL: -7_000,
            GATEWAY: 10_000,
        }
        book.complete_release(release)  # the release in flight still finishes
        assert book.escrow.held == usd(0)

    def test_reinstatement_reverses_the_withdrawal(self) -> None:
        book = builders.partially_settled()
        book.dispute(withdrawn=10_000)
        book.dispute(status="under_review", withdrawn=10_000, reinstated=10_000)
        assert (book.escrow.held, book.escrow.dispute_withdrawn, book.escrow.shortfall) == (
            usd(6_000),
            usd(0),
            usd(0),
        )
        assert postings(book, "dispute_reinstatement") == {ESCROW: 10_000, GATEWAY: -10_000}
        # The reinstated money pays the escrow's debt first.
        assert postings(book, tr.SHORTFALL_SETTLED) == {
            ESCROW: -4_000,
            ledger.PLATFORM_SHORTFALL: 4_000,
        }
        assert book.balance(ledger.PLATFORM_SHORTFALL) == 0
        assert book.escrow.status is EscrowStatus.DISPUTED  # still open until won

    def test_won_unfreezes(self) -> None:
        book = builders.disputed()
        book.dispute(status="won", withdrawn=10_000, reinstated=10_000)
        assert book.escrow.status is EscrowStatus.PARTIALLY_SETTLED
        assert book.event_types()[-2:] == ["dispute.closed", "escrow.unfrozen"]

    def test_lost_unfreezes_and_keeps_the_withdrawal(self) -> None:
        book = builders.disputed()
        book.dispute(status="lost", withdrawn=10_000)
        assert book.escrow.status is EscrowStatus.SETTLED
        assert (book.escrow.dispute_withdrawn, book.escrow.shortfall) == (
            usd(10_000),
            usd(4_000),
        )

    @pytest.mark.parametrize("status", ["warning_closed", "prevented"])
    def test_other_closing_statuses_unfreeze(self, status: str) -> None:
        book = builders.funded()
        book.dispute()
        book.dispute(status=status)
        assert not book.escrow.frozen

    def test_closed_before_created(self) -> None:
        """A dispute first seen closed books its money and never freezes the escrow."""
        book = builders.funded()
        book.dispute(status="lost", withdrawn=10_000)
        assert book.escrow.status is EscrowStatus.SETTLED
        assert book.escrow.dispute_withdrawn == usd(10_000)
        assert "escrow.frozen" not in book.event_types()
        assert book.event_types()[-1] == "dispute.closed"
        # The `created` event arrives later; the re-fetched dispute is still lost.
        assert not book.dispute(status="lost", withdrawn=10_000).changed

    def test_won_before_created_moves_the_money_out_and_back(self) -> None:
        book = builders.funded()
        book.dispute(status="won", withdrawn=10_000, reinstated=10_000)
        assert book.escrow.status is EscrowStatus.FUNDED
        assert book.escrow.held == usd(10_000)

    def test_an_inquiry_takes_no_money_but_freezes(self) -> None:
        book = builders.funded()
        book.dispute("dp_2", "warning_needs_response")
        assert book.escrow.status is EscrowStatus.DISPUTED
        assert book.escrow.held == usd(10_000)
        assert book.disputes["dp_2"].is_inquiry
        assert book.events[-2].data["inquiry"] is True
        book.dispute("dp_2", "warning_closed")
        assert book.escrow.status is EscrowStatus.FUNDED

    def test_several_disputes_keep_the_escrow_frozen_until_all_close(self) -> None:
        book = builders.funded()
        book.dispute("dp_1")
        book.dispute("dp_2", "warning_needs_response")
        book.dispute("dp_1", "won")
        assert book.escrow.frozen
        book.dispute("dp_2", "warning_closed")
        assert not book.escrow.frozen

    def test_the_same_snapshot_twice_changes_nothing(self) -> None:
        book = builders.disputed()
        state = book.state()
        assert not book.dispute(withdrawn=10_000).changed
        assert book.state() == state

    def test_refuses_a_dispute_in_another_currency(self) -> None:
        book = builders.funded()
        with pytest.raises(ValidationError):
            book.dispute(amount=Money(100, "eur"))


class TestFraudWarning:
    def test_freezes_until_cleared(self) -> None:
        book = builders.funded()
        book.fraud_warning()
        assert book.escrow.status is EscrowStatus.DISPUTED
        assert book.event_types()[-1] == "escrow.frozen"
        assert not book.fraud_warning().changed
        book.clear_fraud_warning()
        assert book.escrow.status is EscrowStatus.FUNDED
        assert book.event_types()[-1] == "escrow.unfrozen"

    def test_clearing_leaves_an_open_dispute_frozen(self) -> None:
        book = builders.funded()
        book.fraud_warning()
        book.dispute()
        outcome = book.clear_fraud_warning()
        assert book.escrow.frozen
        assert outcome.events == ()

    def test_clearing_without_a_warning_changes_nothing(self) -> None:
        assert not builders.funded().clear_fraud_warning().changed


class TestFrozenEscrow:
    """While frozen, no release, refund or reversal starts; an allowed admin refund does."""

    @pytest.fixture(params=["dispute", "fraud_warning"])
    def frozen(self, request: pytest.FixtureRequest) -> Book:
        book = builders.partially_settled()
        if request.param == "dispute":
            book.dispute()
        else:
            book.fraud_warning()
        assert book.escrow.frozen
        return book

    def test_refuses_release(self, frozen: Book) -> None:
        with pytest.raises(EscrowFrozenError, match="frozen") as caught:
            frozen.start_release(usd(1_000))
        assert caught.value.details == {"escrow_id": ESCROW_ID}

    def test_refuses_refund(self, frozen: Book) -> None:
        with pytest.raises(EscrowFrozenError):
            frozen.start_refund(usd(1_000))

    def test_refuses_reversal(self, frozen: Book) -> None:
        with pytest.raises(EscrowFrozenError):
            frozen.start_reversal(frozen.of_kind(OperationKind.RELEASE)[0])

    def test_allows_a_refund_with_allow_frozen(self, frozen: Book) -> None:
        op = frozen.start_refund(usd(1_000), allow_frozen=True)
        frozen.refund_update(op, "succeeded")
        assert frozen.escrow.refunded == usd(1_000)
        assert frozen.escrow.frozen
