"""Alembic environment for bountyescrow's own migrations.

Run through `SqlAlchemyStore.migrate()` or ``bountyescrow db upgrade --url URL``, which pass
the connection (already inside a transaction, under the migration lock) and the store's table
layout. The version table is ``bountyescrow_alembic_version`` (in our schema on PostgreSQL),
never the host's ``alembic_version``.
"""

from __future__ import annotations

from alembic import context

from bountyescrow.adapters.sqlalchemy._tables import Tables

config = context.config
connection = config.attributes.get("connection")
tables = config.attributes.get("bountyescrow_tables")
if connection is None or not isinstance(tables, Tables):
    raise RuntimeError(
        "bountyescrow's migrations run through SqlAlchemyStore.migrate() or "
        "`bountyescrow db upgrade --url URL`, not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=tables.metadata,
    version_table=tables.version_table,
    version_table_schema=tables.schema,
    # SQLite runs DDL inside our BEGIN IMMEDIATE transaction too.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations(schema=tables.schema, prefix=tables.prefix)
