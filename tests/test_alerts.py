"""The alert path: the log record every alert writes, and the handlers that get it as a value."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bountyescrow import Actor, EscrowService, Money, OperationStatus
from bountyescrow._alerts import alert
from bountyescrow.alerts import Alert, add_alert_handler, capture_alerts
from bountyescrow.domain.gateway_objects import (
    CreateTransfer,
    PaymentSnapshot,
    RefundSnapshot,
    TransferSnapshot,
)
from bountyescrow.errors import (
    GatewayAuthenticationError,
    GatewayUnavailableError,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key


class TestAlertRecord:
    def test_an_alert_is_an_error_record_with_its_kind_and_fields(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            alert("reserve_breach", "release %s is short", "op_1", operation_id="op_1")
        (record,) = [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        assert record.levelno == logging.ERROR
        assert record.getMessage() == "ALERT reserve_breach: release op_1 is short"
        assert record.__dict__["alert"] == "reserve_breach"
        assert record.__dict__["operation_id"] == "op_1"

    def test_a_critical_alert_is_logged_at_critical(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            alert("gateway_credentials_refused", "key refused", critical=True)
        assert [r.levelno for r in caplog.records] == [logging.CRITICAL]


class TestHandlers:
    def test_a_handler_gets_every_alert_as_a_value(self) -> None:
        got: list[Alert] = []
        remove = add_alert_handler(got.append)
        try:
            before = datetime.now(UTC)
            alert("second_gateway_object", "%d objects for %s", 2, "op_1", operation_id="op_1")
        finally:
            remove()
        (value,) = got
        assert value.kind == "second_gateway_object"
        assert value.message == "2 objects for op_1"
        assert dict(value.fields) == {"operation_id": "op_1"}
        assert value.level == logging.ERROR
        assert before <= value.at <= datetime.now(UTC)

    def test_fields_are_read_only(self) -> None:
        with capture_alerts() as alerts:
            alert("reserve_breach", "short", escrow_id="esc_1")
        with pytest.raises(TypeError):
            alerts[0].fields["escrow_id"] = "other"  # type: ignore[index]

    def test_a_removed_handler_gets_nothing_more(self) -> None:
        got: list[Alert] = []
        remove = add_alert_handler(got.append)
        remove()
        remove()  # harmless twice
        alert("reserve_breach", "short")
        assert got == []

    def test_capture_collects_only_inside_the_block(self) -> None:
        with capture_alerts() as alerts:
            alert("reserve_breach", "inside")
        alert("reserve_breach", "outside")
        assert [a.message for a in alerts] == ["inside"]

    def test_a_failing_handler_is_logged_and_never_raised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(value: Alert) -> None:
            raise RuntimeError("pager down")

        remove = add_alert_handler(broken)
        try:
            with capture_alerts() as alerts, caplog.at_level(logging.ERROR):
                alert("reserve_breach", "short")
        finally:
            remove()
        assert [a.kind for a in alerts] == ["reserve_breach"]
        failed = [r for r in caplog.records if r.__dict__.get("alert") == "alert_handler_failed"]
        assert len(failed) == 1
        assert failed[0].exc_info is not None

    def test_an_alert_raised_by_a_handler_goes_to_the_log_only(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str] = []

        def noisy(value: Alert) -> None:
            calls.append(value.kind)
            alert("nested", "from a handler")

        remove = add_alert_handler(noisy)
        try:
            with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
                alert("reserve_breach", "short")
        finally:
            remove()
        assert calls == ["reserve_breach"]
        assert [r.__dict__["alert"] for r in caplog.records] == ["reserve_breach", "nested"]

    def test_a_handler_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="callable"):
            add_alert_handler("not a function")  # type: ignore[arg-type]


# --- where the service raises them ------------------------------------------------------------

POSTER = Actor("poster-1")


def _refused_key() -> GatewayAuthenticationError:
    return GatewayAuthenticationError(
        "Stripe refused the API key: Invalid API Key provided", code=None, request_id="req_1"
    )


class RefusingFake(FakeGateway):
    """A fake whose named calls raise the error queued for them, once each."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raising: dict[str, BaseException] = {}

    def _raise(self, name: str) -> None:
        error = self.raising.pop(name, None)
        if error is not None:
            raise error

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        self._raise("create_transfer")
        return super().create_transfer(request, idempotency_key=idempotency_key)

    def create_account(self, **kwargs: Any) -> Any:
        self._raise("create_account")
        return super().create_account(**kwargs)

    def get_refund(self, refund_ref: str) -> RefundSnapshot:
        self._raise("get_refund")
        return super().get_refund(refund_ref)

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        self._raise("get_payment")
        return super().get_payment(payment_ref)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> RefusingFake:
    return RefusingFake(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def service(fake: RefusingFake, clock: ManualClock) -> EscrowService:
    return EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="test", clock=clock)


def _funded(service: EscrowService, fake: FakeGateway) -> str:
    escrow = service.open_escrow(
        bounty_id="b1", poster_id=POSTER.id, amount=Money(25_000, "usd"), actor=POSTER
    )
    assert escrow.payment_ref is not None
    fake.pay(escrow.payment_ref)
    fake.deliver(service)
    return escrow.id


class TestCredentialsRefused:
    def test_a_release_refused_for_the_key_alerts_at_once(
        self, service: EscrowService, fake: RefusingFake
    ) -> None:
        """The first refusal alerts (critical); the release stays pending for later."""
        escrow_id = _funded(service, fake)
        payee = service.register_payee("hunter-1", country="US")
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        fake.raising["create_transfer"] = _refused_key()
        with capture_alerts() as alerts:
            op = service.release(
                escrow_id,
                payee_id="hunter-1",
                amount=Money(10_000, "usd"),
                actor=POSTER,
                idempotency_key=new_key(),
            )
        assert op.status is OperationStatus.PENDING
        (value,) = alerts
        assert value.kind == "gateway_credentials_refused"
        assert value.level == logging.CRITICAL
        assert value.fields["operation_id"] == op.id
        assert value.fields["escrow_id"] == escrow_id
        assert value.fields["request_id"] == "req_1"
        assert service.check_invariants() == []

    def test_registering_a_payee_with_a_refused_key_alerts_and_raises(
        self, service: EscrowService, fake: RefusingFake
    ) -> None:
        fake.raising["create_account"] = _refused_key()
        with capture_alerts() as alerts, pytest.raises(GatewayAuthenticationError):
            service.register_payee("hunter-1", country="US")
        assert [(a.kind, a.fields["payee_id"]) for a in alerts] == [
            ("gateway_credentials_refused", "hunter-1")
        ]

    def test_a_webhook_fetch_refused_for_the_key_alerts_and_fails_the_event(
        self, service: EscrowService, fake: RefusingFake
    ) -> None:
        escrow_id = _funded(service, fake)
        payment_ref = service.get(escrow_id).payment_ref
        assert payment_ref is not None
        fake.refund_outside(payment_ref, Money(5_000, "usd"))
        fake.raising["get_refund"] = _refused_key()
        with capture_alerts() as alerts:
            results = fake.deliver(service, raise_errors=False)
        assert any(isinstance(r, GatewayAuthenticationError) for r in results)
        assert [a.kind for a in alerts] == ["gateway_credentials_refused"], "one per cause"
        fake.deliver(service)
        assert service.check_invariants() == []

    def test_recovery_polling_with_a_refused_key_alerts(
        self, service: EscrowService, fake: RefusingFake, clock: ManualClock
    ) -> None:
        """A payment awaited by recover() is polled; the refused key alerts on that poll."""
        escrow = service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=Money(25_000, "usd"), actor=POSTER
        )
        clock.advance(timedelta(hours=1))
        fake.raising["get_payment"] = _refused_key()
        with capture_alerts() as alerts:
            service.recover()
        assert [(a.kind, a.fields["escrow_id"]) for a in alerts] == [
            ("gateway_credentials_refused", escrow.id)
        ]


class TestWebhookEventFailed:
    def test_an_event_that_fails_alerts_with_its_id(
        self, service: EscrowService, fake: RefusingFake
    ) -> None:
        escrow_id = _funded(service, fake)
        payment_ref = service.get(escrow_id).payment_ref
        assert payment_ref is not None
        fake.refund_outside(payment_ref, Money(5_000, "usd"))
        fake.raising["get_refund"] = GatewayUnavailableError("Stripe is down")
        with capture_alerts() as alerts:
            fake.deliver(service, raise_errors=False)
        failed = [a for a in alerts if a.kind == "webhook_event_failed"]
        assert len(failed) == 1
        event_id = failed[0].fields["event_id"]
        record = service.webhook_event(event_id)
        assert record is not None
        assert record.status.value == "failed"
        assert failed[0].fields["error"] == "GatewayUnavailableError"

    def test_an_event_applied_raises_no_alert(
        self, service: EscrowService, fake: RefusingFake
    ) -> None:
        with capture_alerts() as alerts:
            _funded(service, fake)
        assert alerts == []
