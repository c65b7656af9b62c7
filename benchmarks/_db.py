"""The benchmark's databases: fresh schemas or files, raw connections, counting and row checks.

Both sides of a comparison get their own copy of the same tables, created by the library's
migrations (setup, not measured), so indexes, constraints and table sizes are identical:
PostgreSQL schemas ``bench_<random>_lib`` and ``bench_<random>_raw``, dropped afterwards; on
SQLite two files in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

#: Where the PostgreSQL server is (a SQLAlchemy URL; the test suite's variable works too).
URL_VARIABLES = ("BOUNTYESCROW_BENCH_POSTGRES_URL", "BOUNTYESCROW_TEST_POSTGRES_URL")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The store's schema on PostgreSQL; on SQLite the table-name prefix stem (``bench_escrows``).
SQLITE_SCHEMA = "bench"
TABLES = (
    "escrows",
    "operations",
    "disputes",
    "payees",
    "ledger_entries",
    "ledger_postings",
    "audit",
    "domain_events",
    "webhook_events",
    "idempotency_keys",
)
BUSY_TIMEOUT = 30.0
_BENCH_SCHEMA = re.compile(r"^bench_[0-9a-f]{10}_(lib|raw)$")


@dataclass(frozen=True)
class Database:
    """One side's database: a PostgreSQL schema, or a SQLite file."""

    backend: str  # "sqlite" or "postgres"
    #: The SQLAlchemy URL the library's store is built from.
    url: str
    #: The store's ``schema`` argument (the schema on PostgreSQL, the name prefix on SQLite).
    schema: str

    def table(self, name: str) -> str:
        """The SQL name of one of our tables in this database."""
        if self.backend == "postgres":
            return f'"{self.schema}".{name}'
        return f"{self.schema}_{name}"


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres_url() -> str:
    """The server's SQLAlchemy URL, from the environment or the default."""
    for variable in URL_VARIABLES:
        url = os.environ.get(variable)
        if url:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return DEFAULT_POSTGRES_URL


def conninfo(url: str) -> str:
    """The libpq connection string of a ``postgresql+psycopg://`` URL."""
    return "postgresql://" + url.split("://", 1)[1]


def postgres_problem(url: str) -> str | None:
    """Why the server cannot be used, or None when a connection works."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(conninfo(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"
    return None


def postgres_version(url: str) -> str:
    """The server's version string, such as ``15.20``."""
    import psycopg

    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


# --- creating and dropping ---------------------------------------------------------------------


def create(backend: str, side: str, *, workdir: Path, token: str) -> Database:
    """A fresh, migrated database for one side (``lib`` or ``raw``) of a comparison."""
    from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore

    if backend == "postgres":
        db = Database("postgres", postgres_url(), f"bench_{token}_{side}")
    else:
        path = workdir / f"{side}-{token}.db"
        db = Database("sqlite", f"sqlite:///{path}", SQLITE_SCHEMA)
    with SqlAlchemyStore(db.url, schema=db.schema) as store:
        store.migrate()
    return db


def new_token() -> str:
    """Ten random hex digits naming one comparison's schemas or files."""
    return secrets.token_hex(5)


def drop(db: Database) -> None:
    """Drop a PostgreSQL schema made by `create` (SQLite files go with their directory)."""
    if db.backend != "postgres":
        return
    if not _BENCH_SCHEMA.match(db.schema):
        raise ValueError(f"refusing to drop {db.schema!r}: not a benchmark schema")
    import psycopg

    with psycopg.connect(conninfo(db.url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE')


def connect(db: Database) -> Any:
    """A plain DB-API connection, set up like the library's own connections.

    SQLite: WAL, the same busy timeout, foreign keys on, and no implicit transactions (the
    caller sends ``BEGIN IMMEDIATE``, as the library does). PostgreSQL: READ COMMITTED (the
    server default, as the library sets it) with transactions begun implicitly by psycopg.
    """
    if db.backend == "postgres":
        import psycopg

        return psycopg.connect(conninfo(db.url), autocommit=False)
    path = db.url.removeprefix("sqlite:///")
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


# --- counting ------------------------------------------------------------------------------------


class Tally:
    """Statements, transactions, commits and connection checkouts, counted from several threads.

    ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` are not statements here: transactions (begins) and
    commits are counted on their own; a transaction that is not committed was rolled back
    (the library ends its read-only units of work that way). An ``executemany`` counts as one
    statement.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.transactions = 0
        self.commits = 0
        self.checkouts = 0
        #: When a list, every statement and transaction boundary is appended to it.
        self.log: list[str] | None = None

    def statement(self, sql: str) -> None:
        with self._lock:
            self.statements += 1
            if self.log is not None:
                self.log.append(sql)

    def begin(self) -> None:
        with self._lock:
            self.transactions += 1
            if self.log is not None:
                self.log.append("BEGIN")

    def rollback(self) -> None:
        if self.log is not None:
            with self._lock:
                self.log.append("ROLLBACK")

    def commit(self) -> None:
        with self._lock:
            self.commits += 1
            if self.log is not None:
                self.log.append("COMMIT")

    def checkout(self) -> None:
        with self._lock:
            self.checkouts += 1

    def reset(self) -> None:
        with self._lock:
            self.statements = self.transactions = self.commits = self.checkouts = 0
            if self.log is not None:
                self.log.clear()


# --- comparing the rows both sides wrote ---------------------------------------------------------

#: Gateway and library ids (``esc_...``, ``pi_w0...``) differ between the sides and runs.
_ID = re.compile(r"(?<![A-Za-z])(?:esc|op|pi|ch|tr|evt|acct|txn|py|req)_[A-Za-z0-9_-]+")
_TIME = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
#: Columns whose values are numbers or digests that differ per run by construction.
_UNCOMPARED = frozenset({"seq", "entry_seq", "fingerprint"})

Row = tuple[tuple[str, Any], ...]


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, str):
        if _TIME.match(value):
            return "<time>"
        if value[:1] in ("{", "["):
            try:
                return _normal(json.loads(value))
            except ValueError:
                pass
        return _ID.sub("<id>", value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _normal(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_normal(v) for v in value)
    if isinstance(value, bool):
        return int(value)
    return value


def snapshot(db: Database) -> dict[str, Counter[Row]]:
    """Every row of every table, with ids, times and sequence numbers masked.

    Two databases whose snapshots are equal hold the same rows up to those masked values:
    same tables, same number of rows, same amounts, statuses, JSON documents and NULLs.
    """
    conn = connect(db)
    try:
        result: dict[str, Counter[Row]] = {}
        for name in TABLES:
            cur = conn.cursor()
            cur.execute(f"SELECT * FROM {db.table(name)}")
            columns = [d[0] for d in cur.description]
            result[name] = Counter(
                tuple(
                    (column, _normal(value))
                    for column, value in zip(columns, row, strict=True)
                    if column not in _UNCOMPARED
                )
                for row in cur.fetchall()
            )
            cur.close()
        if db.backend == "postgres":
            conn.rollback()
        return result
    finally:
        conn.close()


def written(
    after: dict[str, Counter[Row]], before: dict[str, Counter[Row]]
) -> dict[str, Counter[Row]]:
    """The rows added between two snapshots (changed rows count as removed plus added)."""
    return {name: after[name] - before.get(name, Counter()) for name in after}


def differences(library: dict[str, Counter[Row]], baseline: dict[str, Counter[Row]]) -> list[str]:
    """Human-readable differences between the rows the two sides wrote (empty: identical)."""
    problems: list[str] = []
    for name in TABLES:
        ours, theirs = library.get(name, Counter()), baseline.get(name, Counter())
        if ours == theirs:
            continue
        lib_n, raw_n = sum(ours.values()), sum(theirs.values())
        if lib_n != raw_n:
            problems.append(f"{name}: library wrote {lib_n} rows, baseline {raw_n}")
            continue
        only_lib = next(iter(ours - theirs), None)
        only_raw = next(iter(theirs - ours), None)
        problems.append(f"{name}: rows differ, e.g. library {only_lib} vs baseline {only_raw}")
    return problems


def row_counts(rows: dict[str, Counter[Row]]) -> dict[str, int]:
    """Rows per table."""
    return {name: sum(rows.get(name, Counter()).values()) for name in TABLES}
