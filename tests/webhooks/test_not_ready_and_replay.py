"""An event that overtakes its escrow's commit answers 500 until the commit lands; a failed
event is replayed from its stored payload (by the dispatcher, `replay_event` or the CLI)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bountyescrow import EscrowService, EscrowStatus
from bountyescrow.cli import main
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import EventNotReadyError
from bountyescrow.testing import FakeGateway, ManualClock
from bountyescrow.webhooks import WebhookDispatcher, replay_event

from .support import (
    JSON,
    SECRET,
    HidingStore,
    funded,
    open_escrow,
    payload_of,
    post,
    status_of,
    usd,
)


@pytest.fixture
def hiding() -> HidingStore:
    return HidingStore()


@pytest.fixture
def late(hiding: HidingStore, fake: FakeGateway, clock: ManualClock) -> Iterator[EscrowService]:
    """A service whose store can pretend an escrow is not committed yet."""
    svc = EscrowService(hiding, fake, fee_bps=1000, namespace="test", clock=clock)  # type: ignore[arg-type]
    yield svc
    assert svc.check_invariants() == []


@pytest.fixture
def late_dispatcher(late: EscrowService) -> WebhookDispatcher:
    return WebhookDispatcher(late, secrets=[SECRET])


def paid_event(service: EscrowService, fake: FakeGateway) -> tuple[str, JSON, str]:
    """(escrow id, its undelivered payment_intent.succeeded event, its client secret)."""
    esc = open_escrow(service)
    assert esc.payment_ref is not None
    assert esc.client_secret is not None
    fake.pay(esc.payment_ref)
    return esc.id, payload_of(fake, "payment_intent.succeeded"), esc.client_secret


@pytest.fixture
def failed_event(
    late: EscrowService,
    hiding: HidingStore,
    fake: FakeGateway,
    late_dispatcher: WebhookDispatcher,
) -> tuple[str, JSON]:
    """(escrow id, its payment_intent.succeeded event), delivered before the escrow's commit
    was visible: the event answered 500 and is logged as failed with its payload."""
    escrow_id, event, _ = paid_event(late, fake)
    with hiding.hiding(escrow_id):
        assert post(late_dispatcher, fake, event).status == 500
    return escrow_id, event


class TestNotCommittedYet:
    def test_answers_500_then_200_once_the_commit_has_landed(
        self,
        late: EscrowService,
        hiding: HidingStore,
        fake: FakeGateway,
        late_dispatcher: WebhookDispatcher,
    ) -> None:
        escrow_id, event, _ = paid_event(late, fake)
        with hiding.hiding(escrow_id):
            first = post(late_dispatcher, fake, event)
        assert (first.status, first.json()) == (500, {"error": "event_not_ready"})
        assert status_of(late, event["id"]) is WebhookStatus.FAILED
        assert late.get(escrow_id).status is EscrowStatus.AWAITING_FUNDING
        redelivery = post(late_dispatcher, fake, event)
        assert redelivery.json() == {"status": "processed", "event": event["id"]}
        assert late.get(escrow_id).status is EscrowStatus.FUNDED
        record = late.webhook_event(event["id"])
        assert record is not None
        assert record.attempts == 2
        assert record.payload is None  # kept only while the event is failed

    def test_after_the_window_the_event_is_ignored(
        self,
        late: EscrowService,
        hiding: HidingStore,
        fake: FakeGateway,
        clock: ManualClock,
        late_dispatcher: WebhookDispatcher,
    ) -> None:
        escrow_id, event, _ = paid_event(late, fake)
        clock.advance(timedelta(minutes=11))
        with hiding.hiding(escrow_id):
            response = post(late_dispatcher, fake, event)
        assert response.json() == {"status": "ignored", "event": event["id"]}
        assert late.get(escrow_id).status is EscrowStatus.AWAITING_FUNDING

    def test_the_stored_payload_keeps_no_client_secret(
        self,
        late: EscrowService,
        hiding: HidingStore,
        fake: FakeGateway,
        late_dispatcher: WebhookDispatcher,
    ) -> None:
        """The secret is handed out once, when the escrow opens; it is never stored."""
        escrow_id, event, client_secret = paid_event(late, fake)
        assert event["data"]["object"]["client_secret"] == client_secret
        with hiding.hiding(escrow_id):
            assert post(late_dispatcher, fake, event).status == 500
        record = late.webhook_event(event["id"])
        assert record is not None
        assert record.payload is not None
        assert client_secret not in record.payload
        stored = json.loads(record.payload)
        assert stored["data"]["object"]["client_secret"] is None
        assert stored["data"]["object"]["metadata"] == event["data"]["object"]["metadata"]


class TestReplay:
    def test_a_failed_event_is_applied_from_its_stored_payload(
        self,
        late: EscrowService,
        hiding: HidingStore,
        late_dispatcher: WebhookDispatcher,
        failed_event: tuple[str, JSON],
    ) -> None:
        escrow_id, event = failed_event
        with hiding.hiding(escrow_id):
            still = late_dispatcher.replay(event["id"])
            assert (still.status, still.json()) == (500, {"error": "event_not_ready"})
        replayed = late_dispatcher.replay(event["id"])
        assert replayed.json() == {"status": "processed", "event": event["id"]}
        assert late.get(escrow_id).funded == usd(25_000)
        ledger = late.ledger(escrow_id)
        again = late_dispatcher.replay(event["id"])
        assert again.json() == {"status": "processed", "event": event["id"]}
        assert late.ledger(escrow_id) == ledger

    def test_one_refund_of_a_charge_refunded_event_is_replayed_by_its_log_id(
        self,
        late: EscrowService,
        hiding: HidingStore,
        fake: FakeGateway,
        late_dispatcher: WebhookDispatcher,
    ) -> None:
        esc = funded(late, fake, late_dispatcher)
        assert esc.payment_ref is not None
        refund_ref = fake.refund_outside(esc.payment_ref, amount=usd(4_000))
        event = payload_of(fake, "charge.refunded")
        log_id = f"{event['id']}:{refund_ref}"
        with hiding.hiding(esc.id):
            assert post(late_dispatcher, fake, event).status == 500
        assert status_of(late, log_id) is WebhookStatus.FAILED
        assert late_dispatcher.replay(event["id"]).status == 404  # logged per refund
        replayed = late_dispatcher.replay(log_id)
        assert replayed.json() == {"status": "processed", "event": event["id"]}
        assert late.get(esc.id).refunded == usd(4_000)
        assert status_of(late, log_id) is WebhookStatus.PROCESSED

    def test_an_unknown_event_is_a_404(
        self, service: EscrowService, dispatcher: WebhookDispatcher
    ) -> None:
        response = dispatcher.replay("evt_nowhere")
        assert (response.status, response.json()) == (404, {"error": "unknown_event"})

    def test_an_event_that_did_not_fail_is_not_applied_again(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
    ) -> None:
        escrow_id, event, _ = paid_event(service, fake)
        assert post(dispatcher, fake, event).status == 200
        ledger = service.ledger(escrow_id)
        response = dispatcher.replay(event["id"])
        assert response.json() == {"status": "processed", "event": event["id"]}
        assert service.ledger(escrow_id) == ledger

    def test_a_failed_event_without_a_payload_is_a_409(
        self,
        late: EscrowService,
        hiding: HidingStore,
        fake: FakeGateway,
        late_dispatcher: WebhookDispatcher,
    ) -> None:
        escrow_id = open_escrow(late).id
        assert fake.pending_events == ()
        fake.pay(late.get(escrow_id).payment_ref or "")
        [gateway_event] = fake.pending_events
        with hiding.hiding(escrow_id), pytest.raises(EventNotReadyError):
            late.apply_event(gateway_event)  # a host applying events itself keeps no payload
        response = late_dispatcher.replay(gateway_event.id)
        assert (response.status, response.json()) == (409, {"error": "payload_missing"})

    def test_replay_event_needs_no_secret(
        self, late: EscrowService, failed_event: tuple[str, JSON]
    ) -> None:
        escrow_id, event = failed_event
        assert replay_event(late, event["id"]).status == 200
        assert late.get(escrow_id).status is EscrowStatus.FUNDED


def _as_factory(service: EscrowService, calls: list[tuple[str, str]] | None = None) -> object:
    def factory(url: str, namespace: str) -> contextlib.nullcontext[EscrowService]:
        if calls is not None:
            calls.append((url, namespace))
        return contextlib.nullcontext(service)

    return factory


class TestCommandLine:
    def test_webhooks_replay_applies_a_failed_event(
        self,
        late: EscrowService,
        failed_event: tuple[str, JSON],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        escrow_id, event = failed_event
        calls: list[tuple[str, str]] = []
        code = main(
            [
                "webhooks",
                "replay",
                event["id"],
                "--url",
                "sqlite:///escrow.db",
                "--namespace",
                "app",
            ],
            service_factory=_as_factory(late, calls),  # type: ignore[arg-type]
        )
        assert code == 0
        assert calls == [("sqlite:///escrow.db", "app")]
        out = capsys.readouterr().out
        assert out == f'{event["id"]}: 200 {{"status":"processed","event":"{event["id"]}"}}\n'
        assert late.get(escrow_id).status is EscrowStatus.FUNDED

    def test_an_unknown_event_exits_1(
        self, service: EscrowService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(
            ["webhooks", "replay", "evt_nowhere", "--url", "sqlite://"],
            service_factory=_as_factory(service),  # type: ignore[arg-type]
        )
        assert code == 1
        assert capsys.readouterr().out == 'evt_nowhere: 404 {"error":"unknown_event"}\n'

    def test_the_namespace_defaults_to_the_environment(
        self, service: EscrowService, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BOUNTYESCROW_NAMESPACE", "from-env")
        calls: list[tuple[str, str]] = []
        main(
            ["webhooks", "replay", "evt_x", "--url", "sqlite://"],
            service_factory=_as_factory(service, calls),  # type: ignore[arg-type]
        )
        assert calls == [("sqlite://", "from-env")]

    def test_without_an_api_key_it_says_what_to_set(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        code = main(["webhooks", "replay", "evt_x", "--url", "sqlite://"])
        assert code == 2
        assert "STRIPE_API_KEY" in capsys.readouterr().err

    def test_the_production_service_reads_the_sql_event_log(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`stripe_service` builds SqlAlchemyStore + StripeGateway; no call reaches Stripe."""
        url = f"sqlite:///{tmp_path}/escrow.sqlite3"
        assert main(["db", "upgrade", "--url", url]) == 0
        capsys.readouterr()
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_" + "x" * 24)
        code = main(["webhooks", "replay", "evt_nowhere", "--url", url])
        assert (code, capsys.readouterr().out) == (
            1,
            'evt_nowhere: 404 {"error":"unknown_event"}\n',
        )

    def test_a_publishable_key_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("STRIPE_API_KEY", "pk_test_" + "x" * 24)
        assert main(["webhooks", "replay", "evt_x", "--url", "sqlite://"]) == 2
        assert "publishable" in capsys.readouterr().err
