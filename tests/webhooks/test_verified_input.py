"""Only verified input moves money: `handle_event` takes only what the SDK's verification
returns, and a payment reported as succeeded by anything but a signature-checked request is
confirmed with the gateway before it funds an escrow."""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator

import pytest
import stripe

from bountyescrow import Escrow, EscrowService, EscrowStatus, GatewayEvent
from bountyescrow.domain.gateway_objects import PaymentSnapshot
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import GatewayRejectedError
from bountyescrow.testing import InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher

from . import stripe_objects as so
from .support import (
    JSON,
    SECRET,
    HidingStore,
    RecordingFake,
    deliver,
    nothing_written,
    open_escrow,
    payload_of,
    post,
    status_of,
    usd,
)


def forged_success(esc: Escrow, fake: RecordingFake, clock: ManualClock) -> JSON:
    """A ``payment_intent.succeeded`` body for the escrow's payment, which nobody paid.

    It carries the PaymentIntent's real id and metadata: everything a forger can learn.
    """
    assert esc.payment_ref is not None
    metadata = dict(fake.get_payment(esc.payment_ref).metadata)
    fake.fetched.clear()
    intent = so.payment_intent(
        id=esc.payment_ref,
        amount=esc.amount.amount,
        amount_received=esc.amount.amount,
        latest_charge="ch_forged",
        metadata=metadata,
    )
    return so.event(
        "payment_intent.succeeded",
        intent,
        created=int(clock.now().timestamp()),
        event_id="evt_forged",
    )


def as_gateway_event(payload: JSON) -> GatewayEvent:
    intent = payload["data"]["object"]
    snapshot = PaymentSnapshot(
        ref=intent["id"],
        status=intent["status"],
        amount=usd(intent["amount"]),
        amount_received=usd(intent["amount_received"]),
        charge_ref=intent["latest_charge"],
        metadata=intent["metadata"],
    )
    return GatewayEvent(
        id=payload["id"], type=payload["type"], object=snapshot, created=payload["created"]
    )


class TestHandleEventTakesOnlyVerifiedEvents:
    def test_a_decoded_dict_is_refused_and_funds_nothing(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        clock: ManualClock,
    ) -> None:
        """What a route with a ``payload: dict`` parameter would pass: anyone can post it."""
        esc = open_escrow(service)
        forged = forged_success(esc, fake, clock)
        with (
            nothing_written(store, service),
            pytest.raises(TypeError, match=r"handle\(body, headers\)") as raised,
        ):
            dispatcher.handle_event(forged)  # type: ignore[arg-type]
        assert "stripe.Webhook.construct_event" in str(raised.value)
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING
        assert fake.fetched == []

    def test_any_other_mapping_is_refused_too(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        clock: ManualClock,
    ) -> None:
        forged = types.MappingProxyType(forged_success(open_escrow(service), fake, clock))
        with nothing_written(store, service), pytest.raises(TypeError, match="not a mappingproxy"):
            dispatcher.handle_event(forged)  # type: ignore[arg-type]

    def test_an_event_the_sdk_verified_is_confirmed_with_the_gateway(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        body, headers = fake.webhook_request(payload_of(fake, "payment_intent.succeeded"))
        event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], SECRET)
        response = dispatcher.handle_event(event)
        assert response.json() == {"status": "processed", "event": event.id}
        assert service.get(esc.id).status is EscrowStatus.FUNDED
        assert fake.fetched == [esc.payment_ref]

    def test_a_stripe_event_built_from_a_forged_body_funds_nothing(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        """A ``stripe.Event`` can be made from any dict; what Stripe says decides."""
        esc = open_escrow(service)
        event = stripe.Event.construct_from(forged_success(esc, fake, clock), "sk_test_unused")
        response = dispatcher.handle_event(event)
        assert response.json() == {"status": "ignored", "event": "evt_forged"}
        after = service.get(esc.id)
        assert after.status is EscrowStatus.AWAITING_FUNDING
        assert after.held == usd(0)
        assert fake.fetched == [esc.payment_ref]

    def test_an_event_that_is_not_json_is_a_malformed_event(
        self, service: EscrowService, dispatcher: WebhookDispatcher, store: InMemoryStore
    ) -> None:
        event = stripe.Event.construct_from({"id": "evt_1", "data": {"object": object()}}, "k")
        with nothing_written(store, service):
            response = dispatcher.handle_event(event)
        assert (response.status, response.json()) == (400, {"error": "malformed_event"})

    def test_a_signed_request_is_applied_from_its_snapshot(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        """The signature is the proof: `handle` asks the gateway nothing about a payment."""
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        deliver(fake, dispatcher)
        assert service.get(esc.id).status is EscrowStatus.FUNDED
        assert fake.fetched == []


class TestApplyEventConfirmsPayments:
    def test_an_unpaid_payment_reported_as_succeeded_funds_nothing(
        self, service: EscrowService, fake: RecordingFake, clock: ManualClock
    ) -> None:
        esc = open_escrow(service)
        status = service.apply_event(as_gateway_event(forged_success(esc, fake, clock)))
        assert status is WebhookStatus.IGNORED
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING
        assert fake.fetched == [esc.payment_ref]
        assert fake.movements == []

    def test_the_gateway_s_state_is_applied_not_the_event_s(
        self, service: EscrowService, fake: RecordingFake, clock: ManualClock
    ) -> None:
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        status = service.apply_event(as_gateway_event(forged_success(esc, fake, clock)))
        assert status is WebhookStatus.PROCESSED
        after = service.get(esc.id)
        assert after.status is EscrowStatus.FUNDED
        assert after.charge_ref == "ch_0001"  # not the event's "ch_forged"

    def test_the_fake_s_deliver_to_the_service_still_funds(
        self, service: EscrowService, fake: RecordingFake
    ) -> None:
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        assert fake.deliver(service) == [WebhookStatus.PROCESSED]
        assert service.get(esc.id).held == usd(25_000)
        assert fake.fetched == [esc.payment_ref]

    def test_a_payment_of_ours_the_gateway_does_not_have_is_an_alert(
        self,
        service: EscrowService,
        fake: RecordingFake,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The metadata names our escrow, so this is not someone else's event: a person must
        look, and the event stays failed (retried), not dropped."""
        esc = open_escrow(service)
        payload = forged_success(esc, fake, clock)
        payload["data"]["object"]["id"] = "pi_3NoSuchIntentAnywhere"
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        with pytest.raises(GatewayRejectedError):
            service.apply_event(as_gateway_event(payload))
        assert [r.__dict__.get("alert") for r in caplog.records] == ["gateway_object_unavailable"]
        assert status_of(service, "evt_forged") is WebhookStatus.FAILED
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING


class TestReplayConfirmsPayments:
    @pytest.fixture
    def hiding(self) -> HidingStore:
        return HidingStore()

    @pytest.fixture
    def late(
        self, hiding: HidingStore, fake: RecordingFake, clock: ManualClock
    ) -> Iterator[EscrowService]:
        svc = EscrowService(hiding, fake, fee_bps=1000, namespace="test", clock=clock)  # type: ignore[arg-type]
        yield svc
        assert svc.check_invariants() == []

    def test_a_stored_payload_is_confirmed_before_it_funds(
        self, late: EscrowService, hiding: HidingStore, fake: RecordingFake
    ) -> None:
        """A stored payload is not verified again: it gets no more trust than `handle_event`."""
        dispatcher = WebhookDispatcher(late, secrets=[SECRET])
        esc = open_escrow(late)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        event = payload_of(fake, "payment_intent.succeeded")
        with hiding.hiding(esc.id):
            assert post(dispatcher, fake, event).status == 500
        assert fake.fetched == []
        assert dispatcher.replay(event["id"]).json()["status"] == "processed"
        assert late.get(esc.id).status is EscrowStatus.FUNDED
        assert fake.fetched == [esc.payment_ref]
