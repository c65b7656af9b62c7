"""Running the Alembic migrations shipped in ``migrations/`` against a store's database.

Our migrations keep their own version table (``bountyescrow_alembic_version``, inside our
schema on PostgreSQL), so a host's Alembic history in ``alembic_version`` is never touched.
The whole upgrade is one transaction; on PostgreSQL it first takes a transaction-scoped
advisory lock, so processes starting at once upgrade one after the other (the later ones find
the work done), and creates the schema if it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy._engine import advisory_key
from bountyescrow.adapters.sqlalchemy._errors import translating
from bountyescrow.errors import ConfigurationError

if TYPE_CHECKING:
    from bountyescrow.adapters.sqlalchemy._store import SqlAlchemyStore

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_INSTALL_HINT = "pip install 'bountyescrow[sqlalchemy]'"


def _alembic() -> Any:
    try:
        from alembic import command, config
        from alembic.runtime import migration
    except ImportError as exc:
        raise ConfigurationError(f"migrations need Alembic: {_INSTALL_HINT}") from exc
    return command, config, migration


def alembic_config(store: SqlAlchemyStore, connection: sa.Connection) -> Any:
    """An Alembic `Config` for our migrations on `connection` (no ini file involved)."""
    _, config, _ = _alembic()
    cfg = config.Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    cfg.attributes["bountyescrow_tables"] = store.tables
    return cfg


def _set_wal(store: SqlAlchemyStore) -> None:
    # WAL is a property of the database file, set outside any transaction. Engines the store
    # creates set it on connect; a host's engine gets it here, once.
    with store.engine.connect() as conn:
        dbapi_connection: Any = conn.connection.dbapi_connection
        if not dbapi_connection.in_transaction:
            dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchall()


def upgrade_engine(store: SqlAlchemyStore, revision: str = "head") -> None:
    """Upgrade the store's tables to `revision` (default: the newest)."""
    command, _, _ = _alembic()
    tables = store.tables
    with translating(tables):
        if store.backend == "sqlite" and not store._prepared.memory:
            _set_wal(store)
        with store.engine.begin() as conn:
            if store.backend == "postgresql":
                key = advisory_key(store.schema, "migrate")
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                # The name passed check_schema_name: a plain lower-case identifier.
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
            command.upgrade(alembic_config(store, conn), revision)


def current_revision(store: SqlAlchemyStore) -> str | None:
    """The revision recorded in our version table, or None if none was applied."""
    _, _, migration = _alembic()
    tables = store.tables
    with translating(tables), store.engine.connect() as conn:
        context = migration.MigrationContext.configure(
            conn,
            opts={"version_table": tables.version_table, "version_table_schema": tables.schema},
        )
        revision: str | None = context.get_current_revision()
        conn.rollback()
        return revision
