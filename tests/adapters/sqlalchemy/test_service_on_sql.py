"""`EscrowService` end to end on the SQL store, with the fake gateway."""

from __future__ import annotations

import threading

import pytest

from bountyescrow import Actor, EscrowService, EscrowStatus, Money, OperationStatus, errors
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.testing import FakeGateway, ManualClock
from tests.keys import new_key

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"


def usd(amount: int) -> Money:
    return Money(amount, "usd")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def service(store: SqlAlchemyStore, fake: FakeGateway, clock: ManualClock) -> EscrowService:
    return EscrowService(store, fake, fee_bps=1000, namespace="sql", clock=clock)


def funded_escrow(service: EscrowService, fake: FakeGateway, amount: int = 25_000) -> str:
    esc = service.open_escrow(
        bounty_id="b1",
        poster_id=POSTER.id,
        amount=usd(amount),
        actor=POSTER,
        idempotency_key="bounty:b1",
    )
    assert esc.client_secret
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service, duplicate=True, shuffle=True)
    return esc.id


def ready_payee(service: EscrowService, fake: FakeGateway) -> None:
    payee = service.register_payee(HUNTER, email="h@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)


def test_fund_release_and_refund(service: EscrowService, fake: FakeGateway) -> None:
    escrow_id = funded_escrow(service, fake)
    assert service.get(escrow_id).status is EscrowStatus.FUNDED
    assert service.get(escrow_id).client_secret is None
    ready_payee(service, fake)
    op = service.release(
        escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="r1"
    )
    assert op.status is OperationStatus.SUCCEEDED
    again = service.release(
        escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="r1"
    )
    assert again.id == op.id
    service.refund(escrow_id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
    fake.deliver(service, duplicate=True, shuffle=True)
    esc = service.get(escrow_id)
    assert esc.released == usd(10_000)
    assert esc.held == usd(10_000)
    assert service.check_invariants() == []
    assert len(service.ledger(escrow_id)) >= 3
    assert service.audit_trail(escrow_id)
    events = service.events(after=0)
    assert [e.seq for e in events] == sorted(e.seq for e in events if e.seq is not None)


def test_concurrent_commands_never_move_more_than_is_held(
    service: EscrowService, fake: FakeGateway
) -> None:
    escrow_id = funded_escrow(service, fake)
    ready_payee(service, fake)
    outcomes: list[str] = []
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        for i in range(4):
            try:
                if (n + i) % 2:
                    service.release(
                        escrow_id,
                        payee_id=HUNTER,
                        amount=usd(1_500),
                        actor=POSTER,
                        idempotency_key=new_key(),
                    )
                else:
                    service.refund(
                        escrow_id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key()
                    )
                outcomes.append("ok")
            except errors.InsufficientFundsError:
                outcomes.append("insufficient")
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    esc = service.get(escrow_id)
    moved = sum(m.amount.amount for m in fake.movements) + esc.fees.amount
    assert moved == esc.funded.amount - esc.held.amount
    assert "insufficient" in outcomes
    assert service.check_invariants() == []
