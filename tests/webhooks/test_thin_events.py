"""Thin events, as Stripe's event destinations send them: a signed notification naming the
object that changed, with no snapshot of it. The dispatcher verifies it like any webhook, the
service fetches the account it names, and what Stripe says is applied through the same event
intake as the snapshot events."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from bountyescrow import EscrowService, OperationStatus
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher, followed, replay_event
from bountyescrow.webhooks._thin import ACCOUNT_TYPES, DEAUTHORIZED
from tests.keys import new_key

from .support import (
    HUNTER,
    JSON,
    POSTER,
    SECRET,
    RecordingFake,
    deliver,
    funded,
    nothing_written,
    post,
    ready_payee,
    signed,
    status_of,
    usd,
)

#: The thin types whose account is their ``context`` (v1 Connect events with no account object).
CONTEXT_TYPES = {"v1.capability.updated"}


def thin(
    event_type: str,
    account: str | None,
    *,
    event_id: str = "evt_test_65RThinEvent0001",
    livemode: bool = False,
    context: str | None = None,
    related: dict[str, str] | None = None,
) -> JSON:
    """A thin event as an event destination posts it (the SDK's ``EventNotification``).

    `account` becomes the related object of account events (a v2 account for ``v2.*`` types),
    and the `context` of v1 Connect events.
    """
    body: JSON = {
        "id": event_id,
        "object": "v2.core.event",
        "type": event_type,
        "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "livemode": livemode,
        "reason": {"type": "request", "request": {"id": "req_v2abc", "idempotency_key": "k-1"}},
    }
    if event_type.startswith("v1.") and context is None:
        context = account
    if context is not None:
        body["context"] = context
    if related is None and account is not None and event_type not in CONTEXT_TYPES:
        if event_type.startswith("v2."):
            related = {
                "id": account,
                "type": "v2.core.account",
                "url": f"/v2/core/accounts/{account}",
            }
        elif event_type != DEAUTHORIZED:
            related = {"id": account, "type": "account", "url": f"/v1/accounts/{account}"}
    if event_type == "v1.capability.updated" and account is not None:
        related = {
            "id": "transfers",
            "type": "capability",
            "url": f"/v1/accounts/{account}/capabilities/transfers",
        }
    if related is not None:
        body["related_object"] = related
    return body


def onboarded_payee(service: EscrowService, fake: FakeGateway) -> str:
    """Register the hunter and let them finish onboarding at Stripe; the snapshot events the
    fake queues are dropped (this deployment receives thin events). Returns the account."""
    payee = service.register_payee(HUNTER, email="h@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.drop_events()
    return payee.account_ref


RECIPIENT_CAPABILITY = "v2.core.account[configuration.recipient].capability_status_updated"


class TestShape:
    @pytest.mark.parametrize("event_type", [*ACCOUNT_TYPES, DEAUTHORIZED])
    def test_the_bodies_are_what_the_sdk_parses_as_event_notifications(
        self, fake: FakeGateway, event_type: str
    ) -> None:
        """The bodies these tests post are the ones ``parse_event_notification`` accepts."""
        body, headers = signed(fake, thin(event_type, "acct_1"))
        client = stripe.StripeClient("sk_test_123")
        notification = client.parse_event_notification(body, headers["Stripe-Signature"], SECRET)
        assert notification.type == event_type
        assert type(notification).__name__ != "UnknownEventNotification"

    @pytest.mark.parametrize("event_type", [*ACCOUNT_TYPES, DEAUTHORIZED])
    def test_followed_names_the_thin_types(self, event_type: str) -> None:
        assert followed(event_type)

    @pytest.mark.parametrize(
        "event_type",
        ["v2.core.account_person.created", "v1.payment_intent.succeeded", "v2.core.account"],
    )
    def test_other_thin_types_are_not_followed(self, event_type: str) -> None:
        assert not followed(event_type)


class TestApplied:
    def test_a_thin_event_makes_the_payee_ready_and_sends_its_waiting_release(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        fake.complete_onboarding(payee.account_ref)
        fake.drop_events()
        event = thin(RECIPIENT_CAPABILITY, payee.account_ref)
        response = post(dispatcher, fake, event)
        assert response.status == 200
        assert response.json() == {"status": "processed", "event": event["id"]}
        assert service.get_payee(HUNTER).ready
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert fake.fetched == [payee.account_ref]
        assert status_of(service, event["id"]) is WebhookStatus.PROCESSED
        deliver(fake, dispatcher)  # the transfer's own events still apply as usual

    @pytest.mark.parametrize("event_type", list(ACCOUNT_TYPES))
    def test_every_followed_account_type_applies_the_fetched_account(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        event_type: str,
    ) -> None:
        account = onboarded_payee(service, fake)
        response = post(dispatcher, fake, thin(event_type, account))
        assert response.json()["status"] == "processed"
        assert service.get_payee(HUNTER).ready
        assert fake.fetched == [account]

    def test_readiness_is_what_stripe_says_not_what_the_event_suggests(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        """A capability event about an account still onboarding leaves the payee not ready."""
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        fake.drop_events()
        response = post(dispatcher, fake, thin(RECIPIENT_CAPABILITY, payee.account_ref))
        assert response.status == 200
        assert not service.get_payee(HUNTER).ready
        assert fake.fetched == [payee.account_ref]

    def test_a_restricted_account_makes_the_payee_not_ready(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        payee = ready_payee(service, fake, dispatcher)
        fake.restrict(payee.account_ref)
        fake.drop_events()
        post(dispatcher, fake, thin("v2.core.account[requirements].updated", payee.account_ref))
        assert not service.get_payee(HUNTER).ready

    def test_deauthorization_makes_the_payee_not_ready_without_a_fetch(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        payee = ready_payee(service, fake, dispatcher)
        fake.fetched.clear()
        response = post(dispatcher, fake, thin(DEAUTHORIZED, payee.account_ref))
        assert response.json()["status"] == "processed"
        assert not service.get_payee(HUNTER).ready
        assert fake.fetched == []

    def test_a_duplicate_is_applied_once(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        fake.complete_onboarding(payee.account_ref)
        fake.drop_events()
        event = thin("v2.core.account.updated", payee.account_ref)
        assert post(dispatcher, fake, event).json()["status"] == "processed"
        ledger = service.ledger(esc.id)
        domain_events = service.events(limit=1000)
        again = post(dispatcher, fake, event)
        assert again.status == 200
        assert again.json()["event"] == event["id"]
        assert fake.fetched == [payee.account_ref]  # the duplicate fetches nothing
        assert service.ledger(esc.id) == ledger
        assert service.events(limit=1000) == domain_events
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        record = service.webhook_event(event["id"])
        assert record is not None
        assert record.attempts == 1

    def test_thin_and_snapshot_events_about_the_same_account_agree(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        """A platform migrating to event destinations may receive both for a while."""
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        fake.complete_onboarding(payee.account_ref)
        deliver(fake, dispatcher)
        post(dispatcher, fake, thin("v1.account.updated", payee.account_ref))
        assert service.get_payee(HUNTER).ready


class TestRefused:
    """Requests that are not verified thin events of our mode: 400, nothing written."""

    def test_a_tampered_body_is_refused(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        account = onboarded_payee(service, fake)
        body, headers = signed(fake, thin("v2.core.account.updated", "acct_someone"))
        forged = body.replace(b"acct_someone", account.encode())
        with nothing_written(store, service):
            response = dispatcher.handle(body=forged, headers=headers)
        assert (response.status, response.json()) == (400, {"error": "signature_mismatch"})
        assert fake.fetched == []

    def test_a_stale_signature_is_refused(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        account = onboarded_payee(service, fake)
        event = thin("v2.core.account.updated", account)
        with nothing_written(store, service):
            response = post(dispatcher, fake, event, timestamp=int(time.time()) - 301)
        assert (response.status, response.json()) == (400, {"error": "stale_timestamp"})
        assert not service.get_payee(HUNTER).ready

    def test_another_secret_is_refused(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        account = onboarded_payee(service, fake)
        event = thin("v2.core.account.updated", account)
        response = post(dispatcher, fake, event, secret="whsec_someone_else")
        assert (response.status, response.json()) == (400, {"error": "signature_mismatch"})

    @pytest.mark.parametrize(
        ("label", "change"),
        [
            ("no related object", lambda e: e.pop("related_object")),
            ("related object not an account", lambda e: e["related_object"].update(id="pm_1")),
            ("created not a time", lambda e: e.update(created="yesterday")),
            ("created without a time zone", lambda e: e.update(created="2026-01-02T03:04:05")),
            ("created as a number", lambda e: e.update(created=1767225600)),
            ("livemode as a string", lambda e: e.update(livemode="false")),
            ("event id with a colon", lambda e: e.update(id="evt_1:re_1")),
        ],
    )
    def test_a_malformed_thin_event_is_refused(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        label: str,
        change: Any,
    ) -> None:
        account = onboarded_payee(service, fake)
        event = thin("v2.core.account.updated", account)
        change(event)
        with nothing_written(store, service):
            response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (400, {"error": "malformed_event"}), label
        assert fake.fetched == []

    def test_another_mode_without_an_account_is_refused(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        event = thin("v1.billing.meter.error_report_triggered", None, livemode=True)
        response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (400, {"error": "wrong_mode"})


class TestIgnored:
    """Verified thin events that are not for the library: 200 ``ignored``, nothing written."""

    def ignored(
        self,
        dispatcher: WebhookDispatcher,
        fake: RecordingFake,
        store: InMemoryStore,
        service: EscrowService,
        event: JSON,
    ) -> None:
        with nothing_written(store, service):
            response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (
            200,
            {"status": "ignored", "event": event["id"]},
        )
        assert fake.fetched == []
        assert service.webhook_event(event["id"]) is None

    @pytest.mark.parametrize(
        "event",
        [
            thin(
                "v1.billing.meter.error_report_triggered",
                None,
                related={"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_1"},
            ),
            thin(
                "v2.core.account_person.created",
                None,
                related={
                    "id": "person_1",
                    "type": "v2.core.account_person",
                    "url": "/v2/core/accounts/acct_1/persons/person_1",
                },
            ),
            thin("v2.money_management.payout_method.created", None),
        ],
        ids=["v1 billing meter", "v2 account person", "no related object"],
    )
    def test_types_not_followed(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        event: JSON,
    ) -> None:
        onboarded_payee(service, fake)
        self.ignored(dispatcher, fake, store, service, event)

    def test_a_foreign_account(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        """An account the platform has but no payee of this deployment owns: not fetched."""
        onboarded_payee(service, fake)
        other = fake.create_account(
            payee_id="someone-else", email=None, country="US", idempotency_key="other"
        )
        fake.complete_onboarding(other.ref)
        fake.drop_events()
        self.ignored(dispatcher, fake, store, service, thin(RECIPIENT_CAPABILITY, other.ref))

    def test_another_mode_about_a_connected_account(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        account = onboarded_payee(service, fake)
        self.ignored(
            dispatcher, fake, store, service, thin(RECIPIENT_CAPABILITY, account, livemode=True)
        )
        assert not service.get_payee(HUNTER).ready

    def test_a_v1_account_event_of_the_platform_itself(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        """``v1.account.updated`` without a context is the platform's own account."""
        account = onboarded_payee(service, fake)
        event = thin("v1.account.updated", account)
        del event["context"]
        self.ignored(dispatcher, fake, store, service, event)

    def test_money_events_sent_thin_are_ignored_with_one_warning_per_type(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The library funds escrows from snapshot events only: a thin one is a setup error."""
        related = {"id": "pi_1", "type": "payment_intent", "url": "/v1/payment_intents/pi_1"}
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        for n in range(2):
            event = thin(
                "v1.payment_intent.succeeded", None, event_id=f"evt_thin_pi_{n}", related=related
            )
            self.ignored(dispatcher, fake, store, service, event)
        warnings = [r for r in caplog.records if "v1.payment_intent.succeeded" in r.getMessage()]
        assert len(warnings) == 1
        assert "snapshot" in warnings[0].getMessage()


class TestFailureAndReplay:
    def test_an_account_stripe_refuses_to_show_fails_and_is_replayed(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        account = onboarded_payee(service, fake)
        fake.refused.add(account)
        event = thin("v2.core.account.updated", account)
        response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (500, {"error": "internal_error"})
        record = service.webhook_event(event["id"])
        assert record is not None
        assert record.status is WebhookStatus.FAILED
        assert record.payload is not None
        assert json.loads(record.payload)["id"] == event["id"]
        fake.refused.clear()
        replayed = replay_event(service, event["id"])
        assert replayed.json() == {"status": "processed", "event": event["id"]}
        assert service.get_payee(HUNTER).ready


class TestVerifiedByTheHost:
    """``handle_event`` with the ``EventNotification`` that ``parse_event_notification``
    returns: the same resolution and fetch as a thin event through ``handle``."""

    def test_a_parsed_notification_is_applied(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        account = onboarded_payee(service, fake)
        body, headers = signed(fake, thin(RECIPIENT_CAPABILITY, account))
        client = stripe.StripeClient("sk_test_123")
        notification = client.parse_event_notification(body, headers["Stripe-Signature"], SECRET)
        response = dispatcher.handle_event(notification)
        assert response.json() == {"status": "processed", "event": notification.id}
        assert service.get_payee(HUNTER).ready
        assert fake.fetched == [account]
        assert dispatcher.handle_event(notification).status == 200
        assert fake.fetched == [account]

    def test_a_parsed_v1_notification_names_its_account_by_context(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        account = onboarded_payee(service, fake)
        body, headers = signed(fake, thin("v1.capability.updated", account))
        client = stripe.StripeClient("sk_test_123")
        notification = client.parse_event_notification(body, headers["Stripe-Signature"], SECRET)
        assert dispatcher.handle_event(notification).json()["status"] == "processed"
        assert service.get_payee(HUNTER).ready

    def test_a_parsed_notification_of_an_unfollowed_type_is_ignored(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        event = thin("v2.core.account_link.returned", None)
        body, headers = signed(fake, event)
        client = stripe.StripeClient("sk_test_123")
        notification = client.parse_event_notification(body, headers["Stripe-Signature"], SECRET)
        with nothing_written(store, service):
            response = dispatcher.handle_event(notification)
        assert response.json() == {"status": "ignored", "event": event["id"]}


class TestAccountsV2:
    def test_a_v2_payee_becomes_ready_by_its_recipient_capability_event(
        self, clock: ManualClock
    ) -> None:
        """Payees made with Accounts v2: readiness is read from the recipient configuration
        of the account the gateway fetches, and the waiting release goes out."""
        fake = RecordingFake(webhook_secret=SECRET, clock=clock, accounts="v2")
        service = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="test", clock=clock)
        dispatcher = WebhookDispatcher(service, secrets=[SECRET])
        esc = funded(service, fake, dispatcher)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        op = service.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        fake.complete_onboarding(payee.account_ref)
        fake.drop_events()
        account = fake.account_v2_json(payee.account_ref)
        capability = account["configuration"]["recipient"]["capabilities"]["stripe_balance"]
        assert capability["stripe_transfers"]["status"] == "active"
        response = post(dispatcher, fake, thin(RECIPIENT_CAPABILITY, payee.account_ref))
        assert response.json()["status"] == "processed"
        assert service.get_payee(HUNTER).ready
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert fake.fetched == [payee.account_ref]
        assert service.check_invariants() == []
