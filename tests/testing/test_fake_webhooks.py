"""`FakeGateway` events: queued as `GatewayEvent`s and as signed, Stripe-shaped requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow.domain.gateway_objects import GatewayEvent, RefundSnapshot
from bountyescrow.testing import FakeGateway, ManualClock

from .support import (
    RecordingDispatcher,
    RecordingService,
    funded_transfer,
    paid,
    ready_account,
    refund_request,
    reversal_request,
    types,
)

stripe = pytest.importorskip("stripe")

EVENT_KEYS = {
    "id",
    "object",
    "api_version",
    "created",
    "livemode",
    "pending_webhooks",
    "request",
    "type",
    "data",
}


def everything(fake: FakeGateway) -> None:
    """Queue at least one event of every kind the fake sends."""
    payment, transfer = funded_transfer(fake)
    fake.create_reversal(reversal_request(transfer.ref), idempotency_key="rv")
    fake.create_refund(refund_request(payment.ref), idempotency_key="re")
    fake.refund_outside(payment.ref, amount=None)
    fake.open_dispute(fake.pay_again(payment.ref))
    fake.early_fraud_warning(payment.ref)
    fake.payout(transfer.destination, transfer.amount - reversal_request("x").amount)
    fake.deauthorize(transfer.destination)


class TestDeliverToService:
    def test_delivers_gateway_events_in_order_and_drains_the_queue(self, fake: FakeGateway) -> None:
        paid(fake)
        ready_account(fake)
        service = RecordingService()
        results = fake.deliver(service)
        assert [e.type for e in service.events] == [
            "payment_intent.succeeded",
            "account.updated",
            "capability.updated",
        ]
        assert results == ["evt_0001", "evt_0002", "evt_0003"]
        assert fake.pending_events == ()
        assert fake.deliver(service) == []

    def test_event_carries_the_object_as_it_was_when_queued(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.hold_refunds()
        refund = fake.create_refund(refund_request(payment.ref), idempotency_key="a")
        fake.settle_refund(refund.ref)
        service = RecordingService()
        fake.deliver(service)
        statuses = [e.object.status for e in service.events if isinstance(e.object, RefundSnapshot)]
        assert statuses == ["pending", "pending", "succeeded", "succeeded"]

    def test_connect_events_name_the_account(self, fake: FakeGateway) -> None:
        everything(fake)
        for event in fake.pending_events:
            connect = event.type.startswith(("account.", "capability.", "payout."))
            assert (event.account is not None) == connect, event.type
            assert event.livemode is False

    def test_created_comes_from_the_clock(self, fake: FakeGateway, clock: ManualClock) -> None:
        clock.advance(timedelta(seconds=42))
        paid(fake)
        assert fake.pending_events[0].created == int(clock.now().timestamp())

    def test_duplicate_delivers_every_event_twice(self, fake: FakeGateway) -> None:
        paid(fake)
        ready_account(fake)
        service = RecordingService()
        fake.deliver(service, duplicate=True)
        assert [e.id for e in service.events] == [
            "evt_0001",
            "evt_0001",
            "evt_0002",
            "evt_0002",
            "evt_0003",
            "evt_0003",
        ]

    def test_shuffle_is_deterministic_by_seed(self, clock: ManualClock) -> None:
        def order(seed: int) -> list[str]:
            fake = FakeGateway(clock=clock)
            everything(fake)
            service = RecordingService()
            fake.deliver(service, shuffle=True, duplicate=True, seed=seed)
            return [e.id for e in service.events]

        assert order(1) == order(1)
        assert order(1) != order(2)
        assert sorted(order(1)) == sorted(order(2))
        assert order(1) != sorted(order(1))

    def test_errors_propagate_and_the_rest_stays_queued(self, fake: FakeGateway) -> None:
        paid(fake)
        ready_account(fake)

        class Flaky(RecordingService):
            def apply_event(self, event: GatewayEvent) -> str:
                if event.type == "account.updated":
                    raise RuntimeError("not committed yet")
                return super().apply_event(event)

        flaky = Flaky()
        with pytest.raises(RuntimeError):
            fake.deliver(flaky)
        assert types(fake) == ["account.updated", "capability.updated"]
        assert [e.type for e in flaky.events] == ["payment_intent.succeeded"]

    def test_errors_can_be_collected(self, fake: FakeGateway) -> None:
        paid(fake)
        ready_account(fake)

        class Failing:
            def apply_event(self, event: GatewayEvent) -> str:
                if event.type == "account.updated":
                    raise RuntimeError("boom")
                return event.type

        results = fake.deliver(Failing(), raise_errors=False)
        assert results[0] == "payment_intent.succeeded"
        assert isinstance(results[1], RuntimeError)
        assert results[2] == "capability.updated"
        assert fake.pending_events == ()

    def test_events_queued_while_delivering_wait_for_the_next_delivery(
        self, fake: FakeGateway
    ) -> None:
        payment = paid(fake)

        class Refunder:
            def apply_event(self, event: GatewayEvent) -> None:
                fake.create_refund(refund_request(payment.ref), idempotency_key="k")

        fake.deliver(Refunder())
        assert types(fake) == ["refund.created", "charge.refunded"]

    def test_a_target_without_a_known_method_is_refused(self, fake: FakeGateway) -> None:
        paid(fake)
        with pytest.raises(TypeError, match="apply_event"):
            fake.deliver(object())


class TestDeliverToDispatcher:
    def test_signed_requests_verify_with_the_stripe_sdk(self, fake: FakeGateway) -> None:
        everything(fake)
        count = len(fake.pending_events)
        dispatcher = RecordingDispatcher("whsec_test")
        assert fake.deliver(dispatcher) == [200] * count
        assert len(dispatcher.bodies) == count

    def test_construct_event_parses_the_body(self, fake: FakeGateway) -> None:
        paid(fake)
        (payload,) = fake.pending_payloads
        body, headers = fake.webhook_request(payload)
        event = stripe.Webhook.construct_event(
            body.decode(), headers["Stripe-Signature"], "whsec_test"
        )
        assert event["type"] == "payment_intent.succeeded"
        assert event["data"]["object"]["latest_charge"] == "ch_0001"

    def test_another_secret_fails_verification(self, fake: FakeGateway) -> None:
        paid(fake)
        assert fake.deliver(RecordingDispatcher("whsec_other")) == [400]

    def test_signing_with_another_secret_for_rotation(self, fake: FakeGateway) -> None:
        paid(fake)
        assert fake.deliver(RecordingDispatcher("whsec_old"), secret="whsec_old") == [200]

    def test_a_stale_timestamp_fails_the_sdk_tolerance(self, fake: FakeGateway) -> None:
        paid(fake)
        assert fake.deliver(RecordingDispatcher(), timestamp=1_000_000_000) == [400]

    def test_signature_is_hmac_sha256_over_timestamp_dot_body(self, fake: FakeGateway) -> None:
        body = b'{"id": "evt_x"}'
        header = fake.sign(body, timestamp=1_767_225_600)
        expected = hmac.new(b"whsec_test", b"1767225600." + body, hashlib.sha256).hexdigest()
        assert header == f"t=1767225600,v1={expected}"

    def test_headers_and_body(self, fake: FakeGateway) -> None:
        paid(fake)
        dispatcher = RecordingDispatcher()
        fake.deliver(dispatcher)
        (headers,) = dispatcher.headers
        assert headers["Content-Type"].startswith("application/json")
        assert headers["Stripe-Signature"].startswith("t=")

    def test_duplicates_carry_the_same_event_id(self, fake: FakeGateway) -> None:
        paid(fake)
        dispatcher = RecordingDispatcher()
        fake.deliver(dispatcher, duplicate=True)
        assert [b["id"] for b in dispatcher.bodies] == ["evt_0001", "evt_0001"]

    def test_a_target_with_handle_gets_requests_even_if_it_applies_events(
        self, fake: FakeGateway
    ) -> None:
        paid(fake)

        class Both(RecordingDispatcher):
            def apply_event(self, event: GatewayEvent) -> int:
                raise AssertionError("handle() should have been used")

        assert fake.deliver(Both()) == [200]

    def test_pending_payloads_are_copies(self, fake: FakeGateway) -> None:
        paid(fake)
        fake.pending_payloads[0]["type"] = "changed"
        assert fake.pending_payloads[0]["type"] == "payment_intent.succeeded"
        assert fake.drop_events() == 1
        assert fake.pending_payloads == ()


class TestStripeShapes:
    """Bodies carry the fields real Stripe sends (checked against Stripe's fixtures3.json)."""

    @pytest.fixture
    def bodies(self, fake: FakeGateway) -> list[dict[str, Any]]:
        everything(fake)
        dispatcher = RecordingDispatcher()
        fake.deliver(dispatcher)
        return dispatcher.bodies

    @staticmethod
    def of_type(bodies: list[dict[str, Any]], type: str) -> Mapping[str, Any]:
        return next(b["data"]["object"] for b in bodies if b["type"] == type)

    def test_every_event_has_the_event_envelope(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            assert set(body) >= EVENT_KEYS, body["type"]
            assert body["object"] == "event"
            assert body["api_version"] == "2024-06-20"
            assert body["livemode"] is False
            assert body["request"] == {"id": None, "idempotency_key": None}
            assert ("account" in body) == body["type"].startswith(
                ("account.", "capability.", "payout.")
            )
            json.dumps(body)

    def test_payment_intent(self, bodies: list[dict[str, Any]]) -> None:
        pi = self.of_type(bodies, "payment_intent.succeeded")
        assert pi["object"] == "payment_intent"
        assert (pi["status"], pi["amount"], pi["amount_received"], pi["currency"]) == (
            "succeeded",
            10_000,
            10_000,
            "usd",
        )
        assert pi["latest_charge"] == "ch_0001"
        assert pi["transfer_group"] == "esc_1"
        assert pi["metadata"]["bountyescrow_escrow_id"] == "esc_1"
        assert pi["client_secret"].startswith("pi_0001_secret_")
        assert pi["last_payment_error"] is None

    def test_transfer_with_reversals(self, bodies: list[dict[str, Any]]) -> None:
        created = self.of_type(bodies, "transfer.created")
        assert created["object"] == "transfer"
        assert (created["destination"], created["source_transaction"]) == ("acct_0001", "ch_0001")
        assert created["reversals"] == {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": "/v1/transfers/tr_0001/reversals",
        }
        reversed_ = self.of_type(bodies, "transfer.reversed")
        (reversal,) = reversed_["reversals"]["data"]
        assert reversal["object"] == "transfer_reversal"
        assert reversal["transfer"] == "tr_0001"
        assert reversed_["amount_reversed"] == reversal["amount"]

    def test_refund_and_charge(self, bodies: list[dict[str, Any]]) -> None:
        refund = self.of_type(bodies, "refund.created")
        assert refund["object"] == "refund"
        assert (refund["payment_intent"], refund["charge"], refund["status"]) == (
            "pi_0001",
            "ch_0001",
            "succeeded",
        )
        assert refund["metadata"]["bountyescrow_operation_id"] == "op_r1"
        assert "failure_reason" in refund
        charge = self.of_type(bodies, "charge.refunded")
        assert charge["object"] == "charge"
        assert charge["payment_intent"] == "pi_0001"
        assert charge["refunds"]["data"][0]["id"] == "re_0001"

    def test_dispute(self, bodies: list[dict[str, Any]]) -> None:
        dispute = self.of_type(bodies, "charge.dispute.funds_withdrawn")
        assert dispute["object"] == "dispute"
        assert (dispute["payment_intent"], dispute["charge"], dispute["status"]) == (
            "pi_0002",
            "ch_0002",
            "needs_response",
        )
        (txn,) = dispute["balance_transactions"]
        assert txn["object"] == "balance_transaction"
        assert dispute["is_charge_refundable"] is False

    def test_account_and_capability(self, bodies: list[dict[str, Any]]) -> None:
        account = self.of_type(bodies, "account.updated")
        assert account["object"] == "account"
        assert account["capabilities"] == {"transfers": "active"}
        capability = self.of_type(bodies, "capability.updated")
        assert (capability["object"], capability["id"], capability["account"]) == (
            "capability",
            "transfers",
            "acct_0001",
        )
        application = self.of_type(bodies, "account.application.deauthorized")
        assert application["object"] == "application"

    def test_fraud_warning_and_payout(self, bodies: list[dict[str, Any]]) -> None:
        warning = self.of_type(bodies, "radar.early_fraud_warning.created")
        assert (warning["object"], warning["charge"]) == ("radar.early_fraud_warning", "ch_0001")
        payout = self.of_type(bodies, "payout.paid")
        assert (payout["object"], payout["status"]) == ("payout", "paid")

    def test_stripe_sdk_builds_objects_from_the_bodies(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            event = stripe.Event.construct_from(body, "sk_test_x")
            assert event.data.object.id == body["data"]["object"]["id"]
