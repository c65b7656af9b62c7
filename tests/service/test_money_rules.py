"""The escrow's books follow what really happened at the gateway.

Money that leaves outside the library (Dashboard refunds, dispute withdrawals) is taken from
`held`, cutting reservations of releases never sent; what it cannot cover is the escrow's
debt (`shortfall`), settled first whenever money comes back. A frozen escrow sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

from bountyescrow import (
    Escrow,
    EscrowService,
    EscrowSettings,
    EscrowStatus,
    FeeSchedule,
    Money,
    Operation,
    OperationStatus,
    Payee,
    errors,
)
from bountyescrow.domain.amount_rules import problem
from bountyescrow.domain.gateway_objects import CreateRefund, CreateTransfer
from bountyescrow.domain.operation import OperationKind
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd


def gateway_totals(fake: FakeGateway) -> dict[str, int]:
    """What really moved at the fake gateway, by kind (failed refunds excluded)."""
    totals = {"transfer": 0, "refund": 0, "reversal": 0}
    for movement in fake.movements:
        if movement.status in ("failed", "canceled"):
            continue
        totals[movement.kind] += movement.amount.amount
    return totals


def assert_books_match_the_gateway(
    service: EscrowService, fake: FakeGateway, escrow_id: str
) -> None:
    """The escrow's refunded and paid-out amounts are what the fake really moved."""
    escrow = service.get(escrow_id)
    moved = gateway_totals(fake)
    assert escrow.refunded.amount == moved["refund"]
    assert (escrow.released - escrow.fees).amount == moved["transfer"] - moved["reversal"]


def intent_of(esc: Escrow) -> str:
    """The escrow's PaymentIntent ref (every opened escrow has one)."""
    assert esc.payment_ref is not None
    return esc.payment_ref


def release(service: EscrowService, esc: Escrow, amount: int | None = None) -> Operation:
    """The poster releases `amount` (everything if None) to the hunter, with a fresh key."""
    gross = None if amount is None else usd(amount)
    return service.release(
        esc.id, payee_id=HUNTER, amount=gross, actor=POSTER, idempotency_key=new_key()
    )


def waiting_release(
    service: EscrowService, fake: FakeGateway, amount: int
) -> tuple[Escrow, Payee, Operation]:
    """A funded 10,000 escrow whose release of `amount` waits for the hunter's onboarding."""
    esc = funded(service, fake, 10_000)
    payee = service.register_payee(HUNTER, country="US")
    op = release(service, esc, amount)
    assert op.status is OperationStatus.AWAITING_PAYEE
    return esc, payee, op


def pay_with_refund_events_first(
    service: EscrowService, fake: FakeGateway, esc: Escrow, deliver: object
) -> None:
    """The poster pays, then the Dashboard refunds it all; the refund's events arrive first."""
    fake.deliver(service)
    fake.pay(intent_of(esc))
    payment_events = list(fake.pending_payloads), list(fake.pending_events)
    fake.drop_events()
    fake.refund_outside(intent_of(esc))
    fake.deliver(deliver)
    payloads, events = payment_events
    if isinstance(deliver, WebhookDispatcher):
        for payload in payloads:
            body, headers = fake.webhook_request(payload)
            assert deliver.handle(body=body, headers=headers).status == 200
    else:
        for event in events:
            service.apply_event(event)


class TestOutsideRefundBeforeFunding:
    @pytest.mark.parametrize("through", ["service", "webhooks"])
    def test_funding_booked_later_pays_the_debt_and_nothing_can_be_released(
        self, service: EscrowService, fake: FakeGateway, through: str
    ) -> None:
        """A charge refunded in full before its success is booked holds nothing."""
        ready_payee(service, fake)
        esc = open_escrow(service, 10_000)
        target: object = (
            WebhookDispatcher(service, secrets=["whsec_test"]) if through == "webhooks" else service
        )
        pay_with_refund_events_first(service, fake, esc, target)
        after = service.get(esc.id)
        assert (after.funded, after.held, after.refunded, after.shortfall) == (
            usd(10_000),
            usd(0),
            usd(10_000),
            usd(0),
        )
        assert after.status is EscrowStatus.REFUNDED
        with pytest.raises(errors.InsufficientFundsError):
            release(service, esc, 9_000)
        assert gateway_totals(fake) == {"transfer": 0, "refund": 10_000, "reversal": 0}
        assert_books_match_the_gateway(service, fake, esc.id)


class TestOutsideRefundWhileOwnRefundInFlight:
    def test_the_failed_own_refund_leaves_nothing_releasable(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake, 10_000)
        ready_payee(service, fake)
        fake.fail_next("refund", error="unavailable")
        own = service.refund(esc.id, actor=ADMIN, idempotency_key=new_key())
        assert own.status is OperationStatus.PENDING
        fake.refund_outside(intent_of(esc), amount=usd(10_000))
        fake.deliver(service)
        during = service.get(esc.id)
        assert (during.refunded, during.shortfall, during.available) == (
            usd(10_000),
            usd(10_000),
            usd(0),
        )
        clock.advance(timedelta(hours=1))
        service.recover()  # Stripe refuses the own refund now: nothing is left to refund
        assert service.get_operation(own.id).status is OperationStatus.FAILED
        after = service.get(esc.id)
        assert (after.held, after.refunded, after.shortfall) == (usd(0), usd(10_000), usd(0))
        assert after.status is EscrowStatus.REFUNDED
        with pytest.raises(errors.InsufficientFundsError):
            release(service, esc)
        assert gateway_totals(fake) == {"transfer": 0, "refund": 10_000, "reversal": 0}
        assert_books_match_the_gateway(service, fake, esc.id)


def try_to_cancel(service: EscrowService, fake: FakeGateway, op_id: str) -> None:
    """The poster tries to cancel the release the withdrawal already cut: refused."""
    with pytest.raises(errors.InvalidTransitionError):
        service.cancel_operation(op_id, actor=POSTER)


def declined_send(service: EscrowService, fake: FakeGateway, op_id: str) -> None:
    """The hunter finishes onboarding; whatever is sent is declined."""
    fake.fail_next("transfer", error="declined")
    fake.complete_onboarding(service.get_payee(HUNTER).account_ref)
    fake.deliver(service)
    service.recover()


class TestChargebackWhileAReleaseWaits:
    def _waiting_release_then_chargeback(
        self, service: EscrowService, fake: FakeGateway
    ) -> tuple[Escrow, str]:
        esc, _, op = waiting_release(service, fake, 9_000)
        fake.open_dispute(intent_of(esc))
        fake.deliver(service)
        return esc, op.id

    def test_the_withdrawal_cuts_the_waiting_release(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, op_id = self._waiting_release_then_chargeback(service, fake)
        disputed = service.get(esc.id)
        assert (disputed.held, disputed.reserved, disputed.dispute_withdrawn) == (
            usd(0),
            usd(0),
            usd(10_000),
        )
        assert disputed.shortfall == usd(0)
        cut = service.get_operation(op_id)
        assert cut.status is OperationStatus.FAILED
        assert cut.error is not None
        assert "withdrawn by dispute" in cut.error

    @pytest.mark.parametrize(
        "meanwhile",
        [
            pytest.param(try_to_cancel, id="the_poster_tries_to_cancel_it"),
            pytest.param(declined_send, id="the_payee_becomes_ready_and_the_send_is_declined"),
        ],
    )
    def test_losing_the_dispute_then_leaves_nothing_held(
        self,
        service: EscrowService,
        fake: FakeGateway,
        meanwhile: Callable[[EscrowService, FakeGateway, str], None],
    ) -> None:
        """The cut release stays failed whatever happens to it before the dispute is lost."""
        esc, op_id = self._waiting_release_then_chargeback(service, fake)
        meanwhile(service, fake, op_id)
        fake.close_dispute(intent_of(esc), won=False)
        fake.deliver(service)
        lost = service.get(esc.id)
        assert (lost.held, lost.available, lost.dispute_withdrawn, lost.shortfall) == (
            usd(0),
            usd(0),
            usd(10_000),
            usd(0),
        )
        assert lost.status is EscrowStatus.SETTLED
        assert service.get_operation(op_id).status is OperationStatus.FAILED
        assert gateway_totals(fake)["transfer"] == 0
        assert_books_match_the_gateway(service, fake, esc.id)

    def test_a_won_dispute_gives_the_money_back_to_release_again(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, _ = self._waiting_release_then_chargeback(service, fake)
        fake.close_dispute(intent_of(esc), won=True)
        fake.deliver(service)
        won = service.get(esc.id)
        assert (won.held, won.available, won.dispute_withdrawn) == (
            usd(10_000),
            usd(10_000),
            usd(0),
        )
        assert won.status is EscrowStatus.FUNDED


class TestDebtIsSettledFirst:
    def test_a_failed_release_pays_the_debt_left_by_a_withdrawal(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """A release in flight keeps its money; when it fails, that money pays the debt."""
        esc = funded(service, fake, 10_000)
        ready_payee(service, fake)
        fake.fail_next("transfer", error="unavailable")
        op = release(service, esc, 9_000)
        assert op.status is OperationStatus.PENDING
        fake.open_dispute(intent_of(esc))
        fake.deliver(service)
        disputed = service.get(esc.id)
        assert (disputed.held, disputed.reserved, disputed.shortfall) == (
            usd(9_000),
            usd(9_000),
            usd(9_000),
        )
        assert disputed.dispute_withdrawn == usd(10_000)
        fake.fail_next("transfer", error="declined")
        fake.close_dispute(intent_of(esc), won=False)
        fake.deliver(service)
        clock.advance(timedelta(hours=1))
        service.recover()
        after = service.get(esc.id)
        assert service.get_operation(op.id).status is OperationStatus.FAILED
        assert (after.held, after.reserved, after.shortfall) == (usd(0), usd(0), usd(0))
        entries = [e for e in service.ledger(esc.id) if e.kind == "shortfall_settled"]
        assert len(entries) == 1

    def test_a_reversal_pays_the_debt_first(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake, 10_000)
        ready_payee(service, fake)
        paid = release(service, esc, 10_000)
        assert paid.status is OperationStatus.SUCCEEDED
        fake.open_dispute(intent_of(esc))
        fake.deliver(service)
        assert service.get(esc.id).shortfall == usd(10_000)
        fake.close_dispute(intent_of(esc), won=False)
        fake.deliver(service)
        service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key=new_key())
        after = service.get(esc.id)
        assert (after.held, after.available, after.shortfall) == (usd(0), usd(0), usd(0))
        assert_books_match_the_gateway(service, fake, esc.id)
        assert fake.balance(service.get_payee(HUNTER).account_ref) == usd(0)


class TestFrozenSendsNothing:
    def test_a_payee_ready_during_a_chargeback_does_not_get_the_waiting_release(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, payee, op = waiting_release(service, fake, 5_000)
        fake.open_dispute(intent_of(esc), amount=usd(1_000))
        fake.deliver(service)
        assert service.get(esc.id).frozen
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.AWAITING_PAYEE
        assert gateway_totals(fake)["transfer"] == 0
        fake.close_dispute(intent_of(esc), won=True)
        fake.deliver(service)  # the webhook that unfreezes the escrow sends the release
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert gateway_totals(fake)["transfer"] == 4_500

    def test_a_fraud_warning_keeps_a_waiting_release_waiting(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, payee, op = waiting_release(service, fake, 5_000)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(service)
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.AWAITING_PAYEE
        assert fake.movements == []


class TestCancelledOnce:
    def test_the_cancel_webhook_overtaking_the_cancels_own_answer_is_announced_once(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """The cancel took effect but its answer was lost; the webhook came first."""
        esc = open_escrow(service)
        fake.deliver(service)
        fake.fail_next("cancel", error="timeout_after_effect")
        service.cancel(esc.id, actor=POSTER)  # answer lost: the cancel stays pending
        fake.deliver(service)
        assert service.get(esc.id).status is EscrowStatus.CANCELLED
        clock.advance(timedelta(hours=1))
        service.recover()
        (cancel,) = [o for o in service.operations(esc.id) if o.kind is OperationKind.CANCEL]
        assert cancel.status is OperationStatus.SUCCEEDED
        types = [e.type for e in service.events(limit=10_000) if e.escrow_id == esc.id]
        assert types.count("escrow.cancelled") == 1


class TestFixedFeeAfterFullReversal:
    def test_the_next_release_charges_the_fixed_fee_again(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        fees = FeeSchedule(1000, fixed=usd(30))
        svc = EscrowService(store, fake, fees=fees, namespace="test", clock=clock)
        esc = funded(svc, fake, 10_000)
        ready_payee(svc, fake)
        first = release(svc, esc, 4_000)
        assert first.fee == usd(430)
        svc.reverse(esc.id, first.id, actor=ADMIN, idempotency_key=new_key())
        assert svc.get(esc.id).fees == usd(0)
        second = release(svc, esc, 4_000)
        assert second.fee == usd(430)
        assert svc.check_invariants() == []


class TestSecondGatewayObject:
    def test_a_second_transfer_for_a_succeeded_release_raises_an_alert_and_books_nothing(
        self, service: EscrowService, fake: FakeGateway, caplog: pytest.LogCaptureFixture
    ) -> None:
        esc = funded(service, fake, 10_000)
        ready_payee(service, fake)
        op = release(service, esc, 5_000)
        assert op.status is OperationStatus.SUCCEEDED
        assert op.request is not None
        before = service.get(esc.id)
        # The same stored request sent again under a new key: a second transfer.
        assert isinstance(op.request, CreateTransfer)
        fake.create_transfer(op.request, idempotency_key="another-generation")
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            fake.deliver(service)
        alerts = [r for r in caplog.records if getattr(r, "alert", None) == "second_gateway_object"]
        assert len(alerts) == 1
        record = alerts[0]
        assert record.__dict__["escrow_id"] == esc.id
        assert record.__dict__["operation_id"] == op.id
        assert record.__dict__["gateway_ref"] == op.gateway_ref
        assert record.__dict__["other_gateway_ref"] != op.gateway_ref
        assert service.get(esc.id) == before
        assert service.get_operation(op.id).gateway_ref == op.gateway_ref

    def test_a_second_refund_that_fails_later_gives_nothing_back(
        self, service: EscrowService, fake: FakeGateway, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Only the refund the operation recorded can undo it."""
        esc = funded(service, fake, 10_000)
        op = service.refund(esc.id, amount=usd(3_000), actor=ADMIN, idempotency_key=new_key())
        assert op.status is OperationStatus.SUCCEEDED
        assert isinstance(op.request, CreateRefund)
        second = fake.create_refund(op.request, idempotency_key="another-generation")
        fake.settle_refund(second.ref, succeeded=False)
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            fake.deliver(service)
        assert [r.__dict__["other_gateway_ref"] for r in caplog.records] == [second.ref] * len(
            caplog.records
        )
        assert caplog.records
        after = service.get(esc.id)
        assert (after.held, after.refunded) == (usd(7_000), usd(3_000))
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED

    def test_a_transfer_for_a_cancelled_release_raises_an_alert_and_books_nothing(
        self, service: EscrowService, fake: FakeGateway, caplog: pytest.LogCaptureFixture
    ) -> None:
        esc, payee, op = waiting_release(service, fake, 5_000)
        service.cancel_operation(op.id, actor=POSTER)
        fake.complete_onboarding(payee.account_ref)
        assert isinstance(op.request, CreateTransfer)
        transfer = fake.create_transfer(op.request, idempotency_key="sent-anyway")
        before = service.get(esc.id)
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            fake.deliver(service)
        (record,) = [
            r
            for r in caplog.records
            if r.__dict__.get("alert") == "gateway_object_for_closed_operation"
        ]
        assert (record.__dict__["operation_id"], record.__dict__["other_gateway_ref"]) == (
            op.id,
            transfer.ref,
        )
        assert service.get(esc.id) == before
        assert service.get_operation(op.id).status is OperationStatus.CANCELLED


class TestThreeDecimalCurrency:
    def test_a_release_in_kwd_sends_an_amount_stripe_accepts(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        svc = EscrowService(
            store,
            fake,
            fee_bps=1000,
            namespace="test",
            clock=clock,
            settings=EscrowSettings(settlement_currencies=frozenset({"kwd"})),
        )
        esc = svc.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=Money(10_000, "kwd"), actor=POSTER
        )
        fake.pay(intent_of(esc))
        fake.deliver(svc)
        ready_payee(svc, fake)
        op = svc.release(
            esc.id,
            payee_id=HUNTER,
            amount=Money(1_230, "kwd"),
            actor=POSTER,
            idempotency_key=new_key(),
        )
        assert op.status is OperationStatus.SUCCEEDED
        assert (op.fee, op.net) == (Money(120, "kwd"), Money(1_110, "kwd"))
        assert problem(op.net) is None
        reversal = svc.reverse(
            esc.id, op.id, amount=Money(370, "kwd"), actor=ADMIN, idempotency_key=new_key()
        )
        assert reversal.status is OperationStatus.SUCCEEDED
        assert reversal.fee == Money(40, "kwd")
        rest = svc.refund(esc.id, actor=ADMIN, idempotency_key=new_key())
        assert rest.status is OperationStatus.SUCCEEDED
        assert problem(rest.gross) is None
        assert svc.check_invariants() == []


class TestNamespaceInMetadata:
    def test_a_surplus_refund_carries_the_namespace(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service, 10_000)
        fake.pay(intent_of(esc), usd(12_000), force=True)
        fake.deliver(service)
        (surplus,) = [o for o in service.operations(esc.id) if o.kind is OperationKind.REFUND]
        assert surplus.request is not None
        assert surplus.request.metadata["bountyescrow_namespace"] == "test"
