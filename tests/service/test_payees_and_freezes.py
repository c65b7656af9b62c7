"""Payees and onboarding, freezes (disputes, fraud warnings), funding edge cases, reserve."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bountyescrow import (
    Actor,
    Escrow,
    EscrowService,
    EscrowStatus,
    Operation,
    OperationStatus,
    errors,
)
from bountyescrow.testing import FakeGateway, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd
from .crashing import Crash


def event_types(service: EscrowService) -> list[str]:
    return [e.type for e in service.events(limit=10_000)]


def payable(service: EscrowService, fake: FakeGateway) -> Escrow:
    """A funded escrow whose hunter is ready to be paid."""
    esc = funded(service, fake)
    ready_payee(service, fake)
    return esc


def intent_of(esc: Escrow) -> str:
    """The escrow's PaymentIntent ref (every opened escrow has one)."""
    assert esc.payment_ref is not None
    return esc.payment_ref


def release(
    service: EscrowService,
    esc: Escrow,
    amount: int | None = None,
    *,
    actor: Actor = POSTER,
    payee_id: str = HUNTER,
) -> Operation:
    """`actor` releases `amount` (everything if None) to `payee_id`, with a fresh key."""
    gross = None if amount is None else usd(amount)
    return service.release(
        esc.id, payee_id=payee_id, amount=gross, actor=actor, idempotency_key=new_key()
    )


class TestRegisterPayee:
    def test_is_idempotent_per_payee(self, service: EscrowService, fake: FakeGateway) -> None:
        first = service.register_payee(HUNTER, email="h@example.com", country="US")
        again = service.register_payee(HUNTER, email="other@example.com", country="GB")
        assert again == first
        assert first.account_ref == "acct_0001"
        assert first.ready is False
        with pytest.raises(errors.GatewayRejectedError):
            fake.get_account("acct_0002")  # no second account was made
        assert event_types(service) == ["payee.registered"]

    def test_a_lost_answer_is_retried_into_the_same_account(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        fake.fail_next("account", error="timeout_after_effect")
        with pytest.raises(errors.GatewayUnavailableError):
            service.register_payee(HUNTER, country="US")
        payee = service.register_payee(HUNTER, country="US")
        assert payee.account_ref == "acct_0001"
        with pytest.raises(errors.GatewayRejectedError):
            fake.get_account("acct_0002")

    def test_onboarding_link_is_the_gateways_url(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        payee = service.register_payee(HUNTER, country="US")
        url = service.onboarding_link(
            HUNTER, return_url="https://app.test/done", refresh_url="https://app.test/again"
        )
        assert url.startswith(f"https://connect.fake.test/onboard/{payee.account_ref}?")
        assert "return_url=https%3A%2F%2Fapp.test%2Fdone" in url

    def test_onboarding_link_for_an_unknown_payee(self, service: EscrowService) -> None:
        with pytest.raises(errors.PayeeNotFoundError, match="nobody"):
            service.onboarding_link("nobody", return_url="https://a", refresh_url="https://b")


class TestWaitingReleases:
    def test_a_release_to_a_payee_not_ready_waits_with_the_money_reserved(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        payee = service.register_payee(HUNTER, country="US")
        op = release(service, esc, 10_000)
        assert op.status is OperationStatus.AWAITING_PAYEE
        waiting = service.get(esc.id)
        assert (waiting.held, waiting.reserved, waiting.available) == (
            usd(25_000),
            usd(10_000),
            usd(15_000),
        )
        assert fake.movements == []
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        assert service.get_payee(HUNTER).ready
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [op.id]
        assert service.get(esc.id).held == usd(15_000)

    def test_waiting_releases_of_several_escrows_for_one_payee_all_go(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        payee = service.register_payee(HUNTER, country="US")
        ops = []
        for bounty in ("b1", "b2", "b3"):
            esc = funded(service, fake, amount=10_000, bounty=bounty)
            ops.append(release(service, esc))
        assert {op.status for op in ops} == {OperationStatus.AWAITING_PAYEE}
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service, duplicate=True)
        assert {service.get_operation(op.id).status for op in ops} == {OperationStatus.SUCCEEDED}
        assert sorted(m.operation_id or "" for m in fake.movements) == sorted(op.id for op in ops)
        assert {e.status for e in service.find(poster_id=POSTER.id)} == {EscrowStatus.RELEASED}

    def test_recover_sends_a_waiting_release_whose_payee_became_ready(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """The process died right after committing 'payee ready', before sending (§9)."""

        def die(event: object) -> None:
            raise Crash("the process died after the commit")

        dying = EscrowService(
            service.store, fake, fee_bps=1000, namespace="test", clock=clock, hooks=[die]
        )
        esc = funded(service, fake)
        payee = service.register_payee(HUNTER, country="US")
        op = release(service, esc)
        fake.complete_onboarding(payee.account_ref)
        with pytest.raises(Crash):
            fake.deliver(dying)
        assert service.get_payee(HUNTER).ready
        assert service.get_operation(op.id).status is OperationStatus.AWAITING_PAYEE
        clock.advance(timedelta(minutes=20))
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [op.id]

    def test_a_deauthorized_payee_is_not_ready(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.deauthorize(service.get_payee(HUNTER).account_ref)
        fake.deliver(service)
        assert service.get_payee(HUNTER).ready is False
        assert "payee.not_ready" in event_types(service)
        op = release(service, esc)
        assert op.status is OperationStatus.AWAITING_PAYEE
        assert fake.movements == []

    def test_destination_not_ready_sends_the_release_back_to_waiting(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.fail_next("transfer", error="destination_not_ready")
        op = release(service, esc, 10_000)
        assert op.status is OperationStatus.AWAITING_PAYEE
        assert op.error
        assert service.get_payee(HUNTER).ready is False
        assert service.get(esc.id).reserved == usd(10_000)
        assert fake.movements == []

    def test_a_waiting_release_goes_when_the_account_is_ready_again(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        account = service.get_payee(HUNTER).account_ref
        fake.restrict(account)
        fake.deliver(service)
        op = release(service, esc)
        assert op.status is OperationStatus.AWAITING_PAYEE
        fake.complete_onboarding(account)
        fake.deliver(service)
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED

    def test_a_failed_payout_becomes_a_domain_event(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        release(service, esc, 10_000)
        account = service.get_payee(HUNTER).account_ref
        payout = fake.payout(account, usd(9_000), failed=True)
        fake.deliver(service)
        (event,) = [e for e in service.events(limit=10_000) if e.type == "payee.payout_failed"]
        assert event.data == {"payee_id": HUNTER, "payout": payout, "code": "account_closed"}

    def test_a_paid_payout_is_no_event(self, service: EscrowService, fake: FakeGateway) -> None:
        esc = payable(service, fake)
        release(service, esc, 10_000)
        fake.payout(service.get_payee(HUNTER).account_ref, usd(9_000))
        before = event_types(service)
        fake.deliver(service)
        assert event_types(service) == before


class TestFraudWarnings:
    def test_freeze_refuse_release_allow_admin_refund_then_clear(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(service)
        frozen = service.get(esc.id)
        assert frozen.status is EscrowStatus.DISPUTED
        assert frozen.frozen
        with pytest.raises(errors.EscrowFrozenError, match="frozen"):
            release(service, esc)
        with pytest.raises(errors.EscrowFrozenError):
            release(service, esc, actor=ADMIN)
        refund = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        assert refund.status is OperationStatus.SUCCEEDED
        assert service.get(esc.id).refunded == usd(5_000)
        cleared = service.clear_fraud_warning(esc.id, actor=ADMIN)
        assert not cleared.frozen
        assert cleared.status is EscrowStatus.PARTIALLY_SETTLED
        op = release(service, esc)
        assert op.status is OperationStatus.SUCCEEDED
        assert service.get(esc.id).status is EscrowStatus.SETTLED

    def test_a_frozen_escrow_refuses_reversals(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        paid = release(service, esc, 5_000)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(service)
        with pytest.raises(errors.EscrowFrozenError):
            service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key=new_key())
        assert [m.kind for m in fake.movements] == ["transfer"]

    def test_the_same_warning_delivered_twice_freezes_once(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(service, duplicate=True)
        assert event_types(service).count("escrow.frozen") == 1
        service.clear_fraud_warning(esc.id, actor=ADMIN)
        assert service.get(esc.id).status is EscrowStatus.FUNDED


class TestDisputes:
    def test_an_inquiry_freezes_without_taking_money_and_closing_it_unfreezes(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.open_dispute(intent_of(esc), inquiry=True)
        fake.deliver(service)
        inquired = service.get(esc.id)
        assert inquired.status is EscrowStatus.DISPUTED
        assert (inquired.held, inquired.dispute_withdrawn) == (usd(25_000), usd(0))
        with pytest.raises(errors.EscrowFrozenError):
            release(service, esc)
        fake.close_dispute(intent_of(esc))
        fake.deliver(service)
        closed = service.get(esc.id)
        assert closed.status is EscrowStatus.FUNDED
        assert closed.held == usd(25_000)
        assert release(service, esc).status is (OperationStatus.SUCCEEDED)

    def test_a_lost_dispute_leaves_the_money_withdrawn_and_the_escrow_settles(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.open_dispute(intent_of(esc))
        fake.deliver(service)
        fake.close_dispute(intent_of(esc), won=False)
        fake.deliver(service)
        lost = service.get(esc.id)
        assert not lost.frozen
        assert (lost.held, lost.dispute_withdrawn, lost.shortfall) == (
            usd(0),
            usd(25_000),
            usd(0),
        )
        assert lost.status is EscrowStatus.SETTLED
        assert not lost.is_open
        (dispute,) = service.disputes(esc.id)
        assert dispute.status == "lost"

    def test_withdrawn_beyond_what_is_available_goes_to_shortfall(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        release(service, esc, 20_000)
        fake.open_dispute(intent_of(esc))  # the whole 25,000
        fake.deliver(service)
        disputed = service.get(esc.id)
        assert (disputed.held, disputed.dispute_withdrawn, disputed.shortfall) == (
            usd(0),
            usd(25_000),
            usd(20_000),
        )
        (withdrawn,) = [e for e in service.events(limit=10_000) if e.type.endswith("withdrawn")]
        assert (withdrawn.data["from_held"], withdrawn.data["shortfall"]) == (5_000, 20_000)

    def test_a_withdrawal_cuts_a_release_still_waiting_for_its_payee(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """Nothing was sent for a waiting release, so its money is the first to go."""
        esc = funded(service, fake)
        service.register_payee(HUNTER, country="US")
        op = release(service, esc, 10_000)
        fake.open_dispute(intent_of(esc), amount=usd(20_000))
        fake.deliver(service)
        disputed = service.get(esc.id)
        assert (disputed.held, disputed.reserved) == (usd(5_000), usd(0))
        assert disputed.shortfall == usd(0)
        assert service.get_operation(op.id).status is OperationStatus.FAILED


class TestFunding:
    def test_a_dashboard_cancel_cancels_an_unfunded_escrow(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.cancel_outside(intent_of(esc))
        fake.deliver(service)
        cancelled = service.get(esc.id)
        assert cancelled.status is EscrowStatus.CANCELLED
        assert not cancelled.is_open
        assert service.audit_trail(esc.id)[-1].actor_id == "gateway:external"
        again = open_escrow(service)  # the bounty may be opened afresh
        assert again.id != esc.id

    def test_processing_keeps_it_awaiting_funding_and_refuses_a_cancel(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.process(intent_of(esc))
        fake.deliver(service)
        processing = service.get(esc.id)
        assert processing.status is EscrowStatus.AWAITING_FUNDING
        assert processing.payment_status == "processing"
        with pytest.raises(errors.InvalidTransitionError, match="processing"):
            service.cancel(esc.id, actor=POSTER)
        fake.pay(intent_of(esc))
        fake.deliver(service)
        assert service.get(esc.id).status is EscrowStatus.FUNDED

    def test_a_decline_then_a_successful_payment_funds_it(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.decline(intent_of(esc))
        fake.deliver(service)
        declined = service.get(esc.id)
        assert declined.status is EscrowStatus.AWAITING_FUNDING
        assert declined.last_payment_error
        fake.pay(intent_of(esc))
        fake.deliver(service)
        paid = service.get(esc.id)
        assert paid.status is EscrowStatus.FUNDED
        assert paid.held == usd(25_000)
        assert "escrow.payment_failed" in event_types(service)

    def test_recover_polls_a_payment_whose_webhook_was_lost(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        assert fake.drop_events() == 1
        clock.advance(service.settings.poll_interval - timedelta(seconds=1))
        service.recover()
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING  # not due yet
        clock.advance(timedelta(seconds=2))
        report = service.recover()
        assert report.completed == 1
        funded_now = service.get(esc.id)
        assert funded_now.status is EscrowStatus.FUNDED
        assert funded_now.held == usd(25_000)


class TestReserveAndHoldLimits:
    def test_required_reserve_is_everything_held(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        assert service.required_reserve("usd") == usd(0)
        a = funded(service, fake, amount=25_000, bounty="b1")
        funded(service, fake, amount=10_000, bounty="b2")
        open_escrow(service, amount=5_000, bounty="b3")  # not funded: nothing held
        ready_payee(service, fake)
        release(service, a, 4_000)
        service.register_payee("hunter-2", country="US")
        release(service, a, 1_000, payee_id="hunter-2")  # waits
        held = sum((e.held.amount for e in service.find()), 0)
        assert held == 21_000 + 10_000  # the waiting 1,000 is still held
        assert service.required_reserve("usd") == usd(held)

    def test_nearing_max_hold_lists_escrows_funded_long_ago(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        old = funded(service, fake, bounty="old")
        clock.advance(timedelta(days=85))
        funded(service, fake, bounty="new")
        emptied = funded(service, fake, bounty="emptied")
        clock.advance(timedelta(seconds=1))
        assert [e.id for e in service.nearing_max_hold(within=timedelta(days=7))] == [old.id]
        service.refund(emptied.id, actor=ADMIN, idempotency_key=new_key())
        clock.advance(timedelta(days=84))
        listed = {e.id for e in service.nearing_max_hold(within=timedelta(days=7))}
        assert emptied.id not in listed
        assert old.id in listed
        assert len(listed) == 2
