"""What the multi-process test runs in each OS process, and the world those processes share.

Many processes on one database all talk to *one* Stripe: one set of objects, one table of
idempotency keys, one id sequence. The test reproduces that with one `FakeGateway` living in a
`multiprocessing` manager process; every process reaches it through a proxy (`RemoteGateway`).
A private fake per process would not do: each would mint the same ids (``tr_0001`` in every
process, colliding on the store's unique (kind, gateway object) constraints), and an operation
resent by another process's `recover()` would find no stored answer under its key and move the
money a second time, which real Stripe never does.

Time is shared the same way: `SharedClock` is the wall clock plus an offset in shared memory,
so when one thread lets "45 seconds pass" (to make backoffs and leases expire), every process
sees it.

Everything here is importable by a ``spawn``-started process: module-level names only.
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import BaseManager
from typing import Any

from bountyescrow import Actor, EscrowService, EscrowSettings, Money
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.domain.gateway_objects import GatewayEvent
from bountyescrow.errors import (
    EscrowFrozenError,
    IdempotencyInProgressError,
    InsufficientFundsError,
    InvalidTransitionError,
    StorageError,
)
from bountyescrow.testing import FakeGateway, GatewayBooks, Movement

ADMIN = Actor("admin", roles={"admin"})
POSTERS = [Actor(f"poster-{n}") for n in range(4)]
PAYEES = ["hunter-x", "hunter-y", "hunter-z"]
NAMESPACE = "procs"

#: What a caller may see from a command while others act on the same escrows.
DOCUMENTED = (
    InsufficientFundsError,
    EscrowFrozenError,
    InvalidTransitionError,
    IdempotencyInProgressError,
)


# --- one Stripe for every process -----------------------------------------------------------


class _Collector:
    """A delivery target that hands each event back instead of applying it."""

    def apply_event(self, event: GatewayEvent) -> GatewayEvent:
        return event


class SharedFake(FakeGateway):
    """The one `FakeGateway` all processes use, served by `FakeStripeManager`.

    A manager proxy forwards method calls only, so what is read through properties or
    delivered in-process, and the oracle's reading, get a plain method here.
    """

    def movement_list(self) -> list[Movement]:
        """`FakeGateway.movements`, callable through a proxy."""
        return self.movements

    def books(self, namespace: str) -> GatewayBooks:
        """What really moved (`GatewayBooks`), read where the fake lives, for the oracle."""
        return GatewayBooks.of(self, namespace=namespace)

    def take_events(self, *, duplicate: bool, shuffle: bool, seed: int) -> list[GatewayEvent]:
        """Drain the queued events (as ``deliver`` would) and return them for the caller to
        apply in its own process."""
        return self.deliver(_Collector(), duplicate=duplicate, shuffle=shuffle, seed=seed)


class FakeStripeManager(BaseManager):
    """A manager process holding the shared fake."""


FakeStripeManager.register("SharedFake", SharedFake)


class RemoteGateway:
    """A process's client of the shared fake: the `PaymentGateway` port over a manager proxy.

    Method calls go to the fake in the manager process (one connection per thread);
    `livemode` is the fake's default, answered locally.
    """

    livemode = False

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proxy, name)


class SharedClock:
    """The wall clock plus an offset every process shares (a `multiprocessing.Value`)."""

    def __init__(self, offset: Any) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset.value)

    def advance(self, delta: timedelta) -> None:
        with self._offset.get_lock():
            self._offset.value += delta.total_seconds()


def make_service(store: SqlAlchemyStore, gateway: Any, clock: SharedClock) -> EscrowService:
    """The service every process builds: same namespace, fees and settings.

    The run ends by jumping the clock hours ahead so that recovery finishes every operation; an
    operation pending across that jump is no defect, so its pending-too-long alert (an ERROR,
    which the tally counts as one) is set beyond the jumps.
    """
    settings = EscrowSettings(pending_alert_after=timedelta(days=2))
    return EscrowService(
        store, gateway, fee_bps=1000, namespace=NAMESPACE, clock=clock, settings=settings
    )


def drain(service: EscrowService, fake: Any, *, seed: int = 0) -> list[str]:
    """Apply every queued event (each twice, shuffled); return the errors that were raised."""
    problems: list[str] = []
    while events := fake.take_events(duplicate=True, shuffle=True, seed=seed):
        for event in events:
            try:
                service.apply_event(event)
            except Exception as exc:
                problems.append(f"apply_event({event.type}): {type(exc).__name__}: {exc}")
    return problems


# --- errors that reach a caller, and errors recover() logs ----------------------------------


@dataclass
class Tally:
    """What callers saw: documented errors by name, and anything else in full."""

    documented: Counter[str] = field(default_factory=Counter)
    undocumented: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, what: str) -> None:
        with self.lock:
            self.outcomes[what.split("(")[0]] += 1

    def error(self, what: str, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, DOCUMENTED):
                self.documented[type(exc).__name__] += 1
            elif isinstance(exc, StorageError) and exc.details.get("transient"):
                # The service retried the unit of work and gave up: documented, but counted.
                self.documented["StorageError(transient, retries exhausted)"] += 1
            else:
                text = "".join(traceback.format_exception(exc, chain=False))
                self.undocumented.append(f"{what}: {type(exc).__name__}: {exc}\n{text}")

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.error(what, exc)
        else:
            self.ok(what)


class _LogTally(logging.Handler):
    """Errors the library only logs (`recover()` logs a failed operation and carries on)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.WARNING)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            if record.getMessage().startswith("transient storage error"):
                with self.tally.lock:
                    self.tally.outcomes["storage retries"] += 1
            return
        if record.exc_info and record.exc_info[1] is not None:
            self.tally.error(f"logged: {record.getMessage()}", record.exc_info[1])
        else:
            with self.tally.lock:
                self.tally.undocumented.append(f"logged error: {record.getMessage()}")


@contextmanager
def logged_errors(tally: Tally) -> Iterator[None]:
    """Count what the ``bountyescrow`` logger reports at ERROR into `tally`."""
    handler = _LogTally(tally)
    logger = logging.getLogger("bountyescrow")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


# --- one worker process ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    """What one process does: `threads` threads of `iterations` random actions each."""

    number: int
    url: str
    schema: str
    escrows: tuple[tuple[str, str], ...]  # (escrow id, poster id)
    threads: int
    iterations: int
    seed: int


def run_worker(plan: WorkerPlan, fake: Any, offset: Any, start: Any, results: Any) -> None:
    """Process entry point: act, then put a report (a plain dict) on `results`."""
    try:
        report = _work(plan, fake, offset, start)
    except BaseException:
        report = {"worker": plan.number, "crash": traceback.format_exc()}
    results.put(report)


def _work(plan: WorkerPlan, fake: Any, offset: Any, start: Any) -> dict[str, Any]:
    tally = Tally()
    clock = SharedClock(offset)
    gateway = RemoteGateway(fake)
    with SqlAlchemyStore(plan.url, schema=plan.schema) as store, logged_errors(tally):
        service = make_service(store, gateway, clock)
        threads = [
            threading.Thread(
                target=_actor_thread,
                args=(service, fake, clock, plan, random.Random(plan.seed * 100 + n), tally),
                name=f"worker-{plan.number}-{n}",
            )
            for n in range(plan.threads)
        ]
        start.wait(timeout=120)  # every process starts acting at once
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        stuck = [t.name for t in threads if t.is_alive()]
    return {
        "worker": plan.number,
        "documented": dict(tally.documented),
        "undocumented": list(tally.undocumented),
        "outcomes": dict(tally.outcomes),
        "stuck": stuck,
    }


def _actor_thread(
    service: EscrowService,
    fake: Any,
    clock: SharedClock,
    plan: WorkerPlan,
    rng: random.Random,
    tally: Tally,
) -> None:
    def release() -> None:
        escrow_id, poster_id = rng.choice(plan.escrows)
        poster = Actor(poster_id)
        key: str | None = None
        roll = rng.random()
        if roll < 0.3:
            # A small pool of keys per escrow, each always sent with the same parameters, so
            # several processes race on one key (replay, in progress, or resume).
            k = rng.randrange(3)
            key, payee, amount = f"{escrow_id}:release:{k}", PAYEES[k], Money(600 + 300 * k, "usd")
        elif roll < 0.4:
            payee, amount = rng.choice(PAYEES), None  # everything still available
        else:
            payee, amount = rng.choice(PAYEES), Money(rng.randrange(300, 2_000), "usd")
        key = key or f"{escrow_id}:release:{rng.random()}"
        if rng.random() < 0.15:
            fake.fail_next("transfer", error=rng.choice(["unavailable", "timeout_after_effect"]))
        with tally.call("release"):
            service.release(
                escrow_id, payee_id=payee, amount=amount, actor=poster, idempotency_key=key
            )

    def refund() -> None:
        escrow_id, _ = rng.choice(plan.escrows)
        key: str | None = None
        roll = rng.random()
        if roll < 0.3:
            k = rng.randrange(3)
            key, amount = f"{escrow_id}:refund:{k}", Money(400 + 200 * k, "usd")
        elif roll < 0.35:
            amount = None
        else:
            amount = Money(rng.randrange(200, 1_500), "usd")
        key = key or f"{escrow_id}:refund:{rng.random()}"
        if rng.random() < 0.15:
            fake.fail_next("refund", error=rng.choice(["unavailable", "timeout_after_effect"]))
        with tally.call("refund"):
            service.refund(escrow_id, amount=amount, actor=ADMIN, idempotency_key=key)

    def deliver() -> None:
        # Whatever Stripe queued, from any process, twice each and shuffled.
        events: list[GatewayEvent] = []
        with tally.call("take_events"):
            events = fake.take_events(duplicate=True, shuffle=True, seed=rng.randrange(10_000))
        for event in events:
            with tally.call(f"apply_event({event.type})"):
                service.apply_event(event)

    def recover() -> None:
        if rng.random() < 0.5:
            # Let backoffs (30 s and up) and leases (60 s) run out, for every process.
            clock.advance(timedelta(seconds=45))
        with tally.call("recover"):
            report = service.recover()
            with tally.lock:
                tally.outcomes["operations recovered"] += report.completed

    actions: list[Callable[[], None]] = [release] * 4 + [refund] * 3 + [deliver] * 2 + [recover]
    for _ in range(plan.iterations):
        rng.choice(actions)()
