"""Every database failure is a `StorageError`; constraints back the money invariants."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.adapters.sqlalchemy._errors import storage_error
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import OperationKind
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.testing.contracts.store import (
    T0,
    make_entry,
    make_escrow,
    make_idempotency,
    make_operation,
    make_payee,
    usd,
)


def seed(store: SqlAlchemyStore, *ops: Any) -> None:
    with store.unit_of_work() as uow:
        uow.escrows.add(make_escrow())
        for op in ops:
            uow.operations.add(op)
        uow.commit()


def refused(store: SqlAlchemyStore, write: Any) -> StorageError:
    """Run `write(uow)` in a unit of work and return the StorageError it raised."""
    with store.unit_of_work() as uow, pytest.raises(StorageError) as caught:
        write(uow)
    return caught.value


class TestUniqueness:
    def test_gateway_ref_per_kind(self, store: SqlAlchemyStore) -> None:
        seed(store, make_operation("op_1", gateway_ref="tr_1"))
        error = refused(
            store, lambda uow: uow.operations.add(make_operation("op_2", gateway_ref="tr_1"))
        )
        assert error.details["constraint"] == "operations_kind_gateway_ref"
        assert error.retryable is False

    def test_ledger_kind_and_ref(self, store: SqlAlchemyStore) -> None:
        seed(store)
        with store.unit_of_work() as uow:
            uow.ledger.add(make_entry())
            uow.commit()
        error = refused(store, lambda uow: uow.ledger.add(make_entry()))
        assert error.details["constraint"] == "ledger_entries_kind_ref"
        assert error.retryable is False

    def test_escrow_and_operation_ids(self, store: SqlAlchemyStore) -> None:
        seed(store, make_operation())
        error = refused(store, lambda uow: uow.escrows.add(make_escrow()))
        assert error.details["constraint"] == "escrows_pkey"
        error = refused(store, lambda uow: uow.operations.add(make_operation()))
        assert error.details["constraint"] == "operations_pkey"

    def test_connected_account_belongs_to_one_payee(self, store: SqlAlchemyStore) -> None:
        with store.unit_of_work() as uow:
            uow.payees.save(make_payee("hunter_1", account_ref="acct_1"))
            uow.commit()
        error = refused(
            store, lambda uow: uow.payees.save(make_payee("hunter_2", account_ref="acct_1"))
        )
        assert error.details["constraint"] == "payees_account_ref"


class TestChecks:
    @pytest.mark.parametrize(
        ("changes", "constraint"),
        [
            ({"held": usd(-1), "reserved": usd(-1)}, "escrows_held_nonneg"),
            ({"reserved": usd(20_000)}, "escrows_reserved_le_held"),
            ({"funded": usd(-5)}, "escrows_funded_nonneg"),
        ],
    )
    def test_escrow_amounts(
        self, store: SqlAlchemyStore, changes: dict[str, Any], constraint: str
    ) -> None:
        seed(store)
        error = refused(store, lambda uow: uow.escrows.save(make_escrow(**changes)))
        assert error.details["constraint"] in (constraint, "escrows_reserved_nonneg")
        assert error.retryable is False
        with store.unit_of_work() as uow:
            assert uow.escrows.get("esc_1") == make_escrow()

    @pytest.mark.parametrize("field", ["gross", "fee", "net"])
    def test_operation_amounts(self, store: SqlAlchemyStore, field: str) -> None:
        seed(store)
        changes: dict[str, Any] = {field: usd(-1)}
        op = make_operation(**changes)
        error = refused(store, lambda uow: uow.operations.add(op))
        assert error.details["constraint"] == f"operations_{field}_nonneg"

    def test_operation_needs_its_escrow(self, store: SqlAlchemyStore) -> None:
        error = refused(store, lambda uow: uow.operations.add(make_operation(escrow_id="nope")))
        assert error.retryable is False


class TestRefusedValues:
    def test_naive_datetime(self, store: SqlAlchemyStore) -> None:
        naive = datetime(2025, 1, 1, 12, 0)
        error = refused(store, lambda uow: uow.escrows.add(make_escrow(created_at=naive)))
        assert "naive datetime" in str(error)
        assert error.retryable is False

    def test_amounts_in_two_currencies(self, store: SqlAlchemyStore) -> None:
        seed(store)
        op = make_operation(fee=Money(100, "eur"))
        error = refused(store, lambda uow: uow.operations.add(op))
        assert "one currency" in str(error)

    def test_rich_values_in_event_data_are_stored_as_plain_json(
        self, store: SqlAlchemyStore
    ) -> None:
        """Money, times, enums and sets in event data come back in a documented JSON form."""
        from bountyescrow.testing.contracts.store import make_event

        event = make_event(
            data={"amount": usd(500), "at": T0, "kind": OperationKind.REFUND, "ids": {"b", "a"}}
        )
        with store.unit_of_work() as uow:
            uow.events.add(event)
            uow.commit()
        with store.unit_of_work() as uow:
            (got,) = uow.events.after(0, limit=1)
        assert got.data == {
            "amount": {"amount": 500, "currency": "usd"},
            "at": T0.isoformat(),
            "kind": "refund",
            "ids": ["a", "b"],
        }


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _db_error(message: str, sqlstate: str | None = None, *, invalidated: bool = False) -> Any:
    return sa.exc.OperationalError(
        "UPDATE x", {}, _DriverError(message, sqlstate), connection_invalidated=invalidated
    )


class TestTranslation:
    @pytest.mark.parametrize(
        ("sqlstate", "reason"),
        [
            ("40001", "serialization failure"),
            ("40P01", "deadlock detected"),
            ("55P03", "lock not available"),
        ],
    )
    def test_transient_postgres_failures_are_retryable(self, sqlstate: str, reason: str) -> None:
        error = storage_error(_db_error("could not serialize", sqlstate))
        assert error.retryable is True
        assert error.details == {"transient": True, "sqlstate": sqlstate}
        assert reason in str(error)

    def test_sqlite_busy_is_retryable(self) -> None:
        error = storage_error(_db_error("database is locked"))
        assert error.retryable is True
        assert error.details["transient"] is True

    def test_pool_timeout_is_retryable(self) -> None:
        error = storage_error(sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10"))
        assert error.retryable is True

    def test_lost_connection_is_retryable_before_commit_only(self) -> None:
        before = storage_error(_db_error("server closed the connection", invalidated=True))
        during = storage_error(
            _db_error("server closed the connection", invalidated=True), committing=True
        )
        assert before.retryable is True
        assert before.details == {"transient": True, "disconnect": True}
        assert during.retryable is False
        assert during.details == {"disconnect": True, "outcome_unknown": True}
        assert "re-read" in str(during)

    def test_other_errors_are_not_retryable(self) -> None:
        error = storage_error(_db_error("syntax error at or near", "42601"))
        assert error.retryable is False
        assert error.details == {"sqlstate": "42601"}


class TestRunInTransaction:
    def test_a_retryable_failure_reruns_the_whole_unit_of_work(
        self, sqlite_store: SqlAlchemyStore
    ) -> None:
        attempts: list[int] = []

        def work(uow: UnitOfWork) -> str:
            attempts.append(1)
            uow.escrows.add(make_escrow(f"esc_{len(attempts)}"))
            if len(attempts) < 3:
                raise StorageError("deadlock detected", transient=True)
            return "done"

        assert sqlite_store.run_in_transaction(work, backoff=0.001) == "done"
        with sqlite_store.unit_of_work() as uow:
            assert uow.escrows.ids() == ["esc_3"]

    def test_a_permanent_failure_is_raised_at_once(self, sqlite_store: SqlAlchemyStore) -> None:
        attempts: list[int] = []

        def work(uow: UnitOfWork) -> None:
            attempts.append(1)
            uow.escrows.add(make_escrow())
            uow.escrows.add(make_escrow())

        with pytest.raises(StorageError, match="already exists"):
            sqlite_store.run_in_transaction(work)
        assert len(attempts) == 1

    def test_retries_are_bounded(self, sqlite_store: SqlAlchemyStore) -> None:
        def work(uow: UnitOfWork) -> None:
            raise StorageError("still locked")  # StorageError is retryable by default

        with pytest.raises(StorageError, match="still locked"):
            sqlite_store.run_in_transaction(work, attempts=2, backoff=0.001)


@pytest.mark.postgres
class TestPostgresRaces:
    def test_a_racing_duplicate_gateway_ref_is_refused_by_the_database(
        self, pg_store: SqlAlchemyStore
    ) -> None:
        """Two transactions record one gateway object at once: the unique index stops one."""
        seed(pg_store, make_operation("op_1"), make_operation("op_2"))
        first_wrote = threading.Event()
        release_first = threading.Event()
        outcome: dict[str, BaseException | None] = {}

        def first() -> None:
            try:
                with pg_store.unit_of_work() as uow:
                    uow.operations.save(make_operation("op_1", gateway_ref="tr_x"))
                    first_wrote.set()
                    release_first.wait(timeout=10)
                    uow.commit()
                outcome["first"] = None
            except BaseException as exc:
                outcome["first"] = exc

        thread = threading.Thread(target=first)
        thread.start()
        assert first_wrote.wait(timeout=10)
        timer = threading.Timer(0.3, release_first.set)
        timer.start()
        with pg_store.unit_of_work() as uow, pytest.raises(StorageError) as caught:
            # The pre-check cannot see the uncommitted row; the index waits, then refuses.
            uow.operations.save(make_operation("op_2", gateway_ref="tr_x"))
        thread.join(timeout=10)
        timer.cancel()
        assert outcome["first"] is None
        assert caught.value.details["constraint"] == "operations_kind_gateway_ref"
        assert caught.value.details["sqlstate"] == "23505"

    def test_a_deadlock_is_a_retryable_storage_error(self, pg_store: SqlAlchemyStore) -> None:
        with pg_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_a"))
            uow.escrows.add(make_escrow("esc_b"))
            uow.commit()
        both_locked_one = threading.Barrier(2)
        errors: list[StorageError] = []

        def lock(first: str, second: str) -> None:
            try:
                with pg_store.unit_of_work() as uow:
                    uow.escrows.get(first, for_update=True)
                    both_locked_one.wait(timeout=10)
                    uow.escrows.get(second, for_update=True)
                    uow.commit()
            except StorageError as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=lock, args=("esc_a", "esc_b")),
            threading.Thread(target=lock, args=("esc_b", "esc_a")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(errors) == 1
        assert errors[0].retryable is True
        assert errors[0].details["sqlstate"] == "40P01"
        assert errors[0].details["transient"] is True

    def test_lock_timeout_is_retryable(self, pg_store: SqlAlchemyStore) -> None:
        seed(pg_store)
        holder_locked = threading.Event()
        done = threading.Event()

        def hold() -> None:
            with pg_store.unit_of_work() as uow:
                uow.escrows.get("esc_1", for_update=True)
                holder_locked.set()
                done.wait(timeout=10)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert holder_locked.wait(timeout=10)
            with pg_store.unit_of_work() as uow:
                uow_any: Any = uow
                uow_any.run(sa.text("SET LOCAL lock_timeout = '100ms'"))
                with pytest.raises(StorageError) as caught:
                    uow.escrows.get("esc_1", for_update=True)
        finally:
            done.set()
            thread.join(timeout=10)
        assert caught.value.retryable is True
        assert caught.value.details["sqlstate"] == "55P03"


def test_idempotency_time_columns_keep_microseconds(store: SqlAlchemyStore) -> None:
    record = make_idempotency(expires_at=T0 + timedelta(microseconds=1))
    with store.unit_of_work() as uow:
        uow.idempotency.save(record)
        uow.commit()
    with store.unit_of_work() as uow:
        got = uow.idempotency.get(record.actor_id, record.key)
    assert got == record
    assert got is not None
    assert attrs.evolve(got).expires_at.microsecond == T0.microsecond + 1
