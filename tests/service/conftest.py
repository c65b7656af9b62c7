"""Fixtures for the service tests: a service over the fake gateway and in-memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bountyescrow import Actor, Escrow, EscrowService, Money
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def service(store: InMemoryStore, fake: FakeGateway, clock: ManualClock) -> Iterator[EscrowService]:
    svc = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)
    yield svc
    assert svc.check_invariants() == []


def open_escrow(service: EscrowService, amount: int = 25_000, bounty: str = "b1") -> Escrow:
    return service.open_escrow(
        bounty_id=bounty, poster_id=POSTER.id, amount=Money(amount, "usd"), actor=POSTER
    )


def funded(
    service: EscrowService, fake: FakeGateway, amount: int = 25_000, bounty: str = "b1"
) -> Escrow:
    esc = open_escrow(service, amount, bounty)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return service.get(esc.id)


def ready_payee(service: EscrowService, fake: FakeGateway, payee_id: str = HUNTER) -> str:
    payee = service.register_payee(payee_id, email=f"{payee_id}@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)
    return payee_id


def usd(amount: int) -> Money:
    return Money(amount, "usd")
