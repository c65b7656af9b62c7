"""The money rules of the pure transitions.

Money that left at the gateway outside the library is the escrow's debt until money comes
back; a frozen escrow sends nothing; every amount the domain derives is one Stripe accepts,
three-decimal currencies included; requests carry the deployment's namespace.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bountyescrow.domain import ledger
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.amount_rules import problem, round_down, step
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import META_NAMESPACE
from bountyescrow.domain.money import THREE_DECIMAL, Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.errors import InsufficientFundsError, ValidationError

from . import builders
from .builders import HUNTER, HUNTER_NOT_READY, T0, Book, usd

FAILED = OperationStatus.FAILED
AWAITING = OperationStatus.AWAITING_PAYEE


def ready(op: Operation) -> Payee:
    return Payee(id=op.payee_id or "", account_ref="acct_now_ready", ready=True, country="US")


class TestOutsideRefundBeforeFunding:
    def test_the_refund_is_debt_until_the_payment_is_booked(self) -> None:
        book = builders.awaiting_funding()
        book.external_refund(usd(10_000))
        escrow = book.escrow
        assert (escrow.funded, escrow.held, escrow.refunded, escrow.shortfall) == (
            usd(0),
            usd(0),
            usd(10_000),
            usd(10_000),
        )

    def test_the_payment_booked_later_pays_the_debt_first(self) -> None:
        book = builders.awaiting_funding()
        book.external_refund(usd(10_000))
        book.pay()
        escrow = book.escrow
        assert (escrow.funded, escrow.held, escrow.refunded, escrow.shortfall) == (
            usd(10_000),
            usd(0),
            usd(10_000),
            usd(0),
        )
        assert escrow.status.value == "refunded"
        assert book.balance(ledger.PLATFORM_SHORTFALL) == 0
        assert "escrow.shortfall_settled" in book.event_types()
        with pytest.raises(InsufficientFundsError):
            book.start_release(usd(9_000))

    def test_a_partial_refund_leaves_the_rest_to_release(self) -> None:
        book = builders.awaiting_funding()
        book.external_refund(usd(3_000))
        book.pay()
        assert (book.escrow.held, book.escrow.available) == (usd(7_000), usd(7_000))

    def test_an_overpayment_is_refunded_whole_and_the_debt_waits_for_it(self) -> None:
        """The surplus is refunded whole; if the gateway refuses it, it pays the debt."""
        book = builders.awaiting_funding()
        book.external_refund(usd(12_000), ref="re_all")
        book.pay(amount=usd(12_000))
        (surplus,) = book.of_kind(OperationKind.REFUND)
        assert surplus.gross == usd(2_000)
        assert (book.escrow.held, book.escrow.reserved, book.escrow.shortfall) == (
            usd(2_000),
            usd(2_000),
            usd(2_000),
        )
        book.refund_update(surplus, "failed", "charge_already_refunded")
        assert (book.escrow.held, book.escrow.shortfall) == (usd(0), usd(0))


class TestWithdrawalsTakeFromHeld:
    def test_a_release_waiting_for_its_payee_is_cut(self) -> None:
        book = builders.funded()
        waiting = book.start_release(usd(9_000), HUNTER_NOT_READY)
        book.dispute(withdrawn=10_000)
        cut = book.op(waiting.id)
        assert cut.status is FAILED
        assert cut.error == "funds withdrawn by dispute dp_1"
        assert (book.escrow.held, book.escrow.reserved, book.escrow.shortfall) == (
            usd(0),
            usd(0),
            usd(0),
        )

    def test_only_as_many_waiting_releases_as_needed_are_cut_newest_first(self) -> None:
        book = builders.funded()
        older = book.start_release(usd(3_000), HUNTER_NOT_READY)
        newer = book.start_release(usd(3_000), HUNTER_NOT_READY)
        book.external_refund(usd(6_000))
        assert book.op(older.id).status is AWAITING
        assert book.op(newer.id).status is FAILED
        assert book.op(newer.id).error == "funds refunded outside bountyescrow (re_outside_1)"
        assert (book.escrow.held, book.escrow.reserved, book.escrow.available) == (
            usd(4_000),
            usd(3_000),
            usd(1_000),
        )

    def test_money_in_flight_is_not_cut_but_owed(self) -> None:
        book = builders.funded()
        in_flight = book.start_release(usd(9_000))
        book.dispute(withdrawn=10_000)
        assert book.op(in_flight.id).status is OperationStatus.PENDING
        assert (book.escrow.held, book.escrow.shortfall, book.escrow.available) == (
            usd(9_000),
            usd(9_000),
            usd(0),
        )

    def test_a_cut_first_release_gives_the_fixed_fee_back(self) -> None:
        book = builders.funded(FeeSchedule(1000, fixed=usd(30)))
        book.start_release(usd(9_000), HUNTER_NOT_READY)
        book.dispute(withdrawn=10_000)
        assert not book.escrow.fixed_fee_charged


class TestDebtIsPaidFirst:
    @pytest.fixture
    def owing(self) -> tuple[Book, Operation]:
        """$90.00 reserved by a release in flight, then the whole charge withdrawn."""
        book = builders.funded()
        release = book.start_release(usd(9_000))
        book.dispute(withdrawn=10_000)
        return book, release

    def test_by_a_failed_release(self, owing: tuple[Book, Operation]) -> None:
        book, release = owing
        book.fail(release)
        assert (book.escrow.held, book.escrow.shortfall, book.escrow.available) == (
            usd(0),
            usd(0),
            usd(0),
        )
        (entry,) = [e for e in book.entries if e.kind == tr.SHORTFALL_SETTLED]
        assert entry.ref == f"{book.escrow.id}:{release.id}:failed"

    def test_by_a_release_sent_back_to_wait(self, owing: tuple[Book, Operation]) -> None:
        """Refused for its payee, the release certainly was not sent: it pays the debt."""
        book, release = owing
        book.apply(tr.wait_for_payee(book.escrow, book.op(release.id), "not ready", now=T0))
        assert book.op(release.id).status is FAILED
        assert (book.escrow.held, book.escrow.shortfall) == (usd(0), usd(0))

    def test_not_by_a_release_that_succeeds(self, owing: tuple[Book, Operation]) -> None:
        book, release = owing
        book.complete_release(release)
        assert (book.escrow.held, book.escrow.shortfall) == (usd(0), usd(9_000))

    def test_by_a_reinstatement(self, owing: tuple[Book, Operation]) -> None:
        book, release = owing
        book.complete_release(release)
        book.dispute(status="won", withdrawn=10_000, reinstated=10_000)
        assert (book.escrow.held, book.escrow.dispute_withdrawn, book.escrow.shortfall) == (
            usd(1_000),
            usd(0),
            usd(0),
        )

    def test_by_a_reversal(self, owing: tuple[Book, Operation]) -> None:
        book, release = owing
        book.complete_release(release)
        book.dispute(status="lost", withdrawn=10_000)
        book.reverse(book.op(release.id))
        assert (book.escrow.held, book.escrow.shortfall, book.escrow.fees) == (
            usd(0),
            usd(0),
            usd(0),
        )

    def test_by_a_refund_that_fails_after_success(self) -> None:
        book = builders.funded()
        refund = book.refund()
        book.external_refund(usd(4_000))  # nothing held: all of it is owed
        book.refund_update(refund, "failed")
        assert (book.escrow.held, book.escrow.refunded, book.escrow.shortfall) == (
            usd(6_000),
            usd(4_000),
            usd(0),
        )

    def test_each_cause_books_one_entry(self, owing: tuple[Book, Operation]) -> None:
        book, release = owing
        book.fail(release)
        book.fail(release)  # reported twice: already failed, nothing more
        assert [e.kind for e in book.entries].count(tr.SHORTFALL_SETTLED) == 1


class TestFrozenSendsNothing:
    @pytest.mark.parametrize("freeze", ["dispute", "fraud_warning"])
    def test_a_waiting_release_stays_waiting_while_frozen(self, freeze: str) -> None:
        book = builders.funded()
        waiting = book.start_release(usd(5_000), HUNTER_NOT_READY)
        book.dispute() if freeze == "dispute" else book.fraud_warning()
        outcome = tr.payee_ready(book.escrow, book.op(waiting.id), ready(waiting), now=T0)
        assert not outcome.changed
        assert outcome.escrow == book.escrow

    def test_it_goes_once_the_escrow_unfreezes(self) -> None:
        book = builders.funded()
        waiting = book.start_release(usd(5_000), HUNTER_NOT_READY)
        book.fraud_warning()
        book.clear_fraud_warning()
        outcome = book.apply(
            tr.payee_ready(book.escrow, book.op(waiting.id), ready(waiting), now=T0)
        )
        assert outcome.operations[0].status is OperationStatus.PENDING


class TestCancelledOnce:
    def test_a_cancel_completing_after_a_dashboard_cancel_announces_nothing_new(self) -> None:
        book = builders.awaiting_funding()
        cancel = book.start_cancel()
        book.pay(status="canceled")
        book.complete_cancel(cancel)
        assert book.event_types().count("escrow.cancelled") == 1
        assert book.op(cancel.id).status is OperationStatus.SUCCEEDED

    def test_a_cancel_completed_twice_announces_once(self) -> None:
        book = builders.awaiting_funding()
        cancel = book.start_cancel()
        book.complete_cancel(cancel)
        assert not book.complete_cancel(cancel).changed
        assert book.event_types().count("escrow.cancelled") == 1


class TestFixedFeeComesBack:
    def test_a_full_reversal_gives_the_fixed_fee_back_to_be_charged_again(self) -> None:
        book = builders.funded(FeeSchedule(1000, fixed=usd(30)))
        first = book.release(usd(4_000))
        assert first.fee == usd(430)
        book.reverse(first)
        assert (book.escrow.fees, book.escrow.fixed_fee_charged) == (usd(0), False)
        assert book.release(usd(4_000)).fee == usd(430)

    def test_reversed_in_pieces_too(self) -> None:
        book = builders.funded(FeeSchedule(1000, fixed=usd(30)))
        first = book.release(usd(4_000))
        book.reverse(first, usd(1_000))
        assert book.escrow.fixed_fee_charged
        book.reverse(book.op(first.id))
        assert (book.escrow.fees, book.escrow.fixed_fee_charged) == (usd(0), False)

    def test_a_partial_reversal_keeps_it_charged(self) -> None:
        book = builders.funded(FeeSchedule(1000, fixed=usd(30)))
        first = book.release(usd(4_000))
        book.reverse(first, usd(1_000))
        assert book.release(usd(1_000)).fee == usd(100)


class TestNamespace:
    def test_every_request_carries_it_when_given(self) -> None:
        book = builders.funded()
        escrow = book.escrow
        funding = tr.start_funding(escrow, op_id="op_f", actor_id="u", now=T0, namespace="prod")
        release = tr.start_release(
            escrow, op_id="op_r", payee=HUNTER, gross=usd(1_000), actor_id="u", now=T0,
            namespace="prod",
        )  # fmt: skip
        refund = tr.start_refund(
            escrow, op_id="op_x", amount=usd(1_000), actor_id="u", now=T0, namespace="prod"
        )
        released = book.release(usd(1_000))
        reversal = tr.start_reversal(
            book.escrow, released, op_id="op_v", amount=None, pending_reversals=usd(0),
            actor_id="u", now=T0, namespace="prod",
        )  # fmt: skip
        surplus = tr.apply_payment(
            book.escrow, None, book.payment("pi_2"), now=T0, new_id=iter(["a", "b"]).__next__,
            namespace="prod",
        )  # fmt: skip
        for outcome in (funding, release, refund, reversal, surplus):
            requests = [op.request for op in outcome.operations if op.request is not None]
            assert requests
            assert all(r.metadata[META_NAMESPACE] == "prod" for r in requests)

    def test_absent_when_not_given(self) -> None:
        book = builders.funded()
        op = book.start_release(usd(1_000))
        assert op.request is not None
        assert META_NAMESPACE not in op.request.metadata


# --- three-decimal currencies -------------------------------------------------------------------

three_decimal = st.sampled_from(sorted(THREE_DECIMAL))
#: Gross amounts Stripe accepts in a three-decimal currency: multiples of 10.
tens = st.integers(min_value=2, max_value=9_999_999).map(lambda n: n * 10)
bps = st.integers(min_value=0, max_value=9_999)


def acceptable(money: Money) -> bool:
    """Zero, or an amount Stripe accepts (a derived zero moves nothing, so it is fine)."""
    return money.amount == 0 or problem(money) is None


class TestThreeDecimalCurrencies:
    @pytest.mark.parametrize("currency", sorted(THREE_DECIMAL))
    def test_moves_in_steps_of_ten(self, currency: str) -> None:
        assert step(currency) == 10
        assert round_down(1_239, currency) == 1_230

    def test_other_currencies_move_in_steps_of_one(self) -> None:
        assert (step("usd"), step("jpy"), round_down(1_239, "usd")) == (1, 1, 1_239)

    def test_a_fixed_fee_that_is_not_a_multiple_of_ten_is_refused(self) -> None:
        with pytest.raises(ValueError, match="multiple of 10"):
            FeeSchedule(100, fixed=Money(305, "kwd"))

    def test_the_fee_rounds_down_to_a_multiple_of_ten(self) -> None:
        split = FeeSchedule(1000).split(Money(1_230, "kwd"), first_release=False)
        assert (split.fee, split.net) == (Money(120, "kwd"), Money(1_110, "kwd"))

    @given(currency=three_decimal, gross=tens, bps=bps, first=st.booleans())
    def test_every_fee_split_is_acceptable(
        self, currency: str, gross: int, bps: int, first: bool
    ) -> None:
        fees = FeeSchedule(bps, fixed=Money(50, currency))
        try:
            split = fees.split(Money(gross, currency), first_release=first)
        except ValueError:
            return  # nothing left for the payee: refused, nothing derived
        assert acceptable(split.fee)
        assert problem(split.net) is None
        assert split.fee + split.net == split.gross

    @given(
        currency=three_decimal,
        gross=tens,
        bps=bps,
        pieces=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=5),
    )
    def test_every_reversal_fee_share_is_acceptable_and_they_add_up_to_the_fee(
        self, currency: str, gross: int, bps: int, pieces: list[int]
    ) -> None:
        try:
            split = FeeSchedule(bps).split(Money(gross, currency), first_release=True)
        except ValueError:
            return
        op = Operation(
            id="op_r", escrow_id="esc", kind=OperationKind.RELEASE,
            status=OperationStatus.SUCCEEDED, gross=split.gross, fee=split.fee, net=split.net,
            actor_id="u", created_at=T0, updated_at=T0,
        )  # fmt: skip
        # Reverse the net in acceptable pieces (multiples of 10), the last one all that is left.
        left, done, given_back = split.net.amount, 0, 0
        for weight in pieces:
            amount = min(left, max(10, round_down(split.net.amount * weight // 50_000, currency)))
            if amount <= 0:
                break
            share = tr.reversal_fee_share(
                op, Money(amount, currency), already=Money(done, currency)
            )
            assert acceptable(share)
            assert problem(Money(amount, currency)) is None
            done, left, given_back = done + amount, left - amount, given_back + share.amount
        share = tr.reversal_fee_share(op, Money(left, currency), already=Money(done, currency))
        if left:
            assert acceptable(share)
        assert given_back + (share.amount if left else 0) == split.fee.amount

    @given(currency=three_decimal, gross=tens, bps=bps, data=st.data())
    def test_a_release_and_its_reversals_move_acceptable_amounts(
        self, currency: str, gross: int, bps: int, data: st.DataObject
    ) -> None:
        """Through the transitions: transfer, reversal and refund-all amounts are acceptable."""
        amount = Money(max(gross, 100), currency)
        book = builders.funded(FeeSchedule(bps, fixed=Money(20, currency)), amount)
        release_gross = Money(
            data.draw(st.integers(min_value=1, max_value=amount.amount // 10)) * 10, currency
        )
        try:
            release = book.release(release_gross)
        except ValidationError:
            return
        assert release.request is not None
        assert problem(release.request.amount) is None
        piece = data.draw(st.integers(min_value=1, max_value=release.net.amount // 10)) * 10
        reversal = book.reverse(release, Money(piece, currency))
        assert problem(reversal.net) is None
        assert acceptable(reversal.fee)
        if book.escrow.available.is_positive:
            refund = book.start_refund()
            assert refund.request is not None
            assert problem(refund.request.amount) is None
