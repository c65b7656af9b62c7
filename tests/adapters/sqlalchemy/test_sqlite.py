"""SQLite: table prefix, WAL, BEGIN IMMEDIATE, busy timeout, memory databases, host engines."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.errors import StorageError
from bountyescrow.testing.contracts.store import make_escrow, make_operation


def _path(url: str) -> str:
    return url.removeprefix("sqlite:///")


class TestPrefix:
    def test_prefix_keeps_our_tables_apart_from_a_host_table_of_the_same_name(
        self, sqlite_url: str
    ) -> None:
        """The host's own `escrows` table is neither used nor changed."""
        host = sqlite3.connect(_path(sqlite_url))
        host.execute("CREATE TABLE escrows (id TEXT PRIMARY KEY, title TEXT)")
        host.execute("INSERT INTO escrows VALUES ('host-1', 'the host row')")
        host.commit()
        try:
            with SqlAlchemyStore(sqlite_url) as store:
                store.migrate()
                with store.unit_of_work() as uow:
                    uow.escrows.add(make_escrow())
                    uow.commit()
                with store.unit_of_work() as uow:
                    assert uow.escrows.ids() == ["esc_1"]
                assert store.tables.escrows.name == "bountyescrow_escrows"
            assert host.execute("SELECT * FROM escrows").fetchall() == [("host-1", "the host row")]
            ours = host.execute("SELECT id FROM bountyescrow_escrows").fetchall()
            assert ours == [("esc_1",)]
        finally:
            host.close()

    def test_the_schema_setting_names_the_prefix(self, sqlite_url: str) -> None:
        with SqlAlchemyStore(sqlite_url, schema="market") as store:
            store.migrate()
            with store.engine.connect() as conn:
                names = set(sa.inspect(conn).get_table_names())
        assert "market_escrows" in names
        assert "market_alembic_version" in names
        assert not any(name.startswith("bountyescrow_") for name in names)

    def test_a_schema_that_is_not_a_plain_identifier_is_refused(self, sqlite_url: str) -> None:
        with pytest.raises(ValueError, match="lower-case identifier"):
            SqlAlchemyStore(sqlite_url, schema='x"; DROP TABLE users; --')


class TestConnectionSettings:
    def test_wal_foreign_keys_and_busy_timeout(self, sqlite_store: SqlAlchemyStore) -> None:
        with sqlite_store.engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert journal == "wal"
        assert foreign_keys == 1
        assert busy == 30_000

    def test_a_unit_of_work_takes_the_write_lock_when_it_begins(
        self, sqlite_store: SqlAlchemyStore, sqlite_url: str
    ) -> None:
        """BEGIN IMMEDIATE: another writer is locked out before our first statement."""
        other = sqlite3.connect(_path(sqlite_url), timeout=0.05, isolation_level=None)
        try:
            with (
                sqlite_store.unit_of_work(),
                pytest.raises(sqlite3.OperationalError, match="locked"),
            ):
                other.execute("BEGIN IMMEDIATE")
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()

    def test_a_busy_database_gives_a_retryable_storage_error(
        self, sqlite_store: SqlAlchemyStore, sqlite_url: str
    ) -> None:
        other = sqlite3.connect(_path(sqlite_url), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with (
                SqlAlchemyStore(sqlite_url, busy_timeout=0.1) as impatient,
                pytest.raises(StorageError) as caught,
                impatient.unit_of_work(),
            ):
                pass  # pragma: no cover - entering fails
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert caught.value.retryable is True
        assert caught.value.details["transient"] is True
        assert "locked" in str(caught.value)

    def test_foreign_keys_are_enforced(self, sqlite_store: SqlAlchemyStore) -> None:
        with sqlite_store.unit_of_work() as uow, pytest.raises(StorageError):
            uow.operations.add(make_operation(escrow_id="missing"))

    def test_writers_in_many_threads_take_turns(self, sqlite_store: SqlAlchemyStore) -> None:
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                for j in range(5):
                    with sqlite_store.unit_of_work() as uow:
                        uow.escrows.add(make_escrow(f"esc_{i}_{j}"))
                        uow.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        with sqlite_store.unit_of_work() as uow:
            assert len(uow.escrows.ids()) == 30


class TestMemoryDatabase:
    def test_every_thread_sees_the_same_memory_database(self) -> None:
        with SqlAlchemyStore("sqlite://") as store:
            store.migrate()

            def write() -> None:
                with store.unit_of_work() as uow:
                    uow.escrows.add(make_escrow())
                    uow.commit()

            thread = threading.Thread(target=write)
            thread.start()
            thread.join(timeout=10)
            with store.unit_of_work() as uow:
                assert uow.escrows.ids() == ["esc_1"]


class TestUnitOfWorkUse:
    def test_nested_units_of_work_are_refused(self, sqlite_store: SqlAlchemyStore) -> None:
        """A second unit of work in the same thread would wait for the first: say so at once."""
        with sqlite_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            with pytest.raises(StorageError, match="must not be nested"):
                sqlite_store.unit_of_work().__enter__()
            uow.commit()
        with sqlite_store.unit_of_work() as uow:
            assert uow.escrows.ids() == ["esc_1"]

    def test_writes_after_commit_need_another_commit(self, sqlite_store: SqlAlchemyStore) -> None:
        with sqlite_store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_1"))
            uow.commit()
            uow.escrows.add(make_escrow("esc_2"))
        with sqlite_store.unit_of_work() as uow:
            assert uow.escrows.ids() == ["esc_1"]

    def test_a_repository_outside_its_with_block_is_refused(
        self, sqlite_store: SqlAlchemyStore
    ) -> None:
        uow = sqlite_store.unit_of_work()
        with pytest.raises(StorageError, match="with block"):
            uow.escrows.get("esc_1")
        with pytest.raises(StorageError, match="with block"):
            uow.commit()


class TestHostEngine:
    def test_a_host_engine_is_used_and_left_as_it_was(self, tmp_path: Path) -> None:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'host.db'}")
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            store = SqlAlchemyStore(engine)
            store.migrate()
            with store.unit_of_work() as uow:
                uow.escrows.add(make_escrow())
                uow.commit()
            store.dispose()  # not ours to dispose: the host's engine keeps working
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO notes (body) VALUES ('still mine')")
                dbapi_connection = conn.connection.dbapi_connection
                assert dbapi_connection is not None
                assert dbapi_connection.isolation_level == ""  # pysqlite's default, untouched
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM notes").scalar() == 1
                count = conn.exec_driver_sql("SELECT count(*) FROM bountyescrow_escrows")
                assert count.scalar() == 1
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            engine.dispose()

    def test_a_host_engine_unit_of_work_still_takes_the_write_lock(self, tmp_path: Path) -> None:
        path = tmp_path / "host.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            store = SqlAlchemyStore(engine)
            store.migrate()
            with (
                store.unit_of_work(),
                pytest.raises(sqlite3.OperationalError, match="locked"),
            ):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
            engine.dispose()
