"""Events that are not about this deployment's money: objects of another project or of
another deployment on the same Stripe account, Connect accounts the platform never made, and
Connect events of the other mode. They are acknowledged with 200 ``ignored``, nothing is
fetched for them and nothing is written; an object that *is* ours but that Stripe refuses to
show is an alert, and its event is retried."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from bountyescrow import EscrowService, EscrowStatus, GatewayEvent
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
    AccountSnapshot,
    PaymentSnapshot,
)
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import WebhookPayloadError
from bountyescrow.testing import InMemoryStore, ManualClock
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from bountyescrow.webhooks import WebhookDispatcher
from bountyescrow.webhooks._events import EXACT_TYPES, PREFIX_TYPES
from tests.keys import new_key

from . import stripe_objects as so
from .support import (
    ADMIN,
    HUNTER,
    JSON,
    POSTER,
    SECRET,
    RecordingFake,
    deliver,
    funded,
    nothing_written,
    open_escrow,
    payload_of,
    post,
    ready_payee,
    status_of,
    usd,
)

Builder = Callable[[], JSON]

#: One event of every type the dispatcher follows, about an object that is not ours, and the
#: connected account Connect events name.
FOREIGN: dict[str, tuple[Builder, str | None]] = {
    "payment_intent.succeeded": (so.payment_intent, None),
    "payment_intent.processing": (
        lambda: so.payment_intent(status="processing", amount_received=0, latest_charge=None),
        None,
    ),
    "payment_intent.payment_failed": (
        lambda: so.payment_intent(
            status="requires_payment_method",
            amount_received=0,
            last_payment_error={"type": "card_error", "message": "Your card was declined."},
        ),
        None,
    ),
    "payment_intent.canceled": (
        lambda: so.payment_intent(status="canceled", amount_received=0, latest_charge=None),
        None,
    ),
    "payment_intent.created": (
        lambda: so.payment_intent(
            status="requires_payment_method", amount_received=0, latest_charge=None
        ),
        None,
    ),
    "charge.refunded": (so.charge, None),
    "charge.refund.updated": (so.refund, None),
    "refund.created": (lambda: so.refund(status="pending"), None),
    "refund.updated": (so.refund, None),
    "refund.failed": (lambda: so.refund(status="failed", failure_reason="expired"), None),
    "charge.dispute.created": (so.dispute, None),
    "charge.dispute.updated": (lambda: so.dispute(status="under_review"), None),
    "charge.dispute.funds_withdrawn": (so.dispute, None),
    "charge.dispute.funds_reinstated": (lambda: so.dispute(status="won"), None),
    "charge.dispute.closed": (lambda: so.dispute(status="lost"), None),
    "radar.early_fraud_warning.created": (so.early_fraud_warning, None),
    "transfer.created": (so.transfer, None),
    "transfer.updated": (lambda: so.transfer(description="Payout for a gig"), None),
    "transfer.reversed": (lambda: so.transfer(reversed_=True), None),
    "account.updated": (so.account, so.FOREIGN_ACCOUNT),
    "capability.updated": (so.capability, so.FOREIGN_ACCOUNT),
    "account.application.deauthorized": (so.application, so.FOREIGN_ACCOUNT),
    "payout.paid": (so.payout, so.FOREIGN_ACCOUNT),
    "payout.failed": (
        lambda: so.payout(status="failed", failure_code="account_closed"),
        so.FOREIGN_ACCOUNT,
    ),
}

#: Metadata another deployment (``EscrowService(namespace="other-app")``) puts on its objects.
THEIRS = {
    META_ESCROW: "esc_theirs",
    META_OPERATION: "op_theirs",
    "bounty_id": "their-bounty",
    META_NAMESPACE: "other-app",
}

#: Objects of that deployment, one per kind that carries metadata.
THEIRS_BY_TYPE: dict[str, Builder] = {
    "payment_intent.succeeded": lambda: so.payment_intent(metadata=THEIRS),
    "refund.updated": lambda: so.refund(metadata=THEIRS),
    "transfer.created": lambda: so.transfer(metadata=THEIRS),
    "transfer.reversed": lambda: so.transfer(reversed_=True, metadata=THEIRS),
}


def make_busy(
    service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
) -> EscrowService:
    esc = funded(service, fake, dispatcher)
    ready_payee(service, fake, dispatcher)
    service.release(
        esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
    )
    service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
    deliver(fake, dispatcher)
    fake.fetched.clear()
    return service


@pytest.fixture
def busy(
    service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
) -> EscrowService:
    """A service with money of its own: a funded escrow, a ready payee, a release and a
    refund, so every look-up has something to find (none of it the foreign object)."""
    return make_busy(service, fake, dispatcher)


def created(clock: ManualClock) -> int:
    return int(clock.now().timestamp())


class TestObjectsThatAreNotOurs:
    def test_every_followed_type_has_a_case(self) -> None:
        """A type added to the dispatcher without a foreign case here fails this test."""
        assert set(EXACT_TYPES) <= set(FOREIGN)
        for prefix, _ in PREFIX_TYPES:
            assert any(t.startswith(prefix) for t in FOREIGN), prefix

    @pytest.mark.parametrize("event_type", sorted(FOREIGN))
    def test_is_acknowledged_and_nothing_is_fetched_or_written(
        self,
        event_type: str,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        clock: ManualClock,
    ) -> None:
        build, account = FOREIGN[event_type]
        event = so.event(event_type, build(), account=account, created=created(clock))
        with nothing_written(store, busy):
            response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (
            200,
            {"status": "ignored", "event": event["id"]},
        )
        assert fake.fetched == []
        assert status_of(busy, event["id"]) is None
        assert busy.failed_events() == []

    def test_an_express_account_of_another_platform_is_never_fetched(
        self,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        """Stripe would answer ``resource_missing``; asked anyway, the endpoint answered 500
        and Stripe redelivered for days."""
        fake.refused.add(so.FOREIGN_ACCOUNT)
        event = so.event(
            "account.updated", so.account(), account=so.FOREIGN_ACCOUNT, created=created(clock)
        )
        for _ in range(3):  # redeliveries change nothing either
            assert post(dispatcher, fake, event).json()["status"] == "ignored"
        assert fake.fetched == []

    def test_a_refund_of_our_charge_made_in_the_dashboard_is_still_ours(
        self,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
    ) -> None:
        """No metadata, but the PaymentIntent is ours: fetched and adopted."""
        [esc] = busy.find(bounty_id="b1")
        assert esc.payment_ref is not None
        refund_ref = fake.refund_outside(esc.payment_ref, amount=usd(500))
        event = payload_of(fake, "refund.created")
        assert event["data"]["object"]["metadata"] == {}
        assert post(dispatcher, fake, event).json()["status"] == "processed"
        assert fake.fetched == [refund_ref]
        assert busy.get(esc.id).refunded == usd(1_500)

    def test_a_foreign_event_given_to_the_service_directly_is_ignored_too(
        self, busy: EscrowService, fake: RecordingFake, store: InMemoryStore
    ) -> None:
        event = GatewayEvent(
            id="evt_direct",
            type="account.updated",
            object=AccountSnapshot(ref=so.FOREIGN_ACCOUNT, ready=True),
            account=so.FOREIGN_ACCOUNT,
        )
        with nothing_written(store, busy):
            assert busy.apply_event(event) is WebhookStatus.IGNORED
        assert fake.fetched == []


@pytest.mark.postgres
class TestOnPostgres:
    @pytest.fixture
    def pg_service(self, fake: RecordingFake, clock: ManualClock) -> Iterator[EscrowService]:
        url = postgres_url_or_skip()
        with fresh_schema(url) as schema, SqlAlchemyStore(url, schema=schema) as store:
            store.migrate()
            svc = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)
            yield svc
            assert svc.check_invariants() == []

    def test_no_foreign_event_is_fetched_or_logged(
        self, pg_service: EscrowService, fake: RecordingFake, clock: ManualClock
    ) -> None:
        dispatcher = WebhookDispatcher(pg_service, secrets=[SECRET])
        make_busy(pg_service, fake, dispatcher)
        for number, (event_type, (build, account)) in enumerate(sorted(FOREIGN.items())):
            event_id = f"evt_1Pgc76B7WZ01zgkW{number:08d}"
            event = so.event(
                event_type, build(), account=account, created=created(clock), event_id=event_id
            )
            response = post(dispatcher, fake, event)
            assert response.json() == {"status": "ignored", "event": event_id}, event_type
            assert pg_service.webhook_event(event_id) is None, event_type
        assert fake.fetched == []
        assert pg_service.failed_events() == []


class TestAnotherNamespace:
    """Deployments sharing one Stripe account get each other's events."""

    @pytest.mark.parametrize("event_type", sorted(THEIRS_BY_TYPE))
    def test_is_acknowledged_and_never_lands_in_failed_events(
        self,
        event_type: str,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Its escrow id is unknown here, which once read as "not committed yet": 500 for ten
        minutes, then an entry in ``bountyescrow webhooks failed``."""
        caplog.set_level(logging.INFO, logger="bountyescrow")
        event = so.event(event_type, THEIRS_BY_TYPE[event_type](), created=created(clock))
        with nothing_written(store, busy):
            first = post(dispatcher, fake, event)
            clock.advance(timedelta(minutes=11))
            later = post(dispatcher, fake, event)
        for response in (first, later):
            assert response.json() == {"status": "ignored", "event": event["id"]}
        assert busy.failed_events() == []
        assert status_of(busy, event["id"]) is None
        assert fake.fetched == []
        ignored = [r for r in caplog.records if getattr(r, "ignored", None) == "other_namespace"]
        assert ignored
        assert {r.levelno for r in ignored} == {logging.INFO}
        assert "other-app" in ignored[0].getMessage()

    def test_our_own_namespace_is_applied(
        self, service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher
    ) -> None:
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        event = payload_of(fake, "payment_intent.succeeded")
        event["data"]["object"]["metadata"][META_NAMESPACE] = "test"
        assert post(dispatcher, fake, event).json()["status"] == "processed"
        assert service.get(esc.id).status is EscrowStatus.FUNDED

    @pytest.mark.parametrize("namespace", ["test", None], ids=["our namespace", "no namespace"])
    def test_an_unknown_escrow_of_ours_is_awaited(
        self,
        namespace: str | None,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        """Our namespace, or none (objects made before namespaces were written): the escrow's
        commit may still be under way, so Stripe is asked to deliver again."""
        metadata = {k: v for k, v in THEIRS.items() if k != META_NAMESPACE}
        if namespace is not None:
            metadata[META_NAMESPACE] = namespace
        intent = so.payment_intent(metadata=metadata)
        event = so.event("payment_intent.succeeded", intent, created=created(clock))
        response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (500, {"error": "event_not_ready"})
        assert status_of(service, event["id"]) is WebhookStatus.FAILED

    def test_the_service_ignores_another_namespace_given_directly(
        self, service: EscrowService, fake: RecordingFake, store: InMemoryStore
    ) -> None:
        snapshot = PaymentSnapshot(
            ref=so.FOREIGN_PAYMENT,
            status="succeeded",
            amount=usd(1_099),
            amount_received=usd(1_099),
            metadata=THEIRS,
        )
        event = GatewayEvent(id="evt_direct", type="payment_intent.succeeded", object=snapshot)
        with nothing_written(store, service):
            assert service.apply_event(event) is WebhookStatus.IGNORED
        assert fake.fetched == []


class TestOurObjectRefused:
    """An object of ours that Stripe will not show: an alert, and the event is retried."""

    @staticmethod
    def alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
        return [r.__dict__["alert"] for r in caplog.records if "alert" in r.__dict__]

    def test_a_dispute_on_our_charge(
        self,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        [esc] = busy.find(bounty_id="b1")
        dispute = so.dispute(payment_intent=esc.payment_ref, charge=esc.charge_ref)
        event = so.event("charge.dispute.created", dispute, created=created(clock))
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        for _ in range(2):  # every redelivery is tried, and alerts again
            response = post(dispatcher, fake, event)
            assert (response.status, response.json()) == (500, {"error": "internal_error"})
        assert self.alerts(caplog) == ["gateway_object_unavailable"] * 2
        assert fake.fetched == [dispute["id"]] * 2
        [failed] = busy.failed_events()
        assert (failed.id, failed.status, failed.attempts) == (
            event["id"],
            WebhookStatus.FAILED,
            2,
        )
        assert failed.payload is not None

    def test_our_refund(
        self,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        [esc] = busy.find(bounty_id="b1")
        fake.hold_refunds(True)
        op = busy.refund(esc.id, amount=usd(2_000), actor=ADMIN, idempotency_key=new_key())
        assert op.gateway_ref is not None
        event = payload_of(fake, "refund.created")
        fake.refused.add(op.gateway_ref)
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        assert post(dispatcher, fake, event).status == 500
        assert self.alerts(caplog) == ["gateway_object_unavailable"]
        assert status_of(busy, event["id"]) is WebhookStatus.FAILED
        fake.refused.clear()
        assert dispatcher.replay(event["id"]).status == 200

    def test_our_payee_s_account(
        self,
        busy: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        payee = busy.get_payee(HUNTER)
        fake.restrict(payee.account_ref)
        event = payload_of(fake, "account.updated")
        fake.refused.add(payee.account_ref)
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        assert post(dispatcher, fake, event).status == 500
        assert self.alerts(caplog) == ["gateway_object_unavailable"]
        assert status_of(busy, event["id"]) is WebhookStatus.FAILED
        assert busy.get_payee(HUNTER).ready  # nothing applied from the unconfirmed event


class TestOtherModeConnectEvents:
    """Stripe sends the test-mode events of connected accounts to live Connect endpoints too."""

    @pytest.fixture
    def live(self, service: EscrowService) -> WebhookDispatcher:
        return WebhookDispatcher(service, secrets=[SECRET], livemode=True)

    @pytest.mark.parametrize("event_type", ["account.updated", "capability.updated"])
    def test_of_our_payee_are_acknowledged_and_nothing_happens(
        self,
        event_type: str,
        service: EscrowService,
        fake: RecordingFake,
        live: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        fake.complete_onboarding(payee.account_ref)
        event = payload_of(fake, event_type)
        assert event["account"] == payee.account_ref
        with nothing_written(store, service):
            response = post(live, fake, event)
        assert (response.status, response.json()) == (
            200,
            {"status": "ignored", "event": event["id"]},
        )
        assert fake.fetched == []

    def test_a_platform_event_of_the_other_mode_is_still_refused(
        self, service: EscrowService, fake: RecordingFake, live: WebhookDispatcher
    ) -> None:
        """No ``account``: a secret or endpoint configured for the wrong mode."""
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        response = post(live, fake, payload_of(fake, "payment_intent.succeeded"))
        assert (response.status, response.json()) == (400, {"error": "wrong_mode"})

    def test_the_service_given_one_directly_ignores_it(
        self, service: EscrowService, fake: RecordingFake, store: InMemoryStore
    ) -> None:
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        connect = GatewayEvent(
            id="evt_live_connect",
            type="account.updated",
            object=AccountSnapshot(ref=payee.account_ref, ready=True),
            livemode=True,
            account=payee.account_ref,
        )
        with nothing_written(store, service):
            assert service.apply_event(connect) is WebhookStatus.IGNORED
        platform = GatewayEvent(
            id="evt_live_platform",
            type="account.updated",
            object=AccountSnapshot(ref=payee.account_ref, ready=True),
            livemode=True,
        )
        with pytest.raises(WebhookPayloadError):
            service.apply_event(platform)
        assert not service.get_payee(HUNTER).ready
