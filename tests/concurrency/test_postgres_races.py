"""Real races on PostgreSQL between the entry points that touch one escrow or one (bounty, poster).

Threads on one database (psycopg releases the GIL while it waits on the server, so their
transactions really interleave) start together at a barrier, many times over:

- ``open_escrow`` x ``open_escrow`` for one (bounty, poster): exactly one escrow opens, the
  other callers get `EscrowExistsError`, and the poster is asked to pay once;
- ``cancel_operation`` x the payee becoming ready (``account.updated`` applied, or `recover()`
  finding a ready payee) on a release waiting for its payee: either it is cancelled and no
  transfer is made, or the transfer is made and the cancel is refused; never both;
- ``release`` x ``refund`` x ``recover()`` x webhooks on one escrow.

Each test ends by settling the world (every event delivered, `recover()` past every lease) and
checking `check_invariants()` and the money oracle, `books_agree`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import Actor, Escrow, EscrowService, Money, OperationStatus, errors
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.testing import FakeGateway, GatewayBooks, ManualClock, books_agree
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from tests.keys import new_key
from tests.service.crashing import Crash, CrashingStore

pytestmark = pytest.mark.postgres

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})


def usd(amount: int) -> Money:
    return Money(amount, "usd")


class World:
    """One service on a fresh PostgreSQL schema, one fake Stripe, one manual clock."""

    def __init__(self, store: SqlAlchemyStore) -> None:
        self.clock = ManualClock()
        self.fake = FakeGateway(clock=self.clock)
        self.store = CrashingStore(store)
        self.service = EscrowService(
            self.store, self.fake, fee_bps=1000, namespace="races", clock=self.clock
        )

    def funded(self, bounty: str, amount: int = 10_000) -> Escrow:
        esc = self.service.open_escrow(
            bounty_id=bounty, poster_id=POSTER.id, amount=usd(amount), actor=POSTER
        )
        assert esc.payment_ref is not None
        self.fake.pay(esc.payment_ref)
        self.fake.deliver(self.service)
        return self.service.get(esc.id)

    def settle(self) -> list[str]:
        """Deliver everything, recover past every lease and backoff; the oracle's problems."""
        for _ in range(6):
            self.fake.deliver(self.service, duplicate=True, shuffle=True)
            self.clock.advance(timedelta(hours=2))
            self.service.recover(limit=1000)
        self.fake.deliver(self.service)
        return self.service.check_invariants() + books_agree(self.service, self.fake)


@pytest.fixture
def world() -> Iterator[World]:
    url = postgres_url_or_skip()
    with fresh_schema(url) as schema, SqlAlchemyStore(url, schema=schema) as store:
        store.migrate()
        yield World(store)


def race(
    *calls: Callable[[], Any], jitter: random.Random | None = None, spread: float = 0.02
) -> list[Any]:
    """Run the calls in threads released together; each result, or the exception it raised.

    With `jitter`, each thread waits up to `spread` seconds after the barrier, so that the
    calls' transactions interleave in every order, not only in the one start-up favours
    (a cancel is one short transaction; making a payee ready fetches the account first).
    """
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    delays = [jitter.uniform(0, spread) if jitter else 0.0 for _ in calls]

    def run(n: int) -> None:
        start.wait()
        time.sleep(delays[n])
        try:
            results[n] = calls[n]()
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing call did not finish"
    return results


def undocumented(results: list[Any]) -> list[Exception]:
    """The exceptions among `results` that are not documented errors (should be none)."""
    return [
        r
        for r in results
        if isinstance(r, Exception) and not isinstance(r, errors.BountyEscrowError)
    ]


class TestOpenOpen:
    ROUNDS = 12
    CALLERS = 6

    def test_one_escrow_per_bounty_and_poster_however_many_open_at_once(self, world: World) -> None:
        for round_ in range(self.ROUNDS):
            bounty = f"bounty-{round_}"

            def open_one(bounty: str = bounty) -> Escrow:
                return world.service.open_escrow(
                    bounty_id=bounty,
                    poster_id=POSTER.id,
                    amount=usd(10_000),
                    actor=POSTER,
                    idempotency_key=new_key(),
                )

            results = race(*[open_one] * self.CALLERS)

            assert undocumented(results) == []
            opened = [r for r in results if isinstance(r, Escrow)]
            refused = [r for r in results if isinstance(r, errors.EscrowExistsError)]
            assert len(opened) == 1, results
            assert len(refused) == self.CALLERS - 1, results
            assert [e.id for e in world.service.find(bounty_id=bounty)] == [opened[0].id]

        # The poster is asked to pay once per bounty: one PaymentIntent each.
        assert len(GatewayBooks.of(world.fake).payment_escrows) == self.ROUNDS
        assert world.settle() == []


class TestCancelWaitingReleaseRacingPayeeReady:
    ROUNDS = 25

    def _waiting_release(self, world: World, n: int) -> tuple[Escrow, str, str]:
        """A funded escrow and a release waiting for a new payee: (escrow, op id, account)."""
        esc = world.funded(f"bounty-{n}")
        payee = world.service.register_payee(f"hunter-{n}", country="US")
        op = world.service.release(
            esc.id, payee_id=payee.id, actor=POSTER, idempotency_key=new_key()
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        return esc, op.id, payee.account_ref

    @staticmethod
    def _cancel(world: World, op_id: str) -> Callable[[], Any]:
        return lambda: world.service.cancel_operation(op_id, actor=POSTER)

    def _check(self, world: World, op_id: str, cancelled: Any) -> str:
        """Never both: a cancelled release moved no money; a sent one refused the cancel."""
        op = world.service.get_operation(op_id)
        moved = [m for m in world.fake.movements if m.operation_id == op_id]
        if isinstance(cancelled, Exception):
            assert isinstance(cancelled, errors.InvalidTransitionError), cancelled
            assert op.status is not OperationStatus.CANCELLED
            return "sent"
        assert cancelled.status is OperationStatus.CANCELLED
        assert op.status is OperationStatus.CANCELLED, op
        assert moved == [], f"cancelled release {op_id} was sent anyway: {moved}"
        return "cancelled"

    def test_against_account_updated(self, world: World) -> None:
        jitter = random.Random(1)
        outcomes: Counter[str] = Counter()
        for n in range(self.ROUNDS):
            _, op_id, account = self._waiting_release(world, n)
            world.fake.complete_onboarding(account)
            events = list(world.fake.pending_events)
            world.fake.drop_events()

            def ready(events: list[Any] = events) -> None:
                for event in events:
                    world.service.apply_event(event)

            cancelled, became_ready = race(
                self._cancel(world, op_id), ready, jitter=jitter, spread=0.06
            )

            assert undocumented([became_ready]) == []
            outcomes[self._check(world, op_id, cancelled)] += 1
        assert world.settle() == []
        print(f"\n{dict(outcomes)}")

    def test_against_recover(self, world: World) -> None:
        """The payee is ready (the process died before sending); recover() races the cancel."""
        jitter = random.Random(2)
        outcomes: Counter[str] = Counter()
        for n in range(self.ROUNDS):
            _, op_id, account = self._waiting_release(world, n)
            world.fake.complete_onboarding(account)
            world.store.arm(after=1)  # die right after readiness commits, before the send
            with pytest.raises(Crash):
                world.fake.deliver(world.service)
            world.store.disarm()
            world.fake.drop_events()
            assert world.service.get_payee(f"hunter-{n}").ready
            assert world.service.get_operation(op_id).status is OperationStatus.AWAITING_PAYEE

            cancelled, recovered = race(
                self._cancel(world, op_id), world.service.recover, jitter=jitter, spread=0.06
            )

            assert undocumented([recovered]) == []
            outcomes[self._check(world, op_id, cancelled)] += 1
        assert world.settle() == []
        print(f"\n{dict(outcomes)}")


class TestReleaseRefundRecoverWebhook:
    ROUNDS = 12

    def test_one_escrow_driven_from_every_entry_point_at_once(self, world: World) -> None:
        payee = world.service.register_payee("hunter-1", country="US")
        world.fake.complete_onboarding(payee.account_ref)
        world.fake.deliver(world.service)
        jitter = random.Random(3)
        outcomes: Counter[str] = Counter()
        for n in range(self.ROUNDS):
            esc = world.funded(f"bounty-{n}", 20_000)
            assert esc.payment_ref is not None
            if n % 3 == 1:
                world.fake.fail_next("transfer", "timeout_after_effect")
            if n % 3 == 2:
                world.fake.fail_next("refund", "timeout_after_effect")
            if n % 4 == 3:
                world.fake.refund_outside(esc.payment_ref, usd(1_000))
            events = list(world.fake.pending_events)
            world.fake.drop_events()

            def webhooks(events: list[Any] = events) -> None:
                for event in events:
                    world.service.apply_event(event)

            def recover() -> object:
                world.clock.advance(timedelta(seconds=90))
                return world.service.recover()

            def release(esc: Escrow = esc, amount: Money | None = None) -> object:
                return world.service.release(
                    esc.id,
                    payee_id="hunter-1",
                    amount=amount,
                    actor=POSTER,
                    idempotency_key=new_key(),
                )

            def refund(esc: Escrow = esc) -> object:
                return world.service.refund(esc.id, actor=ADMIN, idempotency_key=new_key())

            results = race(
                lambda: release(amount=usd(8_000)),
                refund,
                release,
                recover,
                webhooks,
                jitter=jitter,
            )

            assert undocumented(results) == []
            outcomes.update(
                type(r).__name__ if isinstance(r, Exception) else "ok" for r in results[:3]
            )
            assert world.service.check_invariants() == []
            undelivered = bool(world.fake.pending_events)
            assert books_agree(world.service, world.fake, settled=False,
                               undelivered=undelivered) == []  # fmt: skip
        assert world.settle() == []
        assert outcomes["ok"] > 0
        print(f"\n{dict(outcomes)}")
