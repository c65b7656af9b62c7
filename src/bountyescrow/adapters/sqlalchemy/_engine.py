"""Engines: how a URL or a host's `Engine` becomes the engine our units of work use.

PostgreSQL runs at READ COMMITTED (row locks do the rest). SQLite follows SQLAlchemy's
documented pysqlite recipe ("Serializable isolation / Savepoints / Transactional DDL"): the
driver's own implicit BEGIN is switched off on connect, and our ``begin`` hook emits
``BEGIN IMMEDIATE``, so every unit of work takes the write lock up front (no lock upgrades, no
deadlocks between writers) and waits up to the busy timeout for it.

A host's own engine is never reconfigured: we work through ``engine.execution_options()``, a
view sharing its pool whose event hooks only fire for our connections.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from bountyescrow.errors import ConfigurationError

_POSTGRES_HINT = "pip install 'bountyescrow[postgres]'"


@attrs.frozen
class PreparedEngine:
    """The engine our units of work use, and what kind of database is behind it."""

    engine: Engine
    #: "postgresql" or "sqlite".
    backend: str
    #: True when the store created the engine (and so disposes of it).
    owned: bool
    #: True for an in-memory SQLite database: one shared connection, units of work in turn.
    memory: bool


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from the given names."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def normalise_url(url: str | URL) -> URL:
    """Parse a URL; bare ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    return database.startswith("file:") and (
        "mode=memory" in database or url.query.get("mode") == "memory"
    )


def _backend(dialect_name: str) -> str:
    if dialect_name not in ("postgresql", "sqlite"):
        raise ConfigurationError(
            f"SqlAlchemyStore supports PostgreSQL and SQLite, not {dialect_name!r}: use a "
            "postgresql+psycopg:// or sqlite:/// URL"
        )
    return dialect_name


def _install_sqlite_recipe(engine: Engine, *, busy_timeout: float) -> None:
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Stop pysqlite from emitting BEGIN (and COMMIT before DDL) on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _install_sqlite_begin(engine: Engine, *, busy_timeout: float) -> None:
    # For a host's engine: its connections keep their own settings; only our transactions
    # start with BEGIN IMMEDIATE. pysqlite does not emit a BEGIN of its own inside a
    # transaction that is already open, so its legacy mode needs no switching off here.
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={timeout_ms}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(
    url: str | URL, *, busy_timeout: float, options: Mapping[str, Any] | None = None
) -> PreparedEngine:
    """Create and configure an engine of our own for `url`."""
    parsed = normalise_url(url)
    backend = _backend(parsed.get_backend_name())
    kwargs: dict[str, Any] = dict(options or {})
    memory = False
    if backend == "sqlite":
        memory = _is_memory(parsed)
        if memory:
            # One connection shared by every thread, so all of them see the same database;
            # the store runs units of work one at a time on it.
            kwargs.setdefault("poolclass", StaticPool)
            connect_args = dict(kwargs.pop("connect_args", {}))
            connect_args.setdefault("check_same_thread", False)
            kwargs["connect_args"] = connect_args
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except ImportError as exc:
        hint = _POSTGRES_HINT if backend == "postgresql" else "install the database driver"
        raise ConfigurationError(
            f"the driver for {parsed.drivername} is not installed: {hint}"
        ) from exc
    if backend == "sqlite":
        _install_sqlite_recipe(engine, busy_timeout=busy_timeout)
    return PreparedEngine(engine=engine, backend=backend, owned=True, memory=memory)


def adopt_engine(engine: Engine, *, busy_timeout: float) -> PreparedEngine:
    """Wrap a host's engine without changing how the host's own connections behave."""
    backend = _backend(engine.dialect.name)
    if backend == "postgresql":
        ours = engine.execution_options(isolation_level="READ COMMITTED")
        return PreparedEngine(engine=ours, backend=backend, owned=False, memory=False)
    ours = engine.execution_options()
    _install_sqlite_begin(ours, busy_timeout=busy_timeout)
    return PreparedEngine(engine=ours, backend=backend, owned=False, memory=_is_memory(engine.url))
