"""The one place where SQLAlchemy and driver errors become `bountyescrow.errors.StorageError`.

Contract (what the service layer may rely on):

- Every database failure surfaces as `StorageError`, raised ``from`` the original exception.
- ``retryable`` is True when redoing the *whole* unit of work may succeed and nothing was
  written: serialization failure (SQLSTATE 40001), deadlock (40P01), lock timeout (55P03),
  SQLite's "database is locked", an exhausted connection pool, and a lost connection before
  `commit()` was called. It is False for everything else, including a connection lost *during*
  commit (``details["outcome_unknown"]`` is then True: the commit may or may not have happened).
- ``details["transient"]`` is True exactly when ``retryable`` is (the service's retry loop
  reads it). ``details`` also carries ``sqlstate`` (PostgreSQL), ``constraint`` (the logical
  constraint name, such as ``operations_kind_gateway_ref``, without the SQLite table prefix)
  and ``disconnect`` when they apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy._tables import Tables
from bountyescrow.errors import StorageError

#: PostgreSQL SQLSTATEs after which the whole unit of work may simply be run again.
RETRYABLE_SQLSTATES = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "55P03": "lock not available",
}
_SQLITE_BUSY = ("database is locked", "database table is locked")
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")
_SQLITE_CHECK = re.compile(r"CHECK constraint failed: (\w+)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlstate(orig: BaseException) -> str | None:
    # psycopg 3 calls it `sqlstate`, psycopg2 `pgcode`.
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _sqlite_unique(tables: Tables, columns_text: str) -> str | None:
    # "UNIQUE constraint failed: bountyescrow_operations.kind, bountyescrow_operations.gateway_ref"
    pairs = [part.strip().rsplit(".", 1) for part in columns_text.split(",")]
    if not pairs or any(len(p) != 2 for p in pairs):
        return None
    table_names = {p[0] for p in pairs}
    columns = [p[1] for p in pairs]
    for table in tables.metadata.tables.values():
        if table.name not in table_names:
            continue
        candidates: list[tuple[str | None, list[str]]] = [
            (str(table.primary_key.name), [c.name for c in table.primary_key.columns])
        ]
        candidates += [
            (str(ix.name), [c.name for c in ix.columns]) for ix in table.indexes if ix.unique
        ]
        candidates += [
            (str(uc.name), [c.name for c in uc.columns])
            for uc in table.constraints
            if isinstance(uc, sa.UniqueConstraint)
        ]
        for name, cols in candidates:
            if name and cols == columns:
                return tables.logical_name(name)
    return None


def _constraint(orig: BaseException, tables: Tables | None) -> str | None:
    diag = getattr(orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str) and name:
        return tables.logical_name(name) if tables else name
    text = _first_line(orig)
    if tables is not None:
        unique = _SQLITE_UNIQUE.search(text)
        if unique:
            return _sqlite_unique(tables, unique.group(1))
        check = _SQLITE_CHECK.search(text)
        if check:
            return tables.logical_name(check.group(1))
    return None


def storage_error(
    exc: BaseException, *, tables: Tables | None = None, committing: bool = False
) -> StorageError:
    """Translate a SQLAlchemy or driver exception into a `StorageError` (not raised here)."""
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, BaseException):
        orig = exc
    sqlstate = _sqlstate(orig)
    text = _first_line(orig)
    disconnect = bool(getattr(exc, "connection_invalidated", False))
    constraint = _constraint(orig, tables)

    retryable = False
    reason = "database error"
    if sqlstate in RETRYABLE_SQLSTATES:
        retryable, reason = True, RETRYABLE_SQLSTATES[sqlstate]
    elif any(busy in text for busy in _SQLITE_BUSY):
        retryable, reason = True, "database is locked"
    elif isinstance(exc, sa.exc.TimeoutError):
        retryable, reason = True, "no database connection free in the pool"
    elif disconnect:
        retryable = not committing
        reason = "lost the database connection" + (" during commit" if committing else "")
    elif constraint is not None or isinstance(exc, sa.exc.IntegrityError):
        reason = f"constraint {constraint} violated" if constraint else "integrity violation"

    details: dict[str, object] = {}
    if retryable:
        details["transient"] = True
    if sqlstate:
        details["sqlstate"] = sqlstate
    if constraint:
        details["constraint"] = constraint
    if disconnect:
        details["disconnect"] = True
        if committing:
            details["outcome_unknown"] = True
    hint = (
        "; nothing was written, run the whole unit of work again"
        if retryable
        else "; the commit may or may not have happened: re-read before acting"
        if committing and disconnect
        else ""
    )
    error = StorageError(f"{reason}: {text}{hint}", **details)
    error.retryable = retryable
    return error


#: The constraint named when a guarded UPDATE found the operation's status changed meanwhile.
STATUS_GUARD = "operations_status_guard"


def stale(message: str, *, constraint: str) -> StorageError:
    """A write based on a copy another transaction changed since: rerun the unit of work."""
    error = StorageError(message, constraint=constraint, transient=True)
    error.retryable = True
    return error


def refused(message: str, *, constraint: str) -> StorageError:
    """A uniqueness refusal detected by the store itself (the transaction stays usable)."""
    error = StorageError(message, constraint=constraint)
    error.retryable = False
    return error


@contextmanager
def translating(
    tables: Tables | None,
    *,
    committing: bool = False,
    dbapi_error: type[BaseException] | None = None,
    on_error: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Run a block, re-raising database errors as `StorageError` (``raise ... from exc``)."""
    caught: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError,)
    if dbapi_error is not None:
        caught += (dbapi_error,)
    try:
        yield
    except caught as exc:
        if on_error is not None:
            on_error()
        raise storage_error(exc, tables=tables, committing=committing) from exc
