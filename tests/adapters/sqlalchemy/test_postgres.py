"""PostgreSQL: isolation, row locks, SKIP LOCKED claims, lost connections, pooled connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.domain.operation import OperationStatus
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.testing.contracts.store import (
    T0,
    due_operation,
    make_escrow,
    make_event,
    make_idempotency,
    make_operation,
)

pytestmark = pytest.mark.postgres

MINUTE = timedelta(minutes=1)


def _connection(uow: UnitOfWork) -> sa.Connection:
    conn: sa.Connection | None = getattr(uow, "_conn", None)
    assert conn is not None
    return conn


def _backend_pid(uow: UnitOfWork) -> int:
    pid = _connection(uow).execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    return int(pid)


def _terminate(url: str, pid: int) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.commit()
    finally:
        engine.dispose()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


class TestTransactions:
    def test_units_of_work_run_at_read_committed(self, pg_store: SqlAlchemyStore) -> None:
        with pg_store.unit_of_work() as uow:
            level = _connection(uow).execute(sa.text("SHOW transaction_isolation")).scalar()
        assert level == "read committed"

    def test_no_connection_is_held_outside_a_unit_of_work(self, pg_store: SqlAlchemyStore) -> None:
        """The connection goes back to the pool at commit, before the with block ends."""
        pool: Any = pg_store.engine.pool
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            assert pool.checkedout() == 1
            uow.commit()
            assert pool.checkedout() == 0  # e.g. while the service calls the gateway
        with pg_store.unit_of_work() as uow:
            uow.escrows.get("esc_1")
        assert pool.checkedout() == 0

    def test_a_killed_connection_gives_storage_error_and_writes_nothing(
        self, pg_store: SqlAlchemyStore, pg_url: str
    ) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_lost"))
            _terminate(pg_url, _backend_pid(uow))
            with pytest.raises(StorageError) as caught:
                uow.escrows.add(make_escrow("esc_after"))
        assert caught.value.details.get("disconnect") is True
        assert caught.value.retryable is True
        with pg_store.unit_of_work() as uow:  # the pool recovers
            assert uow.escrows.get("esc_lost") is None
            assert uow.escrows.ids() == []

    def test_a_connection_killed_before_commit_fails_the_commit(
        self, pg_store: SqlAlchemyStore, pg_url: str
    ) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_lost"))
            _terminate(pg_url, _backend_pid(uow))
            with pytest.raises(StorageError) as caught:
                uow.commit()
        assert caught.value.retryable is False  # a lost COMMIT may or may not have happened
        assert caught.value.details.get("outcome_unknown") is True
        with pg_store.unit_of_work() as uow:
            assert uow.escrows.get("esc_lost") is None

    def test_an_unreachable_server_gives_storage_error(self, pg_url: str) -> None:
        url = sa.engine.make_url(pg_url).set(port=1, host="127.0.0.1")
        with SqlAlchemyStore(url) as store:
            with pytest.raises(StorageError), store.unit_of_work():
                pass  # pragma: no cover - entering fails
            with pytest.raises(StorageError):
                store.migrate()


class TestLocks:
    def test_for_update_makes_a_second_locker_wait_for_commit(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.commit()
        with pg_store.unit_of_work() as uow:
            mine = uow.escrows.get("esc_1", for_update=True)
            assert mine is not None

            def second() -> float:
                with pg_store.unit_of_work() as other:
                    other.escrows.get("esc_1", for_update=True)
                    return time.monotonic()

            thread, box = _in_thread(second)
            time.sleep(0.3)
            assert thread.is_alive()
            uow.escrows.save(mine)
            committed_at = time.monotonic()
            uow.commit()
        thread.join(timeout=10)
        assert box["result"] >= committed_at

    def test_first_callers_with_one_idempotency_key_run_one_after_the_other(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        """Locking a key that does not exist yet makes the second caller see the first's row."""
        with pg_store.unit_of_work() as uow:
            assert uow.idempotency.get("poster_1", "k", for_update=True) is None

            def second() -> object:
                with pg_store.unit_of_work() as other:
                    return other.idempotency.get("poster_1", "k", for_update=True)

            thread, box = _in_thread(second)
            time.sleep(0.3)
            assert thread.is_alive()
            uow.idempotency.save(make_idempotency("poster_1", "k"))
            uow.commit()
        thread.join(timeout=10)
        assert box["result"] == make_idempotency("poster_1", "k")

    def test_a_second_open_of_one_bounty_and_poster_waits_and_sees_the_first_escrow(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        """The lock on a (bounty, poster) with no escrow yet backs the one-open-escrow rule."""
        with pg_store.unit_of_work() as uow:
            uow.escrows.lock_bounty("bounty_1", "poster_1")
            assert uow.escrows.find(bounty_id="bounty_1", poster_id="poster_1") == []

            def second() -> list[str]:
                with pg_store.unit_of_work() as other:
                    other.escrows.lock_bounty("bounty_1", "poster_1")
                    found = other.escrows.find(bounty_id="bounty_1", poster_id="poster_1")
                    return [e.id for e in found]

            thread, box = _in_thread(second)
            time.sleep(0.3)
            assert thread.is_alive()
            uow.escrows.add(make_escrow())
            uow.commit()
        thread.join(timeout=10)
        assert box["result"] == ["esc_1"]

    def test_event_numbers_follow_commit_order(self, pg_store: SqlAlchemyStore) -> None:
        """A reader at a cursor never skips an event that commits after a later-numbered one."""
        with pg_store.unit_of_work() as uow:
            uow.events.add(make_event("slow"))

            def fast() -> None:
                with pg_store.unit_of_work() as other:
                    other.events.add(make_event("fast"))
                    other.commit()

            thread, box = _in_thread(fast)
            time.sleep(0.3)
            assert thread.is_alive()  # waits for the event log lock
            uow.commit()
        thread.join(timeout=10)
        assert "error" not in box
        with pg_store.unit_of_work() as uow:
            events = uow.events.after(0, limit=10)
        assert [e.type for e in events] == ["slow", "fast"]


class TestStaleWrites:
    def test_a_copy_read_before_another_transaction_settled_it_is_not_written_back(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        """A waiting release cancelled meanwhile must not be saved back to life as pending."""
        waiting = make_operation(status=OperationStatus.AWAITING_PAYEE, gateway_ref=None)
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.operations.add(waiting)
            uow.commit()
        with pg_store.unit_of_work() as stale:
            read = stale.operations.get(waiting.id)
            assert read is not None

            def cancel() -> None:
                with pg_store.unit_of_work() as other:
                    current = other.operations.get(waiting.id, for_update=True)
                    assert current is not None
                    cancelled = attrs.evolve(current, status=OperationStatus.CANCELLED)
                    other.operations.save(cancelled)
                    other.commit()

            thread, box = _in_thread(cancel)
            thread.join(10)
            assert "error" not in box
            with pytest.raises(StorageError) as info:
                stale.operations.save(attrs.evolve(read, status=OperationStatus.PENDING))
        assert info.value.details["constraint"] == "operations_status_guard"
        assert info.value.retryable
        with pg_store.unit_of_work() as uow:
            after = uow.operations.get(waiting.id)
        assert after is not None
        assert after.status is OperationStatus.CANCELLED


class TestClaimDue:
    def test_two_claimers_at_once_never_get_the_same_operation(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            for i in range(20):
                uow.operations.add(due_operation(f"op_{i:02d}", T0 + i * MINUTE))
            uow.commit()
        both_claimed = threading.Barrier(2)
        now = T0 + 60 * MINUTE

        def claim() -> list[str]:
            with pg_store.unit_of_work() as uow:
                ops = uow.operations.claim_due(now=now, lease_until=now + MINUTE, limit=8)
                both_claimed.wait(timeout=10)  # hold the row locks while the other claims
                uow.commit()
            return [op.id for op in ops]

        threads = [_in_thread(claim) for _ in range(2)]
        for thread, _ in threads:
            thread.join(timeout=30)
        first, second = (box["result"] for _, box in threads)
        assert len(first) == 8
        assert len(second) == 8
        assert not set(first) & set(second)
        with pg_store.unit_of_work() as uow:
            rest = uow.operations.claim_due(now=now, lease_until=now + MINUTE, limit=100)
        assert len(rest) == 4
        assert not {op.id for op in rest} & (set(first) | set(second))

    def test_many_claimers_share_out_all_operations_once(self, pg_store: SqlAlchemyStore) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            for i in range(40):
                uow.operations.add(due_operation(f"op_{i:02d}", T0 + i * MINUTE))
            uow.commit()
        now = T0 + 60 * MINUTE
        start = threading.Barrier(4)

        def claim() -> list[str]:
            start.wait(timeout=10)
            claimed: list[str] = []
            while True:
                with pg_store.unit_of_work() as uow:
                    ops = uow.operations.claim_due(now=now, lease_until=now + MINUTE, limit=3)
                    uow.commit()
                if not ops:
                    return claimed
                claimed += [op.id for op in ops]

        threads = [_in_thread(claim) for _ in range(4)]
        for thread, _ in threads:
            thread.join(timeout=60)
        claimed = [op for _, box in threads for op in box["result"]]
        assert sorted(claimed) == [f"op_{i:02d}" for i in range(40)]


class TestHostEngine:
    def test_a_host_engine_is_used_at_read_committed_and_not_disposed(
        self, pg_url: str, pg_schema: str
    ) -> None:
        engine = sa.create_engine(pg_url, isolation_level="REPEATABLE READ")
        try:
            store = SqlAlchemyStore(engine, schema=pg_schema)
            store.migrate()
            with store.unit_of_work() as uow:
                level = _connection(uow).execute(sa.text("SHOW transaction_isolation")).scalar()
                uow.escrows.add(make_escrow())
                uow.commit()
            store.dispose()
            assert level == "read committed"
            with engine.connect() as conn:
                host_level = conn.execute(sa.text("SHOW transaction_isolation")).scalar()
                count = conn.execute(sa.text(f'SELECT count(*) FROM "{pg_schema}".escrows'))
                assert count.scalar() == 1
            assert host_level == "repeatable read"
        finally:
            engine.dispose()
