"""Helpers for the webhook tests: escrow stories driven through the dispatcher, signed
requests built by hand, and a store that can pretend a commit has not landed yet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bountyescrow import Actor, Escrow, EscrowService, Money, Payee
from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
)
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import GatewayRejectedError
from bountyescrow.testing import FakeGateway, InMemoryStore
from bountyescrow.webhooks import WebhookDispatcher, WebhookResponse

SECRET = "whsec_test"
POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"

JSON = dict[str, Any]


class RecordingFake(FakeGateway):
    """A `FakeGateway` that lists the objects fetched from it, and refuses those in `refused`
    the way Stripe refuses an object it does not have (``resource_missing``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetched: list[str] = []
        self.refused: set[str] = set()

    def _fetch(self, ref: str) -> None:
        self.fetched.append(ref)
        if ref in self.refused:
            raise GatewayRejectedError(f"No such object: '{ref}'", code="resource_missing")

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        self._fetch(payment_ref)
        return super().get_payment(payment_ref)

    def get_refund(self, refund_ref: str) -> RefundSnapshot:
        self._fetch(refund_ref)
        return super().get_refund(refund_ref)

    def get_dispute(self, dispute_ref: str) -> DisputeSnapshot:
        self._fetch(dispute_ref)
        return super().get_dispute(dispute_ref)

    def get_account(self, account_ref: str) -> AccountSnapshot:
        self._fetch(account_ref)
        return super().get_account(account_ref)


def usd(amount: int) -> Money:
    return Money(amount, "usd")


def deliver(
    fake: FakeGateway, dispatcher: WebhookDispatcher, **options: Any
) -> list[WebhookResponse]:
    """Deliver the fake's queued events as signed requests; every answer must be a 200."""
    responses = fake.deliver(dispatcher, **options)
    assert all(isinstance(r, WebhookResponse) for r in responses)
    bad = [(r.status, r.json()) for r in responses if r.status != 200]
    assert not bad, bad
    return responses


def take_payloads(fake: FakeGateway) -> list[JSON]:
    """The queued events as Stripe JSON, removed from the queue (the test delivers them)."""
    payloads = list(fake.pending_payloads)
    fake.drop_events()
    return payloads


def payload_of(fake: FakeGateway, event_type: str) -> JSON:
    """The one queued event of `event_type` (the queue is drained)."""
    found = [p for p in take_payloads(fake) if p["type"] == event_type]
    assert len(found) == 1, [p["type"] for p in fake.pending_payloads]
    return found[0]


def signed(fake: FakeGateway, payload: JSON, **options: Any) -> tuple[bytes, dict[str, str]]:
    """A request for `payload` as Stripe posts it (options: secret=, timestamp=)."""
    return fake.webhook_request(payload, **options)


def post(
    dispatcher: WebhookDispatcher, fake: FakeGateway, payload: JSON, **options: Any
) -> WebhookResponse:
    body, headers = signed(fake, payload, **options)
    return dispatcher.handle(body=body, headers=headers)


def variant(payload: JSON, *, event_id: str, event_type: str | None = None, **changes: Any) -> JSON:
    """A copy of an event with another id (and type, envelope fields), as Stripe would send
    for another event about the same object."""
    copy: JSON = json.loads(json.dumps(payload))
    copy["id"] = event_id
    if event_type is not None:
        copy["type"] = event_type
    copy.update(changes)
    return copy


def open_escrow(service: EscrowService, amount: int = 25_000, bounty: str = "b1") -> Escrow:
    return service.open_escrow(
        bounty_id=bounty, poster_id=POSTER.id, amount=usd(amount), actor=POSTER
    )


def funded(
    service: EscrowService,
    fake: FakeGateway,
    dispatcher: WebhookDispatcher,
    amount: int = 25_000,
    bounty: str = "b1",
) -> Escrow:
    esc = open_escrow(service, amount, bounty)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    deliver(fake, dispatcher)
    return service.get(esc.id)


def ready_payee(
    service: EscrowService,
    fake: FakeGateway,
    dispatcher: WebhookDispatcher,
    payee_id: str = HUNTER,
) -> Payee:
    payee = service.register_payee(payee_id, email=f"{payee_id}@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    deliver(fake, dispatcher)
    return service.get_payee(payee_id)


@contextmanager
def nothing_written(store: InMemoryStore | HidingStore, service: EscrowService) -> Iterator[None]:
    """Assert the block commits no unit of work and adds no domain event.

    (Reads through the service commit a unit of work too, so none may run inside the block.)
    """
    events = service.events(limit=100_000)
    commits = store.commits
    yield
    assert store.commits == commits, "a unit of work was committed"
    assert service.events(limit=100_000) == events


def status_of(service: EscrowService, event_id: str) -> WebhookStatus | None:
    record = service.webhook_event(event_id)
    return None if record is None else record.status


class HidingStore:
    """An `InMemoryStore` that can pretend an escrow's commit has not landed yet.

    While an escrow id is in `hidden`, every unit of work reads it as absent: what a webhook
    handler sees when the event overtakes the transaction that creates the escrow.
    """

    def __init__(self) -> None:
        self.inner = InMemoryStore()
        self.hidden: set[str] = set()

    @property
    def commits(self) -> int:
        return self.inner.commits

    def unit_of_work(self) -> _HidingUnitOfWork:
        return _HidingUnitOfWork(self.inner.unit_of_work(), self.hidden)

    @contextmanager
    def hiding(self, escrow_id: str) -> Iterator[None]:
        self.hidden.add(escrow_id)
        try:
            yield
        finally:
            self.hidden.discard(escrow_id)


class _HidingEscrows:
    def __init__(self, inner: Any, hidden: set[str]) -> None:
        self._inner = inner
        self._hidden = hidden

    def get(self, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
        if escrow_id in self._hidden:
            return None
        found: Escrow | None = self._inner.get(escrow_id, for_update=for_update)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _HidingUnitOfWork:
    def __init__(self, inner: Any, hidden: set[str]) -> None:
        self._inner = inner
        self._hidden = hidden

    def __enter__(self) -> _HidingUnitOfWork:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._inner.__exit__(*exc_info)

    @property
    def escrows(self) -> _HidingEscrows:
        return _HidingEscrows(self._inner.escrows, self._hidden)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
