"""The library side: full lifecycles through `EscrowService` on `SqlAlchemyStore`.

One lifecycle is what a host and Stripe do for one bounty:

1. ``service.open_escrow(...)`` (with an idempotency key): the escrow, its funding operation and
   the PaymentIntent at the fake gateway;
2. ``fake.pay(ref)`` and ``fake.deliver(service)``: ``payment_intent.succeeded`` funds it;
3. ``service.release(escrow_id, payee_id=..., actor=poster)`` (with an idempotency key) to a
   payee registered and onboarded once up front: the transfer at the fake gateway;
4. ``fake.deliver(service)``: the ``transfer.created`` the transfer queued.

Each worker thread has its own `FakeGateway` (so the fake's lock is not what is measured), its
own `EscrowService` and payee; all share one store, hence one engine and connection pool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from benchmarks._db import Database, Tally
from bountyescrow import Actor, EscrowService, Money, OperationStatus, WebhookStatus
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing import FakeGateway

POSTER = Actor("poster-1")
AMOUNT = Money(25_000, "usd")
FEE_BPS = 1_000
NAMESPACE = "bench"


class WorkerFakeGateway(FakeGateway):
    """A `FakeGateway` whose ids carry a worker tag (``pi_w1000001``).

    Every fake numbers its objects from 1 (``pi_0001``, ``evt_0001``), so two fakes writing to
    one database would collide on the unique gateway references and webhook event ids.
    """

    def __init__(self, tag: str) -> None:
        super().__init__(webhook_secret="whsec_bench")
        self._tag = tag

    def _next_id(self, prefix: str) -> str:
        number = super()._next_id(prefix)[len(prefix) + 1 :]
        return f"{prefix}_{self._tag}{number:0>6}"


class LibraryWorker:
    """One worker's service, fake gateway and payee."""

    def __init__(self, store: EscrowStore, index: int) -> None:
        self.fake = WorkerFakeGateway(f"w{index}")
        self.service = EscrowService(store, self.fake, fee_bps=FEE_BPS, namespace=NAMESPACE)
        self.payee_id = f"hunter-{index}"
        payee = self.service.register_payee(self.payee_id, country="US", email="h@example.com")
        self.fake.complete_onboarding(payee.account_ref)
        self.fake.deliver(self.service)

    def lifecycle(self, bounty_id: str) -> None:
        """Open, fund, release and confirm one escrow."""
        service, fake = self.service, self.fake
        escrow = service.open_escrow(
            bounty_id=bounty_id,
            poster_id=POSTER.id,
            amount=AMOUNT,
            actor=POSTER,
            idempotency_key=f"open:{bounty_id}",
        )
        assert escrow.payment_ref is not None
        fake.pay(escrow.payment_ref)
        funded = fake.deliver(service)
        op = service.release(
            escrow.id,
            payee_id=self.payee_id,
            actor=POSTER,
            idempotency_key=f"release:{bounty_id}",
        )
        confirmed = fake.deliver(service)
        if (
            op.status is not OperationStatus.SUCCEEDED
            or funded != [WebhookStatus.PROCESSED]
            or confirmed != [WebhookStatus.IGNORED]
        ):
            raise RuntimeError(
                f"lifecycle {bounty_id} did not go as expected: release {op.status.value}, "
                f"events {funded} then {confirmed}"
            )


class LibrarySide:
    """The library on one database, with its statements and commits counted."""

    name = "library"

    def __init__(self, db: Database, workers: int, *, engine_options: dict[str, Any]) -> None:
        options = {"pool_size": max(5, workers), **engine_options}
        self.store = SqlAlchemyStore(db.url, schema=db.schema, engine_options=options)
        self.tally = Tally()
        _count(self.store, self.tally)
        self.workers = [LibraryWorker(self.store, k) for k in range(workers)]

    def lifecycle(self, worker: int, bounty_id: str) -> None:
        self.workers[worker].lifecycle(bounty_id)

    def close(self) -> None:
        self.store.dispose()


def _count(store: SqlAlchemyStore, tally: Tally) -> None:
    engine = store.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        # SQLite's BEGIN IMMEDIATE is the library's way to begin; count transactions by commits.
        if not statement.startswith("BEGIN"):
            tally.statement(statement)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        tally.begin()

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        tally.rollback()

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        tally.commit()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        tally.checkout()
