"""`RecoveryReport`: the oldest pending age, errors that matter, and the too-long alert."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pydantic
import pytest

from bountyescrow import EscrowService, EscrowSettings, OperationStatus
from bountyescrow.cli import main
from bountyescrow.domain.gateway_objects import CreateTransfer
from bountyescrow.errors import GatewayAuthenticationError, GatewayUnavailableError
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import HUNTER, POSTER, funded, open_escrow, ready_payee, usd

HOUR = timedelta(hours=1)


def pending_alerts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "alert", None) == "operation_pending_too_long"]


def stuck_release(service: EscrowService, fake: FakeGateway) -> str:
    """A release whose transfer call did not get through: pending, outcome unknown."""
    ready_payee(service, fake)
    esc = funded(service, fake)
    fake.fail_next("transfer", "unavailable")
    op = service.release(
        esc.id, payee_id=HUNTER, amount=usd(1_000), actor=POSTER, idempotency_key=new_key()
    )
    assert op.status is OperationStatus.PENDING
    return op.id


class KeyRefused(FakeGateway):
    """A gateway that refuses our API key for transfers while `refusing` is set."""

    refusing = False

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> Any:
        if self.refusing:
            raise GatewayAuthenticationError("Invalid API Key provided: sk_test_****1234")
        return super().create_transfer(request, idempotency_key=idempotency_key)


class TestOldestPendingAge:
    def test_nothing_pending_reports_none(self, service: EscrowService) -> None:
        assert service.recover().oldest_pending_age is None

    def test_the_age_of_the_oldest_pending_operation(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        stuck_release(service, fake)
        clock.advance(timedelta(minutes=20))
        fake.fail_next("transfer", "unavailable")
        report = service.recover()
        assert report.oldest_pending_age == timedelta(minutes=20)

    def test_a_funding_waiting_for_the_payer_is_not_pending_on_anyone_else(
        self, service: EscrowService, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An abandoned checkout is no trouble of ours: no age, no alert."""
        open_escrow(service)
        clock.advance(timedelta(days=3))
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            report = service.recover()
        assert report.oldest_pending_age is None
        assert pending_alerts(caplog) == []


class TestErrorsThatMatter:
    def test_a_gateway_that_cannot_be_reached_is_an_error_not_still_pending(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        stuck_release(service, fake)
        clock.advance(timedelta(minutes=5))
        fake.fail_next("transfer", "unavailable")
        report = service.recover()
        assert (report.claimed, report.completed, report.still_pending, report.errors) == (
            1,
            0,
            0,
            1,
        )

    def test_a_refused_key_is_an_error(self, clock: ManualClock) -> None:
        fake = KeyRefused(webhook_secret="whsec_test", clock=clock)
        service = EscrowService(InMemoryStore(), fake, fee_bps=1000, clock=clock)
        op_id = stuck_release(service, fake)
        fake.refusing = True
        clock.advance(timedelta(minutes=5))
        report = service.recover()
        assert report.errors == 1
        assert report.still_pending == 0
        assert service.get_operation(op_id).status is OperationStatus.PENDING

    def test_the_gateway_back_completes_with_no_error(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        op_id = stuck_release(service, fake)
        clock.advance(timedelta(minutes=5))
        report = service.recover()
        assert (report.completed, report.errors, report.oldest_pending_age) == (1, 0, None)
        assert service.get_operation(op_id).status is OperationStatus.SUCCEEDED

    def test_a_payment_awaited_from_the_payer_is_still_pending_not_an_error(
        self, service: EscrowService, clock: ManualClock
    ) -> None:
        open_escrow(service)
        clock.advance(timedelta(minutes=20))
        report = service.recover()
        assert (report.claimed, report.still_pending, report.errors) == (1, 1, 0)

    def test_a_poll_that_cannot_reach_the_gateway_is_an_error(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        open_escrow(service)
        clock.advance(timedelta(minutes=20))

        def unreachable(ref: str) -> Any:
            raise GatewayUnavailableError("connection refused")

        fake.get_payment = unreachable  # type: ignore[method-assign]
        report = service.recover()
        assert (report.claimed, report.still_pending, report.errors) == (1, 0, 1)


class TestPendingTooLong:
    def test_alerted_once_the_threshold_passes(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        op_id = stuck_release(service, fake)
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            clock.advance(timedelta(minutes=59))
            fake.fail_next("transfer", "unavailable")
            service.recover()
            assert pending_alerts(caplog) == []
            clock.advance(timedelta(minutes=2))
            fake.fail_next("transfer", "unavailable")
            service.recover()
        [record] = pending_alerts(caplog)
        assert record.levelno == logging.ERROR
        assert record.operation_id == op_id  # type: ignore[attr-defined]
        assert record.pending_seconds == 61 * 60  # type: ignore[attr-defined]
        assert "1 h 1 min" in record.getMessage()

    def test_alerted_again_only_at_the_next_multiple_of_the_threshold(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        stuck_release(service, fake)
        fake.fail_next("transfer", "unavailable", times=50)
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            for _ in range(11):  # every 15 minutes for 2 h 45 min
                clock.advance(timedelta(minutes=15))
                service.recover()
        ages = [r.pending_seconds for r in pending_alerts(caplog)]  # type: ignore[attr-defined]
        assert ages == [3600, 2 * 3600]

    def test_the_threshold_is_a_setting(
        self, fake: FakeGateway, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = EscrowSettings(pending_alert_after=timedelta(minutes=10))
        service = EscrowService(InMemoryStore(), fake, settings=settings, clock=clock)
        stuck_release(service, fake)
        clock.advance(timedelta(minutes=11))
        fake.fail_next("transfer", "unavailable")
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            service.recover()
        assert len(pending_alerts(caplog)) == 1

    def test_a_settled_operation_is_not_alerted(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Recovery finishes the operation first; what it finished is not pending."""
        op_id = stuck_release(service, fake)
        clock.advance(2 * HOUR)
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            report = service.recover()
        assert service.get_operation(op_id).status is OperationStatus.SUCCEEDED
        assert report.oldest_pending_age is None
        assert pending_alerts(caplog) == []

    @pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1)])
    def test_a_threshold_that_is_not_positive_is_refused(self, value: timedelta) -> None:
        with pytest.raises(pydantic.ValidationError, match="pending_alert_after"):
            EscrowSettings(pending_alert_after=value)


class TestRecoverCommand:
    @staticmethod
    def run(service: EscrowService) -> int:
        @contextmanager
        def build(url: str, namespace: str) -> Iterator[EscrowService]:
            yield service

        return main(["recover", "--url", "unused"], service_factory=build)

    def test_prints_the_oldest_pending_age_and_exits_1_when_stripe_is_unreachable(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        stuck_release(service, fake)
        clock.advance(timedelta(hours=2, minutes=5))
        fake.fail_next("transfer", "unavailable")
        assert self.run(service) == 1
        out = capsys.readouterr().out
        assert "still pending 0, errors 1, oldest pending 2h05m" in out

    def test_prints_none_when_nothing_is_pending(
        self, service: EscrowService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert self.run(service) == 0
        out = capsys.readouterr().out
        assert out.strip() == (
            "claimed 0, completed 0, still pending 0, errors 0, oldest pending none"
        )

    def test_short_ages(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        stuck_release(service, fake)
        clock.advance(timedelta(seconds=12))
        assert self.run(service) == 0  # not due yet: nothing claimed
        assert "oldest pending 12s" in capsys.readouterr().out
        clock.advance(timedelta(minutes=4, seconds=58))
        fake.fail_next("transfer", "unavailable")
        self.run(service)
        assert "oldest pending 5m10s" in capsys.readouterr().out
