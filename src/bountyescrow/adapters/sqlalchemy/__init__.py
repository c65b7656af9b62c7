"""The SQL store: `SqlAlchemyStore` implements `EscrowStore` on PostgreSQL or SQLite.

SQLAlchemy 2 Core (the domain classes are not mapped), PostgreSQL through psycopg 3, SQLite as
the embedded default, Alembic migrations shipped inside the package. Needs the ``sqlalchemy``
extra (``pip install 'bountyescrow[sqlalchemy]'``; add ``postgres`` for psycopg).
"""

from __future__ import annotations

_INSTALL_HINT = "pip install 'bountyescrow[sqlalchemy]'"

try:
    import sqlalchemy
except ImportError as exc:
    raise ImportError(
        f"bountyescrow.adapters.sqlalchemy needs SQLAlchemy 2 and Alembic: {_INSTALL_HINT}"
    ) from exc

if int(sqlalchemy.__version__.split(".", 1)[0]) < 2:
    raise ImportError(
        f"bountyescrow.adapters.sqlalchemy needs SQLAlchemy 2 (found {sqlalchemy.__version__}): "
        f"{_INSTALL_HINT} --upgrade"
    )

from bountyescrow.adapters.sqlalchemy._commands import (  # noqa: E402
    alembic_include_object,
    current,
    prune,
    upgrade,
)
from bountyescrow.adapters.sqlalchemy._store import SqlAlchemyStore  # noqa: E402
from bountyescrow.adapters.sqlalchemy._tables import (  # noqa: E402
    DEFAULT_SCHEMA,
    HEAD,
    build_tables,
)

#: Our tables in their default PostgreSQL layout (schema ``bountyescrow``). A store's own
#: layout (another schema, or the SQLite prefix) is `SqlAlchemyStore.metadata`.
metadata = build_tables(schema=DEFAULT_SCHEMA, prefix="").metadata

__all__ = [
    "DEFAULT_SCHEMA",
    "HEAD",
    "SqlAlchemyStore",
    "alembic_include_object",
    "current",
    "metadata",
    "prune",
    "upgrade",
]
