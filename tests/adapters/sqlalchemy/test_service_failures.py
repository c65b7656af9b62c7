"""`EscrowService` on the SQL store when things go wrong: the database, the timing, the order.

- No transaction and no checked-out connection exist while the gateway is called (DESIGN §3,
  §7): a gateway wrapper checks it on every call of the port.
- A database that goes away between the gateway call and the record step loses nothing:
  the operation stays pending with no ledger entry, the caller gets a `StorageError` (or the
  pending operation), and `recover()` completes it later with exactly one movement.
- Concurrent webhooks: one event id applied from 8 threads at once has one effect; a webhook
  that read an operation before the call's own record step committed books nothing twice.
"""

from __future__ import annotations

import functools
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.pool import NullPool

from bountyescrow import (
    Actor,
    EscrowService,
    Money,
    OperationKind,
    OperationStatus,
    WebhookStatus,
)
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.domain.gateway_objects import GatewayEvent
from bountyescrow.errors import IdempotencyInProgressError, StorageError
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.testing import FakeGateway, ManualClock
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from bountyescrow.webhooks import backfill_events
from tests.keys import new_key

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"
LEASE = timedelta(seconds=60)  # the lease the service derives for the fake
#: The methods of the gateway port (and its one property), each of which must be checked.
PORT = frozenset(name for name in vars(PaymentGateway) if not name.startswith("_"))


def usd(amount: int) -> Money:
    return Money(amount, "usd")


# --- the two databases, each able to show open transactions and to go away -------------------


class Backend(Protocol):
    store: SqlAlchemyStore

    def open_transactions(self) -> list[str]:
        """What holds a transaction open on the store's database right now."""
        ...

    def cut(self) -> None:
        """Make the database unusable for the store."""
        ...

    def restore(self) -> None:
        """Make it usable again."""
        ...


class SqliteBackend:
    """A SQLite file. Every unit of work starts with ``BEGIN IMMEDIATE`` (it takes the write
    lock even to read), so "is a transaction open?" is "can another connection take the write
    lock right now?". It goes away by another connection holding an exclusive lock: the store
    waits its (short) busy timeout and gets "database is locked"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SqlAlchemyStore(f"sqlite:///{path}", busy_timeout=0.2)
        self._holder: sqlite3.Connection | None = None

    def open_transactions(self) -> list[str]:
        probe = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return [f"another connection holds the write lock ({exc})"]
        finally:
            probe.close()
        return []

    def cut(self) -> None:
        self._holder = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        self._holder.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        if self._holder is not None:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None

    def close(self) -> None:
        self.restore()
        self.store.dispose()


class PostgresBackend:
    """PostgreSQL, the store's connections tagged with an ``application_name``, so
    ``pg_stat_activity`` (read through a separate, unpooled engine) shows their state. It goes
    away the way a restarting server does: its backends are terminated and new connections
    are refused (termination alone is not enough: ``pool_pre_ping`` would reconnect)."""

    def __init__(self, url: str, schema: str) -> None:
        self.app = f"be-failures-{secrets.token_hex(4)}"
        self.store = SqlAlchemyStore(
            url, schema=schema, engine_options={"connect_args": {"application_name": self.app}}
        )
        self._admin = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._down = False
        sa_event.listen(self.store.engine, "do_connect", self._connect)

    def _connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        if self._down:
            import psycopg

            raise psycopg.OperationalError(
                "connection to server failed: Connection refused (simulated outage)"
            )

    def _ours(self, conn: sa.Connection, what: str) -> list[Any]:
        query = f"SELECT {what} FROM pg_stat_activity WHERE application_name = :app"
        return list(conn.execute(sa.text(query), {"app": self.app}).all())

    def open_transactions(self) -> list[str]:
        with self._admin.connect() as conn:
            rows = self._ours(conn, "pid, state")
        return [f"backend {pid} is {state!r}" for pid, state in rows if state != "idle"]

    def cut(self) -> None:
        self._down = True
        with self._admin.connect() as conn:
            self._ours(conn, "pg_terminate_backend(pid, 5000)")

    def restore(self) -> None:
        self._down = False

    def close(self) -> None:
        self.store.dispose()
        self._admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        lite = SqliteBackend(tmp_path / "escrow.db")
        lite.store.migrate()
        yield lite
        lite.close()
        return
    url = postgres_url_or_skip()
    with fresh_schema(url) as schema:
        pg = PostgresBackend(url, schema)
        pg.store.migrate()
        yield pg
        pg.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock)


def ready_payee(service: EscrowService, fake: FakeGateway) -> None:
    payee = service.register_payee(HUNTER, email="h@example.com", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)


def funded(service: EscrowService, fake: FakeGateway, bounty: str = "b1") -> str:
    esc = service.open_escrow(
        bounty_id=bounty, poster_id=POSTER.id, amount=usd(25_000), actor=POSTER
    )
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return esc.id


def entries_of(service: EscrowService, escrow_id: str, op_id: str) -> list[Any]:
    return [e for e in service.ledger(escrow_id) if e.operation_id == op_id]


def moved_by(fake: FakeGateway, op_id: str) -> list[Any]:
    return [m for m in fake.movements if m.operation_id == op_id]


# --- no transaction across a gateway call ------------------------------------------------------


class CheckingGateway:
    """The fake, except that every port call first checks that the store holds nothing open:
    no connection checked out of its pool and no transaction open on the server. A violation
    is recorded (`recover()` logs and swallows exceptions) and raised."""

    def __init__(self, inner: FakeGateway, backend: Backend) -> None:
        self._inner = inner
        self._backend = backend
        self.calls: Counter[str] = Counter()
        self.violations: list[str] = []

    def _check(self, name: str) -> None:
        self.calls[name] += 1
        found = []
        pool: Any = self._backend.store.engine.pool
        if pool.checkedout():
            found.append(f"{pool.checkedout()} connection(s) checked out of the pool")
        found += self._backend.open_transactions()
        if found:
            self.violations.append(f"{name}: {'; '.join(found)}")
            raise AssertionError(self.violations[-1])

    @property
    def livemode(self) -> bool:
        self._check("livemode")
        return self._inner.livemode

    @property
    def max_call_duration(self) -> timedelta:
        self._check("max_call_duration")
        return self._inner.max_call_duration

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in PORT:
            return attr

        @functools.wraps(attr)
        def checked(*args: Any, **kwargs: Any) -> Any:
            self._check(name)
            return attr(*args, **kwargs)

        return checked


def test_the_check_sees_a_connection_and_a_transaction_held_across_a_call(
    backend: Backend, fake: FakeGateway
) -> None:
    """The check below is not vacuous: a call made inside a unit of work is caught twice."""
    gateway = CheckingGateway(fake, backend)
    with backend.store.unit_of_work() as uow:
        uow.escrows.ids()
        with pytest.raises(AssertionError):
            gateway.get_account("acct_0001")
    [violation] = gateway.violations
    pool_part, transaction_part = violation.removeprefix("get_account: ").split("; ")
    assert pool_part == "1 connection(s) checked out of the pool"
    assert "write lock" in transaction_part or "in transaction" in transaction_part


def test_every_gateway_call_happens_with_no_connection_or_transaction_open(
    backend: Backend, fake: FakeGateway, clock: ManualClock
) -> None:
    """Drives every method of the gateway port, through commands, webhooks and recovery."""
    gateway = CheckingGateway(fake, backend)
    service = EscrowService(backend.store, gateway, fee_bps=1000, namespace="chk", clock=clock)

    payee = service.register_payee(HUNTER, email="h@example.com", country="US")
    service.onboarding_link(HUNTER, return_url="https://m.test/r", refresh_url="https://m.test/f")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)  # account.updated: re-fetched
    escrow_id = funded(service, fake)
    release = service.release(
        escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
    )
    service.refund(escrow_id, amount=usd(2_000), actor=ADMIN, idempotency_key=new_key())
    fake.deliver(service)  # refund events: re-fetched
    service.reverse(
        escrow_id, release.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key()
    )
    other = service.open_escrow(bounty_id="b2", poster_id=POSTER.id, amount=usd(900), actor=POSTER)
    service.cancel(other.id, actor=POSTER)
    service.open_escrow(bounty_id="b3", poster_id=POSTER.id, amount=usd(700), actor=POSTER)

    # Replayed server errors: recovery looks the objects up, then sends a new key generation.
    fake.fail_next("transfer", error="server_error")
    service.release(
        escrow_id, payee_id=HUNTER, amount=usd(1_000), actor=POSTER, idempotency_key=new_key()
    )
    fake.fail_next("refund", error="server_error")
    service.refund(escrow_id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
    fake.fail_next("reversal", error="server_error")
    service.reverse(escrow_id, release.id, amount=usd(500), actor=ADMIN, idempotency_key=new_key())
    for step in (timedelta(minutes=20), timedelta(minutes=20), timedelta(hours=24)):
        clock.advance(step)
        service.recover()  # also polls the unpaid payment of b3
        fake.deliver(service)

    esc = service.get(escrow_id)
    assert esc.payment_ref is not None
    fake.open_dispute(esc.payment_ref)
    fake.deliver(service)  # dispute events: re-fetched
    # The backfill reads the events list between the events it applies.
    backfill_events(service, since=clock.now() - timedelta(days=2))
    # Reconciliation reads the lists, the balance and single objects between its units of work.
    clock.advance(timedelta(minutes=10))
    service.reconcile(repair=True)
    service.reconcile(escrow_ids=[escrow_id])

    assert gateway.violations == []
    assert set(gateway.calls) == PORT
    ops = service.operations(escrow_id)
    assert [op.status for op in ops if op.status.open] == []
    assert len(ops) == 7  # funding, 2 releases, 2 refunds, 2 reversals
    assert service.check_invariants() == []


# --- the database goes away mid-operation -------------------------------------------------------


class CutAfterTransfer:
    """The fake, except that the database goes away right after the first transfer is made."""

    def __init__(self, inner: FakeGateway, backend: Backend) -> None:
        self._inner = inner
        self._backend = backend
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_transfer(self, request: Any, *, idempotency_key: str) -> Any:
        result = self._inner.create_transfer(request, idempotency_key=idempotency_key)
        if self.armed:
            self.armed = False
            self._backend.cut()
        return result


def test_a_database_lost_after_the_gateway_call_leaves_a_recoverable_pending_operation(
    backend: Backend, fake: FakeGateway, clock: ManualClock
) -> None:
    gateway = CutAfterTransfer(fake, backend)
    service = EscrowService(backend.store, gateway, fee_bps=1000, namespace="cut", clock=clock)
    ready_payee(service, fake)
    escrow_id = funded(service, fake)

    gateway.armed = True
    outcome: Any
    try:
        outcome = service.release(
            escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="r1"
        )
    except StorageError as exc:
        outcome = exc
    finally:
        backend.restore()
    if isinstance(outcome, StorageError):
        # DESIGN §7 and `bountyescrow.errors`: only errors raised before step 1 commits are
        # retryable. The money has moved: a host retrying this without the key pays twice.
        assert outcome.retryable is False, f"retryable StorageError after step 1: {outcome}"
    else:
        assert outcome.status is OperationStatus.PENDING

    # Nothing half-written: step 1 stands, step 3 left no trace.
    [op] = [o for o in service.operations(escrow_id) if o.kind is OperationKind.RELEASE]
    assert op.status is OperationStatus.PENDING
    assert op.gateway_ref is None
    assert entries_of(service, escrow_id, op.id) == []
    esc = service.get(escrow_id)
    assert (esc.held, esc.released, esc.available) == (usd(25_000), usd(0), usd(15_000))
    assert service.check_invariants() == []
    assert len(moved_by(fake, op.id)) == 1  # the money did move at the gateway

    # The same key cannot start a second release while the first call's lease runs.
    with pytest.raises(IdempotencyInProgressError):
        service.release(
            escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="r1"
        )

    clock.advance(LEASE + timedelta(seconds=1))
    report = service.recover()
    assert (report.claimed, report.completed, report.errors) == (1, 1, 0)
    fake.deliver(service, duplicate=True, shuffle=True)

    done = service.get_operation(op.id)
    assert done.status is OperationStatus.SUCCEEDED
    assert done.gateway_ref == moved_by(fake, op.id)[0].ref
    assert len(moved_by(fake, op.id)) == 1
    assert len(entries_of(service, escrow_id, op.id)) == 1
    again = service.release(
        escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key="r1"
    )
    assert again.id == op.id
    assert service.get(escrow_id).released == usd(10_000)
    assert service.check_invariants() == []


# --- concurrent webhooks on PostgreSQL ----------------------------------------------------------


@pytest.fixture
def pg_service(pg_store: SqlAlchemyStore, fake: FakeGateway, clock: ManualClock) -> EscrowService:
    return EscrowService(pg_store, fake, fee_bps=1000, namespace="hooks", clock=clock)


def queued(fake: FakeGateway, type: str) -> GatewayEvent:
    """The first queued event of `type`; the queue is then emptied (it is applied by hand)."""
    event = next(e for e in fake.pending_events if e.type == type)
    fake.drop_events()
    return event


def pending_operation(
    service: EscrowService, fake: FakeGateway, escrow_id: str, kind: str
) -> tuple[str, GatewayEvent]:
    """A release or refund whose answer was lost after it took effect, and its event."""
    if kind == "release":
        fake.fail_next("transfer", error="timeout_after_effect")
        op = service.release(
            escrow_id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        event = queued(fake, "transfer.created")
    else:
        fake.fail_next("refund", error="timeout_after_effect")
        op = service.refund(escrow_id, amount=usd(10_000), actor=ADMIN, idempotency_key=new_key())
        event = queued(fake, "refund.created")
    assert op.status is OperationStatus.PENDING
    return op.id, event


def in_threads(count: int, fn: Callable[[], Any]) -> list[Any]:
    """Run `fn` in `count` threads released at once; return results (or exceptions)."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        start.wait(timeout=30)
        try:
            results[i] = fn()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.postgres
class TestConcurrentWebhooks:
    def test_one_payment_event_applied_by_eight_threads_funds_once(
        self, pg_service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = pg_service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=usd(25_000), actor=POSTER
        )
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        event = queued(fake, "payment_intent.succeeded")

        results = in_threads(8, lambda: pg_service.apply_event(event))

        assert results == [WebhookStatus.PROCESSED] * 8
        funded = pg_service.get(esc.id)
        assert (funded.funded, funded.held) == (usd(25_000), usd(25_000))
        assert len([e for e in pg_service.ledger(esc.id) if e.kind == "funding"]) == 1
        record = pg_service.webhook_event(event.id)
        assert record is not None
        assert record.attempts == 1
        assert pg_service.check_invariants() == []

    @pytest.mark.parametrize("kind", ["release", "refund"])
    def test_one_completing_event_applied_by_eight_threads_books_once(
        self, pg_service: EscrowService, fake: FakeGateway, kind: str
    ) -> None:
        ready_payee(pg_service, fake)
        escrow_id = funded(pg_service, fake)
        op_id, event = pending_operation(pg_service, fake, escrow_id, kind)

        results = in_threads(8, lambda: pg_service.apply_event(event))

        assert results == [WebhookStatus.PROCESSED] * 8
        assert pg_service.get_operation(op_id).status is OperationStatus.SUCCEEDED
        assert len(entries_of(pg_service, escrow_id, op_id)) == 1
        succeeded = [
            e
            for e in pg_service.events(after=0, limit=1_000)
            if e.type == "operation.succeeded" and e.operation_id == op_id
        ]
        assert len(succeeded) == 1
        assert len(moved_by(fake, op_id)) == 1
        esc = pg_service.get(escrow_id)
        assert esc.held == usd(15_000)
        assert pg_service.check_invariants() == []

    @pytest.mark.parametrize("kind", ["release", "refund"])
    def test_a_webhook_that_read_the_operation_before_its_record_step_committed_books_nothing(
        self,
        pg_store: SqlAlchemyStore,
        fake: FakeGateway,
        clock: ManualClock,
        kind: str,
    ) -> None:
        """The webhook reads the pending operation, then waits for the escrow lock while
        `recover()` records the same object and commits; once it has the lock it must see the
        operation as it is now (succeeded), not as it read it."""
        store = PausingStore(pg_store)
        service = EscrowService(store, fake, fee_bps=1000, namespace="race", clock=clock)
        ready_payee(service, fake)
        escrow_id = funded(service, fake)
        op_id, event = pending_operation(service, fake, escrow_id, kind)

        store.pause_next_escrow_lock()
        webhook: dict[str, Any] = {}

        def deliver() -> None:
            try:
                webhook["status"] = service.apply_event(event)
            except BaseException as exc:
                webhook["error"] = exc

        thread = threading.Thread(target=deliver)
        thread.start()
        assert store.paused.wait(timeout=10), "the webhook never reached the escrow lock"
        clock.advance(LEASE + timedelta(seconds=1))
        report = service.recover()  # the call's record step, redone: resends, records, commits
        assert (report.claimed, report.completed) == (1, 1)
        store.resume.set()
        thread.join(timeout=30)

        assert "error" not in webhook, repr(webhook.get("error"))
        assert webhook["status"] in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED)
        assert service.get_operation(op_id).status is OperationStatus.SUCCEEDED
        assert len(entries_of(service, escrow_id, op_id)) == 1
        assert len(moved_by(fake, op_id)) == 1
        assert service.get(escrow_id).held == usd(15_000)
        assert service.check_invariants() == []


class PausingStore:
    """A store whose next ``escrows.get(..., for_update=True)`` waits until told to go on.

    It stops a unit of work just before it locks the escrow, after everything it read first.
    """

    def __init__(self, inner: SqlAlchemyStore) -> None:
        self.inner = inner
        self.paused = threading.Event()
        self.resume = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def pause_next_escrow_lock(self) -> None:
        self._armed = True

    def _take_pause(self) -> bool:
        with self._lock:
            armed, self._armed = self._armed, False
            return armed

    def unit_of_work(self) -> _PausingUnitOfWork:
        return _PausingUnitOfWork(self, self.inner.unit_of_work())


class _PausingUnitOfWork:
    def __init__(self, owner: PausingStore, inner: UnitOfWork) -> None:
        self._owner = owner
        self._inner = inner
        self.escrows = _PausingEscrows(owner, inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _PausingUnitOfWork:
        self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        self._inner.commit()


class _PausingEscrows:
    def __init__(self, owner: PausingStore, inner: UnitOfWork) -> None:
        self._owner = owner
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner.escrows, name)

    def get(self, escrow_id: str, *, for_update: bool = False) -> Any:
        if for_update and self._owner._take_pause():
            self._owner.paused.set()
            self._owner.resume.wait(timeout=30)
        return self._inner.escrows.get(escrow_id, for_update=for_update)
