"""Many OS processes acting on the same escrows at once keep every money invariant (DESIGN I5).

Four processes (``spawn``), four threads each, act on the same 20 funded escrows: releases and
refunds (some with idempotency keys shared across processes, some for "everything available",
some hitting an injected gateway failure), duplicated and shuffled webhook deliveries, and
`recover()` while the shared clock jumps past backoffs and leases. All processes use one
`FakeGateway`, served by a manager process (see `tests.concurrency.workers` for why one and not
one per process). Afterwards the parent drains the last events, lets every lease and backoff
expire and runs `recover()` until nothing is due, so each operation reaches a final state; then:

- no caller saw an error other than the documented ones;
- `check_invariants()` holds for every escrow, and the books agree with what really moved at
  the gateway (`books_agree`, the money oracle);
- every release or refund that succeeded has exactly one movement at the gateway, every
  movement belongs to a succeeded operation of the matching kind and amount, and no operation
  has two;
- per escrow, what left (transfer nets + fees + refunds) is exactly funded minus held.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import EscrowService, Money, OperationKind, OperationStatus
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.testing import books_agree
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip

from .workers import (
    NAMESPACE,
    PAYEES,
    POSTERS,
    FakeStripeManager,
    RemoteGateway,
    SharedClock,
    Tally,
    WorkerPlan,
    drain,
    logged_errors,
    make_service,
    run_worker,
)

pytestmark = pytest.mark.postgres

PROCESSES = 4
THREADS = 4
ITERATIONS = 30
ESCROWS = 20
AMOUNT = 20_000
SEED = 20260101


@pytest.fixture
def pg_url() -> str:
    return postgres_url_or_skip()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url) as name:
        yield name


def _build_world(service: EscrowService, fake: Any) -> list[tuple[str, str]]:
    """Ready payees and funded escrows, made in the parent; returns (escrow id, poster id)."""
    for payee_id in PAYEES:
        payee = service.register_payee(payee_id, country="US")
        fake.complete_onboarding(payee.account_ref)
    escrows = []
    for n in range(ESCROWS):
        poster = POSTERS[n % len(POSTERS)]
        esc = service.open_escrow(
            bounty_id=f"bounty-{n}", poster_id=poster.id, amount=Money(AMOUNT, "usd"), actor=poster
        )
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        escrows.append((esc.id, poster.id))
    assert drain(service, fake) == []
    for escrow_id, _ in escrows:
        assert service.get(escrow_id).held == Money(AMOUNT, "usd")
    assert all(service.get_payee(p).ready for p in PAYEES)
    return escrows


def _run_processes(
    plans: list[WorkerPlan], fake: Any, offset: Any, ctx: Any
) -> list[dict[str, Any]]:
    results = ctx.Queue()
    start = ctx.Barrier(len(plans))
    processes = [
        ctx.Process(target=run_worker, args=(plan, fake, offset, start, results), daemon=True)
        for plan in plans
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    try:
        while len(reports) < len(processes) and time.monotonic() < deadline:
            try:
                reports.append(results.get(timeout=1))
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and results.empty():
                    break  # a process died without reporting: its exit code says so below
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():  # only on failure: do not leave it behind
                process.terminate()
                process.join(timeout=10)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    assert len(reports) == len(processes), "a worker process did not report in time"
    return reports


def _finish(service: EscrowService, fake: Any, clock: SharedClock) -> list[str]:
    """Bring every operation to a final state: last events, then recovery past all leases.

    An operation can be left pending by an unknown gateway outcome (its backoff is at most an
    hour) or by a caller whose record step lost the database (its 60 s lease still held). Two
    hours later every one of them is due; `recover()` resends the stored request under the
    same key, and the one shared fake replays its first answer, so recovery here never moves
    money a second time. The gateway key window (23 h) is not reached, so no new key
    generation is involved.
    """
    problems = drain(service, fake, seed=1)
    for _ in range(10):
        # Each pass two hours on: a failure a worker queued but never used may hit a
        # recovery's own call, which then backs off like any other.
        clock.advance(timedelta(hours=2))
        report = service.recover(limit=1_000)
        problems += drain(service, fake, seed=2)
        if report.claimed == 0:
            break
    return problems


def _summary(errors: list[str]) -> str:
    """Each distinct error once with its count, then the first one in full."""
    counts = Counter(text.splitlines()[0] for text in errors)
    lines = [f"{n} x {first}" for first, n in counts.most_common()]
    return "\n".join([*lines, "", "first in full:", errors[0]]) if errors else ""


def test_four_processes_of_four_threads_keep_every_invariant(pg_url: str, schema: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with FakeStripeManager(ctx=ctx) as manager:
        fake = manager.SharedFake(webhook_secret="whsec_test")  # type: ignore[attr-defined]
        offset = ctx.Value("d", 0.0)
        clock = SharedClock(offset)
        with SqlAlchemyStore(pg_url, schema=schema) as store:
            store.migrate()
            service = make_service(store, RemoteGateway(fake), clock)
            escrows = _build_world(service, fake)
            plans = [
                WorkerPlan(
                    number=n,
                    url=pg_url,
                    schema=schema,
                    escrows=tuple(escrows),
                    threads=THREADS,
                    iterations=ITERATIONS,
                    seed=SEED + n,
                )
                for n in range(PROCESSES)
            ]
            reports = _run_processes(plans, fake, offset, ctx)

            parent = Tally()
            with logged_errors(parent):
                problems = _finish(service, fake, clock)
            ops = [op for escrow_id, _ in escrows for op in service.operations(escrow_id)]
            invariants = service.check_invariants()
            oracle = books_agree(service, fake.books(NAMESPACE))
            balances = {escrow_id: service.get(escrow_id) for escrow_id, _ in escrows}
            movements = fake.movement_list()

    crashes = [r["crash"] for r in reports if "crash" in r]
    assert crashes == []
    assert [r["stuck"] for r in reports] == [[]] * PROCESSES
    undocumented = [text for r in reports for text in r["undocumented"]]
    undocumented += problems + parent.undocumented
    assert undocumented == [], _summary(undocumented)

    assert invariants == []
    assert oracle == []
    still_open = [(op.id, op.kind.value, op.status.value) for op in ops if op.status.open]
    assert still_open == []

    per_operation = Counter(m.operation_id for m in movements)
    assert None not in per_operation  # nothing moved outside the library
    assert {op_id: n for op_id, n in per_operation.items() if n != 1} == {}

    moving = {OperationKind.RELEASE: "transfer", OperationKind.REFUND: "refund"}
    succeeded = {
        op.id: op for op in ops if op.kind in moving and op.status is OperationStatus.SUCCEEDED
    }
    assert set(per_operation) == set(succeeded)
    for movement in movements:
        op = succeeded[movement.operation_id or ""]
        assert movement.kind == moving[op.kind]
        assert movement.status == "succeeded"
        assert movement.amount == (op.net if op.kind is OperationKind.RELEASE else op.gross)

    for escrow_id, escrow in balances.items():
        mine = [m for m in movements if succeeded[m.operation_id or ""].escrow_id == escrow_id]
        moved = sum(m.amount.amount for m in mine) + escrow.fees.amount
        assert moved == escrow.funded.amount - escrow.held.amount, escrow_id

    # The run did what it claims: money moved both ways, callers met real contention, and
    # recovery had operations to finish.
    outcomes: Counter[str] = Counter()
    documented: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["outcomes"])
        documented.update(report["documented"])
    kinds = Counter(op.kind for op in succeeded.values())
    assert kinds[OperationKind.RELEASE] > ESCROWS
    assert kinds[OperationKind.REFUND] > ESCROWS
    assert all(report["outcomes"].get("recover", 0) > 0 for report in reports)
    assert outcomes["apply_event"] > 0
    assert documented["InsufficientFundsError"] > 0
    print(f"\noutcomes {dict(outcomes)}\ndocumented errors {dict(documented)}")
