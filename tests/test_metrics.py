"""Metrics through OpenTelemetry: what the instruments record, read with the SDK's in-memory
reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bountyescrow import Actor, EscrowService, Money, OperationStatus, _metrics
from bountyescrow._alerts import alert
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher
from tests.keys import new_key

POSTER = Actor("poster-1")


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    _metrics.use_meter_provider(provider)
    yield reader
    _metrics.use_meter_provider(None)
    provider.shutdown()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def service(fake: FakeGateway, clock: ManualClock) -> EscrowService:
    return EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="test", clock=clock)


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """The data points of metric `name`, by their sorted attributes."""
    data = reader.get_metrics_data()
    found: dict[tuple[tuple[str, Any], ...], Any] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point
    return found


def values(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {k: p.value for k, p in points(reader, name).items()}


def released(service: EscrowService, fake: FakeGateway, *, fail: str | None = None) -> str:
    esc = service.open_escrow(
        bounty_id="b1", poster_id=POSTER.id, amount=Money(25_000, "usd"), actor=POSTER
    )
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    payee = service.register_payee("hunter", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)
    if fail is not None:
        fake.fail_next("transfer", fail)
    op = service.release(
        esc.id,
        payee_id="hunter",
        amount=Money(1_000, "usd"),
        actor=POSTER,
        idempotency_key=new_key(),
    )
    return op.id


class TestOperations:
    def test_each_recorded_call_counts_by_kind_and_outcome(
        self, reader: InMemoryMetricReader, service: EscrowService, fake: FakeGateway
    ) -> None:
        released(service, fake)
        counted = values(reader, "bountyescrow.operations")
        assert counted[(("kind", "funding"), ("outcome", "pending"))] == 1  # awaits the payer
        assert counted[(("kind", "release"), ("outcome", "succeeded"))] == 1

    def test_an_unknown_outcome_counts_as_pending_and_a_refusal_as_failed(
        self, reader: InMemoryMetricReader, service: EscrowService, fake: FakeGateway
    ) -> None:
        released(service, fake, fail="unavailable")
        counted = values(reader, "bountyescrow.operations")
        assert counted[(("kind", "release"), ("outcome", "pending"))] == 1
        esc = service.find(bounty_id="b1")[0]
        fake.fail_next("transfer", "invalid")
        op = service.release(
            esc.id,
            payee_id="hunter",
            amount=Money(1_000, "usd"),
            actor=POSTER,
            idempotency_key=new_key(),
        )
        assert op.status is OperationStatus.FAILED
        counted = values(reader, "bountyescrow.operations")
        assert counted[(("kind", "release"), ("outcome", "failed"))] == 1


class TestGatewayDuration:
    def test_calls_are_timed_by_kind_and_error(
        self, reader: InMemoryMetricReader, service: EscrowService, fake: FakeGateway
    ) -> None:
        released(service, fake, fail="unavailable")
        timed = points(reader, "bountyescrow.gateway.duration")
        assert timed[(("kind", "funding"),)].count == 1
        failed = timed[(("error.type", "GatewayUnavailableError"), ("kind", "release"))]
        assert failed.count == 1
        assert failed.sum >= 0
        # Buckets in seconds, not the SDK's default (made for milliseconds).
        assert list(failed.explicit_bounds) == [
            0.05,
            0.1,
            0.25,
            0.5,
            1.0,
            2.0,
            5.0,
            10.0,
            30.0,
            60.0,
        ]


class TestRecoveryAndPending:
    def test_runs_and_pending_gauges(
        self,
        reader: InMemoryMetricReader,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
    ) -> None:
        released(service, fake, fail="unavailable")
        clock.advance(timedelta(minutes=5))
        fake.fail_next("transfer", "unavailable")
        service.recover()
        assert values(reader, "bountyescrow.recovery.runs") == {(("result", "errors"),): 1}
        namespace = (("namespace", "test"),)
        assert values(reader, "bountyescrow.operations.pending") == {namespace: 1}
        assert values(reader, "bountyescrow.operations.oldest_pending_age") == {namespace: 300}
        clock.advance(timedelta(minutes=1))  # the age grows between passes
        assert values(reader, "bountyescrow.operations.oldest_pending_age") == {namespace: 360}

        service.recover()
        runs = values(reader, "bountyescrow.recovery.runs")
        assert runs[(("result", "ok"),)] == 1
        assert values(reader, "bountyescrow.operations.pending") == {namespace: 0}
        assert values(reader, "bountyescrow.operations.oldest_pending_age") == {namespace: 0}


class TestAlerts:
    def test_alerts_count_by_kind(
        self, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.CRITICAL + 1, logger="bountyescrow.alerts"):
            alert("reserve_breach", "test %s", "one")
            alert("reserve_breach", "test %s", "two")
            alert("idempotency_mismatch", "test")
        assert values(reader, "bountyescrow.alerts") == {
            (("alert", "reserve_breach"),): 2,
            (("alert", "idempotency_mismatch"),): 1,
        }


class TestWebhooks:
    def test_outcomes_of_events_through_the_dispatcher(
        self, reader: InMemoryMetricReader, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=Money(25_000, "usd"), actor=POSTER
        )
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        dispatcher = WebhookDispatcher(service, ["whsec_test"])
        assert all(r.ok for r in fake.deliver(dispatcher))
        assert dispatcher.handle(b"{}", {"Stripe-Signature": "t=1,v1=00"}).status == 400
        body, headers = fake.webhook_request(
            {
                "id": "evt_other",
                "object": "event",
                "type": "customer.created",
                "livemode": False,
                "created": 1_700_000_000,
                "data": {"object": {"id": "cus_1", "object": "customer", "metadata": {}}},
            }
        )
        assert dispatcher.handle(body, headers).json() == {
            "status": "ignored",
            "event": "evt_other",
        }
        counted = values(reader, "bountyescrow.webhook.events")
        assert counted[(("outcome", "processed"),)] >= 1
        assert counted[(("outcome", "refused"),)] == 1
        assert counted[(("outcome", "ignored"),)] == 1


class TestWithoutAnSdk:
    def test_nothing_is_recorded_and_nothing_fails(self) -> None:
        """With the API alone (the global no-op provider), every call is harmless."""
        _metrics.use_meter_provider(None)
        _metrics.operation_recorded("release", "succeeded")
        _metrics.alert_raised("x")
        with _metrics.gateway_call("release"):
            pass
        assert _metrics._get() is not None
