"""Regressions for ways money could move twice, be lost or be stuck in the service's driver.

Each test pins one reproduced defect: what the host saw, what the gateway really moved, and
what the books say afterwards.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import (
    Actor,
    EscrowService,
    EscrowSettings,
    FeeSchedule,
    Money,
    OperationStatus,
    errors,
)
from bountyescrow.domain.gateway_objects import META_NAMESPACE, CreateTransfer, TransferSnapshot
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, ready_payee, usd


class FlakyTransfers(FakeGateway):
    """A fake whose next transfer call raises a given exception, then behaves."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raising: list[BaseException] = []
        self.keys: list[str] = []

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        self.keys.append(idempotency_key)
        if self.raising:
            raise self.raising.pop(0)
        return super().create_transfer(request, idempotency_key=idempotency_key)


@pytest.fixture
def flaky(clock: ManualClock) -> FlakyTransfers:
    return FlakyTransfers(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def svc(store: InMemoryStore, flaky: FlakyTransfers, clock: ManualClock) -> EscrowService:
    return EscrowService(store, flaky, fee_bps=1000, namespace="test", clock=clock)


def transfers(fake: FakeGateway) -> list[Money]:
    return [m.amount for m in fake.movements if m.kind == "transfer"]


def after_backoff(service: EscrowService, clock: ManualClock, op_id: str) -> None:
    """Move the clock past the operation's lease and back-off, then recover."""
    op = service.get_operation(op_id)
    due = max(t for t in (op.claimed_until, op.next_attempt_at, clock.now()) if t is not None)
    clock.advance(due - clock.now() + timedelta(seconds=1))
    service.recover()


class TestLease:
    def test_a_lease_not_longer_than_the_longest_gateway_call_is_refused(
        self, store: InMemoryStore, clock: ManualClock
    ) -> None:
        """Otherwise recover() claims an operation whose first call is still in flight."""
        fake = FakeGateway(clock=clock, max_call_duration=timedelta(seconds=90))
        with pytest.raises(errors.ConfigurationError, match="longest"):
            EscrowService(
                store, fake, clock=clock, settings=EscrowSettings(lease=timedelta(seconds=90))
            )

    def test_the_default_lease_is_twice_the_longest_call_and_at_least_a_minute(
        self, store: InMemoryStore, clock: ManualClock
    ) -> None:
        slow = FakeGateway(clock=clock, max_call_duration=timedelta(seconds=250))
        quick = FakeGateway(clock=clock, max_call_duration=timedelta(seconds=1))
        assert EscrowService(store, slow, clock=clock).lease == timedelta(seconds=500)
        assert EscrowService(store, quick, clock=clock).lease == timedelta(seconds=60)

    def test_a_gateway_that_does_not_say_gets_a_long_lease(
        self, store: InMemoryStore, clock: ManualClock
    ) -> None:
        class Silent(FakeGateway):
            max_call_duration = None  # type: ignore[assignment]

        service = EscrowService(store, Silent(clock=clock), clock=clock)
        assert service.lease >= timedelta(minutes=10)


class TestKeyWindow:
    def test_a_release_that_waited_a_day_for_its_payee_resends_its_first_key(
        self, svc: EscrowService, flaky: FlakyTransfers, clock: ManualClock
    ) -> None:
        """The 24 h key window runs from the first send, not from the operation's creation."""
        esc = funded(svc, flaky)
        payee = svc.register_payee(HUNTER, country="US")
        op = svc.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        clock.advance(timedelta(hours=30))
        flaky.raising.append(errors.GatewayUnavailableError("connection reset"))
        flaky.complete_onboarding(payee.account_ref)
        flaky.deliver(svc)
        assert svc.get_operation(op.id).status is OperationStatus.PENDING
        after_backoff(svc, clock, op.id)
        done = svc.get_operation(op.id)
        assert done.status is OperationStatus.SUCCEEDED
        assert len(set(flaky.keys)) == 1, "the resend must reuse the key sent minutes ago"
        assert transfers(flaky) == [usd(9_000)]


class TestUnknownOutcomes:
    def test_an_exception_that_is_not_a_gateway_error_leaves_the_release_pending(
        self, svc: EscrowService, flaky: FlakyTransfers, clock: ManualClock, caplog: Any
    ) -> None:
        """A third-party adapter's bug must not escape after the money may have moved."""
        esc = funded(svc, flaky)
        ready_payee(svc, flaky)
        flaky.raising.append(RuntimeError("adapter bug"))
        with caplog.at_level(logging.ERROR, logger="bountyescrow"):
            op = svc.release(
                esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="k"
            )
        assert op.status is OperationStatus.PENDING
        assert any(r.exc_info and "adapter bug" in str(r.exc_info[1]) for r in caplog.records)
        again = svc.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="k"
        )
        assert again.id == op.id  # the same operation, not a second one nor "in progress"
        assert again.status is OperationStatus.PENDING  # backing off: recover() resends it
        after_backoff(svc, clock, op.id)
        assert svc.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfers(flaky) == [usd(9_000)]

    def test_a_key_in_use_is_retried_soon_without_an_alert(
        self, svc: EscrowService, flaky: FlakyTransfers, clock: ManualClock, caplog: Any
    ) -> None:
        esc = funded(svc, flaky)
        ready_payee(svc, flaky)
        flaky.raising.append(errors.IdempotencyKeyInUseError("key in use", code="idem"))
        with caplog.at_level(logging.INFO):
            op = svc.release(
                esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="k"
            )
        assert op.status is OperationStatus.PENDING
        pending = svc.get_operation(op.id)
        assert pending.next_attempt_at is not None
        assert pending.next_attempt_at - clock.now() <= timedelta(minutes=1)
        assert not [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        after_backoff(svc, clock, op.id)
        assert svc.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfers(flaky) == [usd(9_000)]


class TestPlatformBalance:
    def test_balance_insufficient_keeps_the_release_pending_and_alerts(
        self, svc: EscrowService, flaky: FlakyTransfers, clock: ManualClock, caplog: Any
    ) -> None:
        """A reserve breach: nothing moved; the release goes out once the balance is back."""
        esc = funded(svc, flaky)
        ready_payee(svc, flaky)
        flaky.raising.append(
            errors.PlatformBalanceInsufficientError("balance", code="balance_insufficient")
        )
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            op = svc.release(
                esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="k"
            )
        assert op.status is OperationStatus.PENDING
        assert [getattr(r, "alert", None) for r in caplog.records] == ["reserve_breach"]
        assert svc.get(esc.id).reserved == usd(10_000)
        after_backoff(svc, clock, op.id)
        done = svc.get_operation(op.id)
        assert done.status is OperationStatus.SUCCEEDED
        assert done.generation == 1, "the refused key is replayed by Stripe: a new generation"
        assert transfers(flaky) == [usd(9_000)]


class TestRefundReversingReleases:
    def test_a_replay_does_not_reverse_a_release_made_after_the_first_call(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake)
        service.release(
            esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        first = service.refund(
            esc.id, amount=usd(5_000), actor=ADMIN, reverse_releases=True, idempotency_key="r"
        )
        later = service.release(
            esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        replay = service.refund(
            esc.id, amount=usd(5_000), actor=ADMIN, reverse_releases=True, idempotency_key="r"
        )
        assert replay.id == first.id
        assert service.get_operation(later.id).reversed == usd(0)
        assert [m.kind for m in fake.movements].count("reversal") == 1

    def test_other_parameters_are_refused_before_anything_is_reversed(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake)
        service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key="r")
        service.release(
            esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        with pytest.raises(errors.IdempotencyConflictError):
            service.refund(
                esc.id, amount=usd(2_000), actor=ADMIN, reverse_releases=True, idempotency_key="r"
            )
        assert "reversal" not in [m.kind for m in fake.movements]


class TestFrozen:
    def test_a_waiting_release_is_not_sent_while_a_dispute_is_open(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        payee = service.register_payee(HUNTER, country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert esc.payment_ref is not None
        fake.open_dispute(esc.payment_ref, inquiry=True)  # freezes, takes no money
        fake.deliver(service)
        assert service.get(esc.id).frozen
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        clock.advance(timedelta(hours=2))
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.AWAITING_PAYEE
        assert transfers(fake) == []
        fake.close_dispute(esc.payment_ref, won=True)
        fake.deliver(service)
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfers(fake) == [usd(9_000)]

    def test_a_release_held_back_by_a_fraud_warning_goes_out_when_an_admin_clears_it(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        payee = service.register_payee(HUNTER, country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert esc.payment_ref is not None
        fake.early_fraud_warning(esc.payment_ref)
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        assert service.get_operation(op.id).status is OperationStatus.AWAITING_PAYEE
        service.clear_fraud_warning(esc.id, actor=ADMIN)
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfers(fake) == [usd(9_000)]


class TestWaitingReleases:
    def test_the_backstop_is_not_starved_by_releases_whose_payee_is_not_ready(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        esc = funded(service, fake, amount=99_999_999)
        service.register_payee("slow", country="US")
        for _ in range(501):
            service.release(
                esc.id, payee_id="slow", amount=usd(100), actor=POSTER, idempotency_key=new_key()
            )
        clock.advance(timedelta(seconds=1))  # the ready payee's release is the newest
        quick = service.register_payee(HUNTER, country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        fake.complete_onboarding(quick.account_ref)
        # The readiness is recorded, then the process dies before it sends the release.
        monkeypatch.setattr(service._driver, "send_ready_release", lambda op_id: None)
        fake.deliver(service)
        monkeypatch.undo()
        assert service.get_payee(HUNTER).ready
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED

    def test_recover_asks_again_about_a_payee_a_transfer_error_marked_not_ready(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """No account.updated comes when nothing changed at the gateway."""
        esc = funded(service, fake)
        ready_payee(service, fake)
        fake.fail_next("transfer", error="destination_not_ready")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        assert not service.get_payee(HUNTER).ready
        clock.advance(service.settings.poll_interval + timedelta(seconds=1))
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert transfers(fake) == [usd(9_000)]


class TestConstructionAndOpening:
    def test_a_fixed_fee_in_a_currency_the_platform_does_not_settle_is_refused(
        self, store: InMemoryStore, fake: FakeGateway
    ) -> None:
        with pytest.raises(errors.ValidationError, match="fixed fee"):
            EscrowService(store, fake, fees=FeeSchedule(500, fixed=Money(30, "eur")))

    def test_an_escrow_in_another_currency_than_the_fixed_fee_is_refused_at_opening(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """Found at the first release, the money was stuck until refunded."""
        settings = EscrowSettings(settlement_currencies=frozenset({"usd", "eur"}))
        service = EscrowService(
            store, fake, fees=FeeSchedule(500, fixed=usd(30)), settings=settings, clock=clock
        )
        with pytest.raises(errors.ValidationError, match="fixed fee"):
            service.open_escrow(
                bounty_id="b1", poster_id=POSTER.id, amount=Money(10_000, "eur"), actor=POSTER
            )
        assert service.find() == []
        assert fake.movements == []

    def test_a_bounty_id_too_long_for_gateway_metadata_is_refused_before_writing(
        self, service: EscrowService, fake: FakeGateway, store: InMemoryStore
    ) -> None:
        """Stripe refuses metadata values over 500 characters after step 1 committed."""
        commits = store.commits
        with pytest.raises(errors.ValidationError, match="500"):
            service.open_escrow(
                bounty_id="b" * 501, poster_id=POSTER.id, amount=usd(10_000), actor=POSTER
            )
        assert store.commits == commits
        assert fake.movements == []

    def test_a_payee_id_too_long_for_gateway_metadata_is_refused_before_writing(
        self, service: EscrowService, store: InMemoryStore
    ) -> None:
        commits = store.commits
        with pytest.raises(errors.ValidationError, match="500"):
            service.register_payee("h" * 501, country="US", actor=Actor("h" * 501))
        assert store.commits == commits


class TestNamespaceInMetadata:
    def test_every_request_names_the_deployment(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """Deployments sharing one gateway account tell their objects apart by it."""
        esc = funded(service, fake, amount=30_000)
        ready_payee(service, fake)
        release = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        service.reverse(
            esc.id, release.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key()
        )
        service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        assert esc.payment_ref is not None
        fake.pay_again(esc.payment_ref)  # a second payment: refunded at once as a surplus
        fake.deliver(service)
        requests = [op.request for op in service.operations(esc.id) if op.request is not None]
        kinds = sorted(type(r).__name__ for r in requests)
        assert kinds == [
            "CreatePayment",
            "CreateRefund",
            "CreateRefund",
            "CreateReversal",
            "CreateTransfer",
        ]
        for request in requests:
            assert getattr(request, "metadata", {})[META_NAMESPACE] == "test"
