"""Regressions from a hostile review: stale answers, unsent generations, pending outside refunds.

Each scenario moved money twice before its fix; each test compares what the fake gateway really
moved with what the books say.
"""

from __future__ import annotations

from datetime import timedelta

import pydantic
import pytest

from bountyescrow import EscrowService, EscrowSettings, Money, OperationStatus, errors
from bountyescrow.testing import (
    FakeGateway,
    InMemoryStore,
    ManualClock,
    books_agree,
    during_next_call,
)
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, ready_payee, usd


def transfer_refs(fake: FakeGateway) -> list[str]:
    return [m.ref for m in fake.movements if m.kind == "transfer"]


@pytest.fixture
def escrow_id(service: EscrowService, fake: FakeGateway) -> str:
    """A funded 10,000 usd escrow and a ready hunter."""
    ready_payee(service, fake)
    return funded(service, fake, amount=10_000).id


class TestStaleRefusals:
    def test_a_refusal_for_an_older_key_generation_starts_no_new_one(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow_id: str
    ) -> None:
        """The first caller outlives its lease; recovery moves on to generation 1, whose
        transfer is made (answer lost); the first caller's late refusal must not start
        generation 2 and pay the hunter twice."""

        def meanwhile() -> None:
            clock.advance(service.lease + timedelta(seconds=1))
            service.recover()  # resends generation 0: refused again, generation 1
            clock.advance(timedelta(minutes=10))
            fake.fail_next("transfer", "timeout_after_effect")
            service.recover()  # generation 1: the transfer is made, the answer lost

        fake.fail_next("transfer", "balance_insufficient", times=2)
        during_next_call(fake, "transfer", meanwhile, when="after")
        op = service.release(
            escrow_id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key="r"
        )
        assert transfer_refs(fake) == ["tr_0001"]
        clock.advance(timedelta(hours=1))
        service.recover()
        fake.deliver(service)
        assert transfer_refs(fake) == ["tr_0001"]
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert books_agree(service, fake) == []


class TestUnsentGenerations:
    def test_a_refused_release_is_cut_when_a_chargeback_takes_its_money(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow_id: str
    ) -> None:
        fake.fail_next("transfer", "balance_insufficient")
        op = service.release(escrow_id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert op.status is OperationStatus.PENDING
        esc = service.get(escrow_id)
        assert esc.payment_ref is not None
        fake.open_dispute(esc.payment_ref)  # the whole 10,000 is withdrawn
        fake.deliver(service)
        clock.advance(timedelta(hours=3))  # past the back-off; the balance is topped up
        service.recover()
        assert transfer_refs(fake) == []
        assert service.get_operation(op.id).status is OperationStatus.FAILED
        assert service.get(escrow_id).shortfall == usd(0)
        assert books_agree(service, fake) == []

    def test_a_refused_release_waits_while_a_fraud_warning_freezes_the_escrow(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow_id: str
    ) -> None:
        fake.fail_next("transfer", "balance_insufficient")
        op = service.release(escrow_id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        esc = service.get(escrow_id)
        assert esc.payment_ref is not None
        fake.early_fraud_warning(esc.payment_ref)
        fake.deliver(service)
        clock.advance(timedelta(hours=3))
        service.recover()
        assert transfer_refs(fake) == []
        assert service.get_operation(op.id).status is OperationStatus.PENDING
        service.clear_fraud_warning(escrow_id, actor=ADMIN)
        clock.advance(service.settings.poll_interval + timedelta(seconds=1))
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfer_refs(fake) == ["tr_0001"]


class TestPendingOutsideRefunds:
    def test_a_pending_dashboard_refund_takes_the_money_at_once(
        self, service: EscrowService, fake: FakeGateway, escrow_id: str
    ) -> None:
        """Stripe debits the balance when a refund is created, not when it succeeds."""
        esc = service.get(escrow_id)
        assert esc.payment_ref is not None
        refund = fake.refund_outside(esc.payment_ref, pending=True)
        fake.deliver(service)
        assert service.get(escrow_id).available == usd(0)
        with pytest.raises(errors.InsufficientFundsError):
            service.release(escrow_id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        fake.settle_refund(refund)
        fake.deliver(service)
        assert service.get(escrow_id).refunded == usd(10_000)
        assert books_agree(service, fake) == []

    def test_a_pending_dashboard_refund_that_fails_gives_the_money_back(
        self, service: EscrowService, fake: FakeGateway, escrow_id: str
    ) -> None:
        esc = service.get(escrow_id)
        assert esc.payment_ref is not None
        refund = fake.refund_outside(esc.payment_ref, pending=True)
        fake.deliver(service)
        fake.settle_refund(refund, succeeded=False)
        fake.deliver(service)
        back = service.get(escrow_id)
        assert (back.held, back.refunded) == (usd(10_000), usd(0))
        assert books_agree(service, fake) == []


class TestHostRetries:
    def test_a_retry_after_the_gateway_forgot_the_key_sends_nothing_again(self) -> None:
        """A host retry a day later must look the transfer up (recover()), not resend."""
        clock = ManualClock()
        fake = FakeGateway(clock=clock)
        settings = EscrowSettings(idempotency_ttl=timedelta(hours=48))
        service = EscrowService(InMemoryStore(), fake, fee_bps=1000, clock=clock, settings=settings)
        ready_payee(service, fake)
        esc = funded(service, fake, amount=10_000)
        fake.fail_next("transfer", "timeout_after_effect")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(4_000), actor=POSTER, idempotency_key="rel-1"
        )
        assert op.status is OperationStatus.PENDING
        fake.drop_events()  # transfer.created is lost, and recover() does not run
        clock.advance(timedelta(hours=25))
        again = service.release(
            esc.id, payee_id=HUNTER, amount=usd(4_000), actor=POSTER, idempotency_key="rel-1"
        )
        assert (again.id, again.status) == (op.id, OperationStatus.PENDING)
        assert transfer_refs(fake) == ["tr_0001"]
        service.recover()  # looks the transfer up and books it
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfer_refs(fake) == ["tr_0001"]
        assert books_agree(service, fake) == []

    def test_a_retry_does_not_skip_the_back_off_of_a_reserve_breach(
        self, service: EscrowService, fake: FakeGateway, escrow_id: str
    ) -> None:
        fake.fail_next("transfer", "balance_insufficient")
        op = service.release(escrow_id, payee_id=HUNTER, actor=POSTER, idempotency_key="r")
        fake.fail_next("transfer", "balance_insufficient")
        again = service.release(escrow_id, payee_id=HUNTER, actor=POSTER, idempotency_key="r")
        assert again.id == op.id
        assert service.get_operation(op.id).generation == 1, "the retry sent nothing"

    @pytest.mark.parametrize("window", [timedelta(hours=24), timedelta(hours=30), timedelta(0)])
    def test_a_key_window_the_gateway_does_not_keep_is_refused(self, window: timedelta) -> None:
        with pytest.raises(pydantic.ValidationError, match="24 h"):
            EscrowSettings(gateway_key_window=window)


class TestRecoveryReport:
    def test_releases_held_back_by_a_freeze_are_not_counted_as_completed(
        self, service: EscrowService, fake: FakeGateway, escrow_id: str
    ) -> None:
        payee = service.register_payee("late", country="US")
        service.release(
            escrow_id, payee_id="late", amount=usd(1_000), actor=POSTER, idempotency_key="l"
        )
        esc = service.get(escrow_id)
        assert esc.payment_ref is not None
        fake.open_dispute(esc.payment_ref, amount=Money(100, "usd"), inquiry=True)
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        assert service.recover().completed == 0


class TestPayeeRechecks:
    def test_a_payee_behind_hundreds_of_waiting_releases_is_asked_about_in_its_turn(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """A transfer refused as "destination not ready" while the account is fine: no
        account.updated ever comes, and recovery must ask about it, however many wait."""
        ready_payee(service, fake)
        esc = funded(service, fake, amount=600_000)
        service.register_payee("slow", country="US")  # never finishes onboarding
        for _ in range(501):
            clock.advance(timedelta(seconds=1))
            service.release(
                esc.id, payee_id="slow", amount=usd(1_000), actor=POSTER, idempotency_key=new_key()
            )
        fake.fail_next("transfer", "destination_not_ready")
        late = service.release(
            esc.id, payee_id=HUNTER, amount=usd(1_000), actor=POSTER, idempotency_key=new_key()
        )
        assert late.status is OperationStatus.AWAITING_PAYEE
        for _ in range(3):
            clock.advance(timedelta(days=1))
            service.recover()
        assert service.get_operation(late.id).status is OperationStatus.SUCCEEDED
