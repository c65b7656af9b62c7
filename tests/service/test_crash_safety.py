"""Crash injection at every commit of every money-moving call, then restart and retry.

For each call, a crash-free run counts the commits the call makes. Then, for every commit
and for "just before" and "just after" it, a fresh world runs the call and dies there. The
'restarted' host retries the call with the same idempotency key (after the lease ran out),
webhooks are delivered and `recover()` runs. The end state must equal the crash-free run's,
with exactly one movement at the gateway per operation.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

from bountyescrow import EscrowService, Money, errors
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock

from .conftest import ADMIN, HUNTER, POSTER
from .crashing import Crash, CrashingStore


@attrs.define
class World:
    clock: ManualClock
    fake: FakeGateway
    store: CrashingStore
    service: EscrowService
    ctx: dict[str, Any] = attrs.Factory(dict)


def usd(n: int) -> Money:
    return Money(n, "usd")


def new_world() -> World:
    clock = ManualClock()
    fake = FakeGateway(webhook_secret="whsec_test", clock=clock)
    store = CrashingStore(InMemoryStore())
    service = EscrowService(store, fake, fee_bps=1000, namespace="crash", clock=clock)
    return World(clock, fake, store, service)


def _open(w: World) -> None:
    w.ctx["escrow"] = w.service.open_escrow(
        bounty_id="b1",
        poster_id=POSTER.id,
        amount=usd(25_000),
        actor=POSTER,
        idempotency_key="open",
    ).id


def _funded(w: World) -> None:
    _open(w)
    esc = w.service.get(w.ctx["escrow"])
    assert esc.payment_ref is not None
    w.fake.pay(esc.payment_ref)
    w.fake.deliver(w.service)
    payee = w.service.register_payee(HUNTER, country="US")
    w.fake.complete_onboarding(payee.account_ref)
    w.fake.deliver(w.service)


def _released(w: World) -> None:
    _funded(w)
    w.ctx["release"] = w.service.release(
        w.ctx["escrow"],
        payee_id=HUNTER,
        amount=usd(10_000),
        actor=POSTER,
        idempotency_key="setup-release",
    ).id


Setup = Callable[[World], None]
Action = Callable[[World], object]

SCENARIOS: dict[str, tuple[Setup, Action]] = {
    "open_escrow": (lambda w: None, _open),
    "release": (
        _funded,
        lambda w: w.service.release(
            w.ctx["escrow"],
            payee_id=HUNTER,
            amount=usd(10_000),
            actor=POSTER,
            idempotency_key="act",
        ),
    ),
    "refund": (
        _funded,
        lambda w: w.service.refund(
            w.ctx["escrow"], amount=usd(7_000), actor=ADMIN, idempotency_key="act"
        ),
    ),
    "reverse": (
        _released,
        lambda w: w.service.reverse(
            w.ctx["escrow"], w.ctx["release"], actor=ADMIN, idempotency_key="act"
        ),
    ),
    "cancel": (
        _open,
        lambda w: w.service.cancel(w.ctx["escrow"], actor=POSTER, idempotency_key="act"),
    ),
    "refund_reversing_releases": (
        _released,
        lambda w: w.service.refund(
            w.ctx["escrow"], actor=ADMIN, reverse_releases=True, idempotency_key="act"
        ),
    ),
}


def summary(w: World) -> dict[str, Any]:
    escrows = w.service.find(bounty_id="b1")
    return {
        "escrows": [
            (
                e.status.value,
                e.funded.amount,
                e.held.amount,
                e.reserved.amount,
                e.released.amount,
                e.refunded.amount,
                e.fees.amount,
            )
            for e in escrows
        ],
        "movements": sorted((m.kind, m.amount.amount) for m in w.fake.movements),
        "operations": sorted(
            (o.kind.value, o.status.value, o.gross.amount)
            for e in escrows
            for o in w.service.operations(e.id)
        ),
    }


def settle(w: World, action: Action) -> None:
    """What a restarted host does: wait out the lease, retry with the same key, recover."""
    w.store.disarm()
    w.clock.advance(timedelta(minutes=2))
    try:
        action(w)
    except errors.IdempotencyInProgressError:  # pragma: no cover - the lease has run out
        raise
    for _ in range(2):
        w.fake.deliver(w.service)
        w.clock.advance(timedelta(minutes=20))
        w.service.recover()
    w.fake.deliver(w.service)


def run(name: str, *, before: int | None = None, after: int | None = None) -> World:
    setup, action = SCENARIOS[name]
    w = new_world()
    setup(w)
    w.fake.deliver(w.service)
    w.store.arm(before=before, after=after)
    # The injected crash must really happen, or the case is a crash-free run in disguise.
    with pytest.raises(Crash) if before or after else contextlib.nullcontext():
        action(w)
    settle(w, action)
    return w


def commits_of(name: str) -> int:
    setup, action = SCENARIOS[name]
    w = new_world()
    setup(w)
    w.fake.deliver(w.service)
    w.store.arm()
    action(w)
    return w.store.commits


CASES = [
    (name, when, k)
    for name in SCENARIOS
    for k in range(1, commits_of(name) + 1)
    for when in ("before", "after")
]


@pytest.mark.parametrize(("name", "when", "k"), CASES, ids=[f"{n}-{w}-{k}" for n, w, k in CASES])
def test_a_crash_at_any_commit_ends_like_the_crash_free_run(name: str, when: str, k: int) -> None:
    expected = summary(run(name))
    w = run(name, **{when: k})
    assert summary(w) == expected
    assert w.service.check_invariants() == []
    per_op = Counter(m.operation_id for m in w.fake.movements if m.operation_id)
    assert all(n == 1 for n in per_op.values()), per_op
