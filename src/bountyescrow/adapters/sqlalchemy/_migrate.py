"""Running the Alembic migrations shipped in ``migrations/`` against a store's database.

Our migrations keep their own version table (``bountyescrow_alembic_version``, inside our
schema on PostgreSQL), so a host's Alembic history in ``alembic_version`` is never touched.
The whole upgrade is one transaction; on PostgreSQL it first takes a transaction-scoped
advisory lock, so processes starting at once upgrade one after the other (the later ones find
the work done), and creates the schema if it is missing.

The functions take the engine and the tables, not the store: `SqlAlchemyStore` imports this
module, so nothing here may import the store back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bountyescrow.adapters.sqlalchemy._engine import PreparedEngine, advisory_key
from bountyescrow.adapters.sqlalchemy._errors import translating
from bountyescrow.adapters.sqlalchemy._tables import Tables
from bountyescrow.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_INSTALL_HINT = "pip install 'bountyescrow[sqlalchemy]'"


def _alembic() -> Any:
    try:
        from alembic import command, config
        from alembic.runtime import migration
    except ImportError as exc:
        raise ConfigurationError(f"migrations need Alembic: {_INSTALL_HINT}") from exc
    return command, config, migration


def alembic_config(tables: Tables, connection: sa.Connection) -> Any:
    """An Alembic `Config` for our migrations on `connection` (no ini file involved)."""
    _, config, _ = _alembic()
    cfg = config.Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    cfg.attributes["bountyescrow_tables"] = tables
    return cfg


def _set_wal(engine: Engine) -> None:
    # WAL is a property of the database file, set outside any transaction. Engines the store
    # creates set it on connect; a host's engine gets it here, once.
    with engine.connect() as conn:
        dbapi_connection: Any = conn.connection.dbapi_connection
        if not dbapi_connection.in_transaction:
            dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchall()


def upgrade_engine(
    prepared: PreparedEngine, tables: Tables, *, schema: str, revision: str = "head"
) -> None:
    """Upgrade `tables` on `prepared`'s database to `revision` (default: the newest).

    `schema` is the store's ``schema`` setting: on PostgreSQL the schema created and locked.
    """
    command, _, _ = _alembic()
    with translating(tables):
        if prepared.backend == "sqlite" and not prepared.memory:
            _set_wal(prepared.engine)
        with prepared.engine.begin() as conn:
            if prepared.backend == "postgresql":
                key = advisory_key(schema, "migrate")
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                # The name passed check_schema_name: a plain lower-case identifier.
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            command.upgrade(alembic_config(tables, conn), revision)


def current_revision(engine: Engine, tables: Tables) -> str | None:
    """The revision recorded in the version table of `tables`, or None if none was applied."""
    _, _, migration = _alembic()
    with translating(tables), engine.connect() as conn:
        context = migration.MigrationContext.configure(
            conn,
            opts={"version_table": tables.version_table, "version_table_schema": tables.schema},
        )
        revision: str | None = context.get_current_revision()
        conn.rollback()
        return revision
