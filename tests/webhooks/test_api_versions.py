"""API versions: an event rendered in another Stripe API version than the gateway's pinned one
is applied, and logged at WARNING once per version (payload shapes drift between versions)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import respx
import stripe

from bountyescrow import EscrowService
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import ConfigurationError
from bountyescrow.testing import InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher, replay_event

from .support import (
    SECRET,
    HidingStore,
    RecordingFake,
    open_escrow,
    payload_of,
    post,
    status_of,
    variant,
)

#: The version the fake renders its events in.
FAKE_VERSION = "2024-06-20"
PINNED = "2026-03-25.dahlia"
TEST_KEY = "sk_test_51Qbountyescrow0000000000000000"


def version_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "bountyescrow.webhooks" and hasattr(r, "event_api_version")
    ]


def other_event(fake: RecordingFake, number: int, version: str) -> dict[str, Any]:
    """A signed-able event of a type the library does not follow, in API version `version`."""
    return {
        "id": f"evt_other{number:04d}",
        "object": "event",
        "api_version": version,
        "created": 1_700_000_000,
        "data": {"object": {"id": f"cus_{number:04d}", "object": "customer"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.created",
    }


class _Unversioned:
    """A gateway without ``api_version``: everything else is the fake's."""

    def __init__(self, fake: RecordingFake) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Any:
        if name == "api_version":
            raise AttributeError(name)
        return getattr(self._fake, name)


class _Pinned(RecordingFake):
    """A fake that says which API version it pins, as `StripeGateway` does."""

    @property
    def api_version(self) -> str:
        return PINNED


@pytest.fixture
def pinned(service: EscrowService) -> WebhookDispatcher:
    """A dispatcher expecting events in `PINNED`; the fake renders them in `FAKE_VERSION`."""
    return WebhookDispatcher(service, secrets=[SECRET], api_version=PINNED)


class TestWarning:
    def test_an_event_of_another_version_is_applied_and_logged_once(
        self,
        service: EscrowService,
        fake: RecordingFake,
        pinned: WebhookDispatcher,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="bountyescrow.webhooks")
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        event = payload_of(fake, "payment_intent.succeeded")
        assert event["api_version"] == FAKE_VERSION

        first = post(pinned, fake, event)
        again = post(pinned, fake, variant(event, event_id="evt_same_version_again"))

        assert (first.status, first.json()["status"]) == (200, "processed")
        assert again.status == 200
        assert service.get(esc.id).held.amount == 25_000
        [warning] = version_warnings(caplog)
        assert warning.levelno == logging.WARNING
        assert (warning.event_api_version, warning.gateway_api_version) == (  # type: ignore[attr-defined]
            FAKE_VERSION,
            PINNED,
        )
        assert warning.event_id == event["id"]  # type: ignore[attr-defined]
        assert FAKE_VERSION in warning.getMessage()
        assert PINNED in warning.getMessage()

    def test_each_other_version_is_logged_once(
        self, fake: RecordingFake, pinned: WebhookDispatcher, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        versions = ["2024-06-20", "2025-03-31.basil", "2024-06-20", "2025-03-31.basil", PINNED]

        answers = [post(pinned, fake, other_event(fake, n, v)) for n, v in enumerate(versions)]

        assert [a.status for a in answers] == [200] * 5
        assert [r.event_api_version for r in version_warnings(caplog)] == [  # type: ignore[attr-defined]
            "2024-06-20",
            "2025-03-31.basil",
        ]

    def test_an_event_of_the_pinned_version_or_without_one_is_not_logged(
        self, fake: RecordingFake, pinned: WebhookDispatcher, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        unversioned = other_event(fake, 2, PINNED)
        del unversioned["api_version"]

        answers = [
            post(pinned, fake, other_event(fake, 1, PINNED)),
            post(pinned, fake, unversioned),
            post(pinned, fake, {**other_event(fake, 3, PINNED), "api_version": None}),
        ]

        assert [a.status for a in answers] == [200] * 3
        assert version_warnings(caplog) == []

    def test_threads_posting_one_version_log_it_once(
        self, fake: RecordingFake, pinned: WebhookDispatcher, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The ASGI mount runs the dispatcher in worker threads."""
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        requests = [fake.webhook_request(other_event(fake, n, FAKE_VERSION)) for n in range(16)]
        start = threading.Barrier(len(requests))
        statuses: list[int] = []

        def send(body: bytes, headers: dict[str, str]) -> None:
            start.wait()
            statuses.append(pinned.handle(body=body, headers=headers).status)

        threads = [threading.Thread(target=send, args=request) for request in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert statuses == [200] * len(requests)
        assert len(version_warnings(caplog)) == 1

    def test_a_replayed_event_of_another_version_is_logged(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """`replay_event` (the command line's replay) has no dispatcher: it checks against the
        gateway's version."""
        store = HidingStore()
        fake = _Pinned(webhook_secret=SECRET, clock=clock)
        service = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)  # type: ignore[arg-type]
        dispatcher = WebhookDispatcher(service, secrets=[SECRET])
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        event = payload_of(fake, "payment_intent.succeeded")
        with store.hiding(esc.id):
            assert post(dispatcher, fake, event).status == 500
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        caplog.clear()

        answer = replay_event(service, event["id"])

        assert (answer.status, status_of(service, event["id"])) == (200, WebhookStatus.PROCESSED)
        assert [r.event_api_version for r in version_warnings(caplog)] == [FAKE_VERSION]  # type: ignore[attr-defined]


class TestWhereTheVersionComesFrom:
    def test_the_gateways_api_version_is_the_default(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        fake = _Pinned(webhook_secret=SECRET, clock=clock)
        service = EscrowService(InMemoryStore(), fake, namespace="test", clock=clock)
        dispatcher = WebhookDispatcher(service, secrets=[SECRET])

        assert dispatcher.api_version == PINNED
        assert post(dispatcher, fake, other_event(fake, 1, FAKE_VERSION)).status == 200
        assert len(version_warnings(caplog)) == 1

    def test_an_explicit_api_version_wins_over_the_gateways(self, clock: ManualClock) -> None:
        fake = _Pinned(webhook_secret=SECRET, clock=clock)
        service = EscrowService(InMemoryStore(), fake, namespace="test", clock=clock)

        dispatcher = WebhookDispatcher(service, secrets=[SECRET], api_version=FAKE_VERSION)

        assert dispatcher.api_version == FAKE_VERSION

    def test_a_gateway_without_one_checks_nothing(
        self, fake: RecordingFake, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        service = EscrowService(InMemoryStore(), _Unversioned(fake), namespace="test", clock=clock)  # type: ignore[arg-type]
        dispatcher = WebhookDispatcher(service, secrets=[SECRET])

        assert dispatcher.api_version is None
        assert post(dispatcher, fake, other_event(fake, 1, "2019-02-19")).status == 200
        assert version_warnings(caplog) == []

    @pytest.mark.parametrize("bad", ["", 20240620])
    def test_an_empty_or_non_string_version_is_refused(
        self, service: EscrowService, bad: object
    ) -> None:
        with pytest.raises(ConfigurationError, match="api_version"):
            WebhookDispatcher(service, secrets=[SECRET], api_version=bad)  # type: ignore[arg-type]


class TestStripeGateway:
    """`StripeGateway.api_version` is its client's pinned version, not the SDK global."""

    def test_events_are_checked_against_the_clients_pinned_version(
        self, fake: RecordingFake, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        client = stripe.StripeClient(TEST_KEY, stripe_version=FAKE_VERSION)
        # Nothing below may reach Stripe: the events are of types the library does not follow.
        with respx.mock(assert_all_mocked=True), StripeGateway(client) as gateway:
            service = EscrowService(InMemoryStore(), gateway, namespace="test")
            dispatcher = WebhookDispatcher(service, secrets=[SECRET])

            answers = [
                post(dispatcher, fake, other_event(fake, 1, FAKE_VERSION)),
                post(dispatcher, fake, other_event(fake, 2, stripe.api_version)),
            ]

        assert gateway.api_version == FAKE_VERSION != stripe.api_version
        assert dispatcher.api_version == FAKE_VERSION
        assert [a.status for a in answers] == [200, 200]
        assert [r.event_api_version for r in version_warnings(caplog)] == [stripe.api_version]  # type: ignore[attr-defined]

    def test_by_default_the_gateway_pins_the_sdks_version(
        self, fake: RecordingFake, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bountyescrow.webhooks")
        with respx.mock(assert_all_mocked=True), StripeGateway(api_key=TEST_KEY) as gateway:
            service = EscrowService(InMemoryStore(), gateway, namespace="test")
            dispatcher = WebhookDispatcher(service, secrets=[SECRET])
            answer = post(dispatcher, fake, other_event(fake, 1, FAKE_VERSION))

        assert dispatcher.api_version == gateway.api_version == stripe.api_version
        assert answer.status == 200
        assert [r.event_api_version for r in version_warnings(caplog)] == [FAKE_VERSION]  # type: ignore[attr-defined]
