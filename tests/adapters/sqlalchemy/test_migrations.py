"""Migrations: shipped in the package, idempotent, concurrent-safe, apart from the host's."""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bountyescrow.adapters.sqlalchemy import (
    HEAD,
    SqlAlchemyStore,
    alembic_include_object,
    current,
    metadata,
    upgrade,
)
from bountyescrow.adapters.sqlalchemy._migrate import MIGRATIONS_DIR
from bountyescrow.domain.escrow import EscrowStatus
from bountyescrow.domain.operation import OperationKind, OperationStatus
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.testing.contracts.store import make_escrow


def table_names(store: SqlAlchemyStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names(schema=store.tables.schema))


def schema_differences(store: SqlAlchemyStore) -> list[Any]:
    """What Alembic autogenerate would change to make the database match our metadata."""
    tables = store.tables

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return type_ != "schema" or name == tables.schema

    def include_object(obj: object, name: str | None, type_: str, *args: object) -> bool:
        return not (type_ == "table" and name == tables.version_table)

    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": tables.schema is not None,
                "include_name": include_name,
                "include_object": include_object,
                "compare_type": True,
                # SQLite does not reflect identity columns; PostgreSQL does.
                "compare_server_default": store.backend == "postgresql",
            },
        )
        diffs: list[Any] = compare_metadata(context, tables.metadata)
        conn.rollback()
    if store.backend == "sqlite":
        # SQLite cannot reflect identity columns (they are AUTOINCREMENT rowids there).
        diffs = [d for d in diffs if not _identity_default_change(d)]
    return diffs


def _identity_default_change(diff: Any) -> bool:
    changes = diff if isinstance(diff, list) else [diff]
    return all(
        isinstance(c, tuple) and c[0] == "modify_default" and isinstance(c[-1], sa.Identity)
        for c in changes
    )


class TestMigrate:
    def test_migrated_schema_matches_the_table_definitions(self, store: SqlAlchemyStore) -> None:
        """The frozen 0001 migration creates exactly what `_tables.py` describes."""
        assert schema_differences(store) == []

    def test_migrating_again_is_a_no_op(self, store: SqlAlchemyStore) -> None:
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.commit()
        before = table_names(store)
        store.migrate()
        store.migrate()
        assert table_names(store) == before
        assert store.current_revision() == HEAD
        with store.unit_of_work() as uow:
            assert uow.escrows.get("esc_1") == make_escrow()

    def test_current_revision_is_none_before_and_head_after(self, sqlite_url: str) -> None:
        with SqlAlchemyStore(sqlite_url) as store:
            assert store.current_revision() is None
            store.migrate()
            assert store.current_revision() == HEAD

    def test_our_version_table_leaves_the_hosts_alone(self, sqlite_url: str) -> None:
        """A host's own Alembic history in `alembic_version` is neither read nor changed."""
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
            conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('host_rev_42')")
        try:
            with SqlAlchemyStore(sqlite_url) as store:
                assert store.current_revision() is None
                store.migrate()
                assert store.tables.version_table == "bountyescrow_alembic_version"
                assert "bountyescrow_alembic_version" in table_names(store)
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            assert [r[0] for r in rows] == ["host_rev_42"]
        finally:
            engine.dispose()


class TestCommands:
    def test_upgrade_and_current_on_sqlite(self, sqlite_url: str) -> None:
        assert current(sqlite_url) is None
        assert upgrade(sqlite_url) == HEAD
        assert upgrade(sqlite_url) == HEAD
        assert current(sqlite_url) == HEAD

    @pytest.mark.postgres
    def test_upgrade_and_current_on_postgres(self, pg_url: str, pg_schema: str) -> None:
        assert current(pg_url, schema=pg_schema) is None
        assert upgrade(pg_url, schema=pg_schema) == HEAD
        assert current(pg_url, schema=pg_schema) == HEAD


@pytest.mark.postgres
class TestPostgresMigrations:
    def test_migrate_creates_the_schema_with_our_version_table(
        self, pg_url: str, pg_schema: str
    ) -> None:
        engine = sa.create_engine(pg_url)
        try:
            with engine.connect() as conn:
                assert pg_schema not in sa.inspect(conn).get_schema_names()
            with SqlAlchemyStore(pg_url, schema=pg_schema) as store:
                store.migrate()
                names = table_names(store)
            assert "bountyescrow_alembic_version" in names
            assert "alembic_version" not in names
            assert {"escrows", "operations", "ledger_entries", "domain_events"} <= names
        finally:
            engine.dispose()

    def test_four_processes_migrating_at_once_are_safe(self, pg_url: str, pg_schema: str) -> None:
        """Concurrent upgrades queue on the advisory lock; the later ones find the work done."""
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with SqlAlchemyStore(pg_url, schema=pg_schema) as store:
                    start.wait(timeout=10)
                    store.migrate()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        with SqlAlchemyStore(pg_url, schema=pg_schema) as store:
            assert store.current_revision() == HEAD
            assert schema_differences(store) == []
            with store.engine.connect() as conn:
                versions = conn.execute(
                    sa.text(f'SELECT version_num FROM "{pg_schema}".bountyescrow_alembic_version')
                ).all()
            assert [v[0] for v in versions] == [HEAD]


def _load_initial_migration() -> ModuleType:
    path = MIGRATIONS_DIR / "versions" / "0001_initial.py"
    spec = importlib.util.spec_from_file_location("bountyescrow_migration_0001", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestShippedMigrations:
    def test_migrations_live_inside_the_package(self) -> None:
        package = Path(__file__).resolve().parents[3] / "src" / "bountyescrow"
        assert MIGRATIONS_DIR.is_relative_to(package) or "site-packages" in str(MIGRATIONS_DIR)
        assert (MIGRATIONS_DIR / "env.py").is_file()
        assert (MIGRATIONS_DIR / "script.py.mako").is_file()
        assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()

    def test_frozen_status_lists_match_the_domain(self) -> None:
        """A new status or kind in the domain needs a migration that widens the CHECK."""
        migration = _load_initial_migration()
        assert set(migration.ESCROW_STATUSES) == {s.value for s in EscrowStatus}
        assert set(migration.OPERATION_KINDS) == {k.value for k in OperationKind}
        assert set(migration.OPERATION_STATUSES) == {s.value for s in OperationStatus}
        assert set(migration.WEBHOOK_STATUSES) == {s.value for s in WebhookStatus}


class TestHostAlembic:
    def test_include_object_skips_our_tables_in_either_layout(
        self, sqlite_store: SqlAlchemyStore
    ) -> None:
        for table in [*metadata.tables.values(), *sqlite_store.metadata.tables.values()]:
            assert not alembic_include_object(table, table.name, "table", False, None)
            for index in table.indexes:
                assert not alembic_include_object(index, index.name, "index", False, None)
        version = sa.Table("bountyescrow_alembic_version", sa.MetaData())
        assert not alembic_include_object(version, version.name, "table", True, None)

    def test_include_object_keeps_the_hosts_tables(self) -> None:
        host = sa.MetaData()
        for name in ("escrows", "users", "bountyescrow_notes", "alembic_version"):
            table = sa.Table(name, host, sa.Column("id", sa.Integer, primary_key=True))
            assert alembic_include_object(table, name, "table", False, None)
        column = host.tables["escrows"].c.id
        assert alembic_include_object(column, "id", "column", False, None)

    def test_include_object_for_another_schema(self) -> None:
        ours = functools.partial(alembic_include_object, schema="payments")
        table = sa.Table("escrows", sa.MetaData(schema="payments"))
        prefixed = sa.Table("payments_ledger_entries", sa.MetaData())
        assert not ours(table, "escrows", "table", False, None)
        assert not ours(prefixed, prefixed.name, "table", False, None)
        assert alembic_include_object(table, "escrows", "table", False, None)
