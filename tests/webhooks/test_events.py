"""Every event type the dispatcher follows, end to end: the fake's signed request in, the
service's state out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bountyescrow import (
    Escrow,
    EscrowService,
    EscrowStatus,
    Operation,
    OperationKind,
    OperationStatus,
)
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.testing import FakeGateway, InMemoryStore
from bountyescrow.webhooks import WebhookDispatcher
from tests.keys import new_key

from .support import (
    ADMIN,
    HUNTER,
    JSON,
    POSTER,
    deliver,
    funded,
    nothing_written,
    open_escrow,
    payload_of,
    post,
    ready_payee,
    status_of,
    take_payloads,
    usd,
    variant,
)


def types_of(fake: FakeGateway) -> list[str]:
    return [p["type"] for p in fake.pending_payloads]


def intent_of(escrow: Escrow) -> str:
    """The escrow's PaymentIntent ref (every opened escrow has one)."""
    assert escrow.payment_ref is not None
    return escrow.payment_ref


def ignored_and_nothing_written(
    dispatcher: WebhookDispatcher,
    fake: FakeGateway,
    store: InMemoryStore,
    service: EscrowService,
    payload: JSON,
) -> None:
    """The event is acknowledged as ignored, and neither the store nor the service changes."""
    with nothing_written(store, service):
        response = post(dispatcher, fake, payload)
        assert response.json() == {"status": "ignored", "event": payload["id"]}


def onboarding_payload(service: EscrowService, fake: FakeGateway, event_type: str) -> JSON:
    """The `event_type` event queued when the hunter, just registered, finishes onboarding."""
    payee = service.register_payee(HUNTER, email="h@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    return payload_of(fake, event_type)


def paid_out(
    service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
) -> tuple[Escrow, Operation]:
    """A funded escrow that released 10,000 to the ready hunter, its events delivered."""
    esc = funded(service, fake, dispatcher)
    ready_payee(service, fake, dispatcher)
    op = release(service, esc)
    deliver(fake, dispatcher)
    return esc, op


def release(service: EscrowService, escrow: Escrow) -> Operation:
    """The poster releases 10,000 to the hunter, with a fresh idempotency key."""
    return service.release(
        escrow.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
    )


class TestPaymentIntent:
    def test_succeeded_funds_the_escrow(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        assert types_of(fake) == ["payment_intent.succeeded"]
        [response] = deliver(fake, dispatcher)
        assert response.json() == {"status": "processed", "event": "evt_0001"}
        after = service.get(esc.id)
        assert after.status is EscrowStatus.FUNDED
        assert after.held == usd(25_000)
        assert after.charge_ref == "ch_0001"
        assert status_of(service, "evt_0001") is WebhookStatus.PROCESSED

    @pytest.mark.parametrize(
        ("act", "event_type", "state"),
        [
            pytest.param(
                FakeGateway.process,
                "payment_intent.processing",
                {"status": EscrowStatus.AWAITING_FUNDING, "payment_status": "processing"},
                id="processing_is_recorded_while_awaiting_funding",
            ),
            pytest.param(
                lambda fake, ref: fake.decline(ref, "Your card was declined."),
                "payment_intent.payment_failed",
                {
                    "status": EscrowStatus.AWAITING_FUNDING,
                    "last_payment_error": "Your card was declined.",
                },
                id="payment_failed_records_the_error",
            ),
            pytest.param(
                FakeGateway.cancel_outside,
                "payment_intent.canceled",
                {"status": EscrowStatus.CANCELLED},
                id="canceled_in_the_dashboard_cancels_the_unfunded_escrow",
            ),
        ],
    )
    def test_an_intent_that_is_not_paid(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        act: Callable[[FakeGateway, str], object],
        event_type: str,
        state: dict[str, object],
    ) -> None:
        """Each event is applied to the unfunded escrow; only ``succeeded`` funds it."""
        esc = open_escrow(service)
        act(fake, intent_of(esc))
        assert types_of(fake) == [event_type]
        deliver(fake, dispatcher)
        after = service.get(esc.id)
        assert {name: getattr(after, name) for name in state} == state

    def test_other_payment_intent_events_are_applied_by_state(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        """``payment_intent.*`` is followed whole; a paid intent's later events change nothing."""
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        succeeded = payload_of(fake, "payment_intent.succeeded")
        assert post(dispatcher, fake, succeeded).status == 200
        ledger = service.ledger(esc.id)
        other = variant(succeeded, event_id="evt_9001", event_type="payment_intent.requires_action")
        response = post(dispatcher, fake, other)
        assert response.json() == {"status": "ignored", "event": "evt_9001"}
        assert service.ledger(esc.id) == ledger

    def test_an_intent_without_our_metadata_is_ignored(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        payload = payload_of(fake, "payment_intent.succeeded")
        payload["data"]["object"]["metadata"] = {}
        response = post(dispatcher, fake, payload)
        assert response.status == 200
        assert response.json()["status"] == "ignored"
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING
        assert status_of(service, payload["id"]) is WebhookStatus.IGNORED


class TestRefunds:
    @pytest.mark.parametrize(
        ("succeeded", "event_type", "status", "refunded", "held"),
        [
            pytest.param(
                True,
                "refund.updated",
                OperationStatus.SUCCEEDED,
                5_000,
                20_000,
                id="refund_updated_completes_it",
            ),
            pytest.param(
                False,
                "refund.failed",
                OperationStatus.FAILED,
                0,
                25_000,
                id="refund_failed_gives_the_money_back",
            ),
        ],
    )
    def test_a_pending_refund_is_settled_by_its_refund_event(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        succeeded: bool,
        event_type: str,
        status: OperationStatus,
        refunded: int,
        held: int,
    ) -> None:
        esc = funded(service, fake, dispatcher)
        fake.hold_refunds(True)
        op = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        assert op.status is OperationStatus.PENDING
        assert types_of(fake) == ["refund.created", "charge.refunded"]
        deliver(fake, dispatcher)
        assert service.get_operation(op.id).status is OperationStatus.PENDING
        assert op.gateway_ref is not None
        fake.settle_refund(op.gateway_ref, succeeded=succeeded)
        assert types_of(fake) == [event_type, "charge.refund.updated"]
        deliver(fake, dispatcher)
        assert service.get_operation(op.id).status is status
        after = service.get(esc.id)
        assert after.refunded == usd(refunded)
        assert after.held == after.available == usd(held)

    def test_charge_refunded_adopts_a_dashboard_refund_once(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        refund_ref = fake.refund_outside(intent_of(esc), amount=usd(3_000))
        payloads = take_payloads(fake)
        assert [p["type"] for p in payloads] == [
            "charge.refunded",
            "refund.created",
            "charge.refund.updated",
        ]
        charge_refunded = payloads[0]
        response = post(dispatcher, fake, charge_refunded)
        assert response.json() == {"status": "processed", "event": charge_refunded["id"]}
        sub_id = f"{charge_refunded['id']}:{refund_ref}"
        assert status_of(service, sub_id) is WebhookStatus.PROCESSED
        assert status_of(service, charge_refunded["id"]) is None
        for payload in [*payloads, charge_refunded]:
            assert post(dispatcher, fake, payload).status == 200
        external = [
            op for op in service.operations(esc.id) if op.kind is OperationKind.EXTERNAL_REFUND
        ]
        assert [(op.gateway_ref, op.gross) for op in external] == [(refund_ref, usd(3_000))]
        assert service.get(esc.id).refunded == usd(3_000)

    def test_charge_refunded_applies_every_refund_it_lists(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        """The second refund's event lists both refunds; each is logged under its own id."""
        esc = funded(service, fake, dispatcher)
        first = fake.refund_outside(intent_of(esc), amount=usd(1_000))
        fake.drop_events()
        second = fake.refund_outside(intent_of(esc), amount=usd(2_000))
        event = payload_of(fake, "charge.refunded")
        listed = [r["id"] for r in event["data"]["object"]["refunds"]["data"]]
        assert listed == [first, second]
        assert post(dispatcher, fake, event).json()["status"] == "processed"
        for refund in (first, second):
            assert status_of(service, f"{event['id']}:{refund}") is WebhookStatus.PROCESSED
        ledger = service.ledger(esc.id)
        again = post(dispatcher, fake, event)
        assert again.json()["status"] == "processed"  # what the log says it did the first time
        assert service.ledger(esc.id) == ledger
        assert service.get(esc.id).refunded == usd(3_000)

    def test_charge_refunded_without_a_refund_list_is_acknowledged(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        """Current API versions leave ``refunds`` out of the charge; refund.* events carry them."""
        esc = funded(service, fake, dispatcher)
        fake.refund_outside(intent_of(esc), amount=usd(1_000))
        event = payload_of(fake, "charge.refunded")
        del event["data"]["object"]["refunds"]
        ignored_and_nothing_written(dispatcher, fake, store, service, event)


class TestDisputes:
    def test_a_dispute_freezes_takes_and_gives_back(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        dispute_ref = fake.open_dispute(intent_of(esc))
        assert types_of(fake) == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
        deliver(fake, dispatcher)
        during = service.get(esc.id)
        assert during.status is EscrowStatus.DISPUTED
        assert during.dispute_withdrawn == usd(25_000)
        fake.close_dispute(intent_of(esc), won=True)
        assert types_of(fake) == ["charge.dispute.funds_reinstated", "charge.dispute.closed"]
        deliver(fake, dispatcher)
        after = service.get(esc.id)
        assert after.status is EscrowStatus.FUNDED
        assert after.held == usd(25_000)
        assert [(d.id, d.status) for d in service.disputes(esc.id)] == [(dispute_ref, "won")]

    def test_dispute_updated_is_applied(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        fake.open_dispute(intent_of(esc), inquiry=True)
        created = payload_of(fake, "charge.dispute.created")
        updated = variant(created, event_id="evt_9002", event_type="charge.dispute.updated")
        response = post(dispatcher, fake, updated)
        assert response.json() == {"status": "processed", "event": "evt_9002"}
        assert service.get(esc.id).frozen
        assert post(dispatcher, fake, created).json()["status"] == "ignored"

    def test_an_early_fraud_warning_freezes_the_escrow(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        fake.early_fraud_warning(intent_of(esc))
        assert types_of(fake) == ["radar.early_fraud_warning.created"]
        deliver(fake, dispatcher)
        after = service.get(esc.id)
        assert after.fraud_warning
        assert after.frozen


class TestTransfers:
    def test_transfer_created_completes_a_release_whose_answer_was_lost(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        ready_payee(service, fake, dispatcher)
        fake.fail_next("transfer", error="timeout_after_effect")
        op = release(service, esc)
        assert op.status is OperationStatus.PENDING
        assert types_of(fake) == ["transfer.created"]
        deliver(fake, dispatcher)
        done = service.get_operation(op.id)
        assert done.status is OperationStatus.SUCCEEDED
        assert done.gateway_ref == "tr_0001"
        assert service.get(esc.id).released == usd(10_000)
        assert len(fake.movements) == 1

    def test_transfer_reversed_adopts_a_dashboard_reversal(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc, op = paid_out(service, fake, dispatcher)
        assert op.gateway_ref is not None
        fake.reverse_outside(op.gateway_ref, amount=usd(4_000))
        assert types_of(fake) == ["transfer.reversed"]
        deliver(fake, dispatcher)
        kinds = [o.kind for o in service.operations(esc.id)]
        assert OperationKind.EXTERNAL_REVERSAL in kinds

    def test_transfer_reversed_confirms_our_reversal(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc, paid = paid_out(service, fake, dispatcher)
        fake.fail_next("reversal", error="timeout_after_effect")
        reversal = service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key=new_key())
        assert reversal.status is OperationStatus.PENDING
        deliver(fake, dispatcher)
        assert service.get_operation(reversal.id).status is OperationStatus.SUCCEEDED
        assert [o.kind for o in service.operations(esc.id)].count(OperationKind.REVERSAL) == 1

    def test_transfer_updated_is_applied_by_state(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        ready_payee(service, fake, dispatcher)
        release(service, esc)
        created = payload_of(fake, "transfer.created")
        ledger = service.ledger(esc.id)
        updated = variant(created, event_id="evt_9003", event_type="transfer.updated")
        assert post(dispatcher, fake, updated).status == 200
        assert service.ledger(esc.id) == ledger


class TestConnect:
    def test_onboarding_makes_the_payee_ready_by_capability_updated_alone(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        fake.complete_onboarding(payee.account_ref)
        payloads = take_payloads(fake)
        assert [p["type"] for p in payloads] == ["account.updated", "capability.updated"]
        assert all(p["account"] == payee.account_ref for p in payloads)
        response = post(dispatcher, fake, payloads[1])
        assert response.json()["status"] == "processed"
        assert service.get_payee(HUNTER).ready

    def test_account_updated_sends_the_releases_waiting_for_the_payee(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        op = release(service, esc)
        assert op.status is OperationStatus.AWAITING_PAYEE
        fake.complete_onboarding(payee.account_ref)
        account_updated = payload_of(fake, "account.updated")
        assert post(dispatcher, fake, account_updated).status == 200
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        fake.restrict(payee.account_ref)
        deliver(fake, dispatcher)
        assert not service.get_payee(HUNTER).ready

    def test_deauthorization_makes_the_payee_not_ready(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        payee = ready_payee(service, fake, dispatcher)
        assert payee.ready
        fake.deauthorize(payee.account_ref)
        assert types_of(fake) == ["account.application.deauthorized"]
        deliver(fake, dispatcher)
        assert not service.get_payee(HUNTER).ready

    def test_payout_failed_raises_a_domain_event_and_paid_is_ignored(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        paid_out(service, fake, dispatcher)
        payee = service.get_payee(HUNTER)
        failed = fake.payout(payee.account_ref, usd(1_000), failed=True)
        paid = fake.payout(payee.account_ref, usd(1_000))
        assert types_of(fake) == ["payout.failed", "payout.paid"]
        responses = deliver(fake, dispatcher)
        assert [r.json()["status"] for r in responses] == ["processed", "ignored"]
        payout_events = [e for e in service.events(limit=1000) if e.type == "payee.payout_failed"]
        assert [e.data["payout"] for e in payout_events] == [failed]
        assert paid != failed

    def test_events_for_an_unknown_account_are_ignored(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        account = fake.create_account(
            payee_id="someone-else", email=None, country="US", idempotency_key="other"
        )
        fake.complete_onboarding(account.ref)
        responses = deliver(fake, dispatcher)
        assert [r.json()["status"] for r in responses] == ["ignored", "ignored"]
        assert service.events(limit=1000) == []

    def test_capabilities_other_than_transfers_are_not_followed(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        capability = onboarding_payload(service, fake, "capability.updated")
        capability["data"]["object"]["id"] = "card_payments"
        ignored_and_nothing_written(dispatcher, fake, store, service, capability)
        assert not service.get_payee(HUNTER).ready


class TestScope:
    """What is acknowledged without being applied."""

    def test_types_not_followed_are_acknowledged_and_nothing_is_written(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        event = {
            "id": "evt_customer",
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1_767_225_600,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "customer.created",
        }
        ignored_and_nothing_written(dispatcher, fake, store, service, event)
        assert status_of(service, "evt_customer") is None

    def test_a_platform_object_reported_by_a_connected_account_is_not_applied(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        """A connected account could carry our metadata on its own PaymentIntent: that money
        is not in the platform balance, so the event must not fund anything."""
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        payload = payload_of(fake, "payment_intent.succeeded")
        payload["account"] = "acct_someone"
        ignored_and_nothing_written(dispatcher, fake, store, service, payload)
        assert service.get(esc.id).status is EscrowStatus.AWAITING_FUNDING

    def test_a_connect_object_without_an_account_is_not_applied(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        payload = onboarding_payload(service, fake, "account.updated")
        del payload["account"]
        ignored_and_nothing_written(dispatcher, fake, store, service, payload)


class TestAtLeastOnceInAnyOrder:
    def test_a_whole_story_delivered_twice_and_shuffled_books_money_once(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        seen: list[dict[str, object]] = []

        def chaos(seed: int) -> None:
            seen.extend(fake.pending_payloads)
            deliver(fake, dispatcher, duplicate=True, shuffle=True, seed=seed)

        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        chaos(1)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        fake.complete_onboarding(payee.account_ref)
        chaos(2)
        release(service, esc)
        fake.refund_outside(intent_of(esc), amount=usd(2_000))
        fake.hold_refunds(True)
        refund = service.refund(esc.id, amount=usd(3_000), actor=ADMIN, idempotency_key=new_key())
        chaos(3)
        assert refund.gateway_ref is not None
        fake.settle_refund(refund.gateway_ref)
        chaos(4)

        after = service.get(esc.id)
        assert after.funded == usd(25_000)
        assert after.released == usd(10_000)
        assert after.refunded == usd(5_000)
        assert after.held == usd(10_000)
        assert [(m.kind, m.amount) for m in fake.movements] == [
            ("transfer", usd(9_000)),
            ("refund", usd(2_000)),
            ("refund", usd(3_000)),
        ]
        ledger = service.ledger(esc.id)
        events = service.events(limit=10_000)
        assert seen
        for payload in seen:  # Stripe redelivers everything once more, days later
            assert post(dispatcher, fake, payload).status == 200
        assert service.ledger(esc.id) == ledger
        assert service.events(limit=10_000) == events
