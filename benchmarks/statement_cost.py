"""What one statement costs through SQLAlchemy, built per call or prebuilt, and raw.

Profiling the lifecycle benchmark found that `SqlAlchemyStore` spent most of its time building
a new statement for every call (``insert(t).values(row)``, ``select(t).where(t.c.id == value)``):
SQLAlchemy coerced every value into a bound parameter and computed a cache key over the whole
statement each time. The store now builds its statements once (`_statements.Statements`) and
runs them with a parameter dictionary. This measures both ways, with the store's own prebuilt
statements, and the same SELECT through the raw driver (the hand-written baseline's way).

    python benchmarks/statement_cost.py [--backends sqlite,postgres] [-n 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from benchmarks import _db
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore


def _escrow_row(escrow_id: str, now: datetime) -> dict[str, Any]:
    amounts = ("funded", "held", "reserved", "released", "refunded", "fees")
    return {
        "id": escrow_id,
        "bounty_id": "bounty",
        "poster_id": "poster",
        "request_id": None,
        "currency": "usd",
        "amount": 25_000,
        **dict.fromkeys(amounts, 0),
        "dispute_withdrawn": 0,
        "shortfall": 0,
        "fee_bps": 1_000,
        "fee_fixed": None,
        "fee_fixed_currency": None,
        "transfer_group": f"escrow_{escrow_id}",
        "payment_ref": None,
        "charge_ref": None,
        "payment_status": None,
        "last_payment_error": None,
        "cancelled": False,
        "fixed_fee_charged": False,
        "open_disputes": [],
        "fraud_warning": False,
        "status": "awaiting_funding",
        "created_at": now,
        "funded_at": None,
        "version": 0,
    }


def _time(n: int, fn: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - started) / n * 1e6


def measure(backend: str, n: int, workdir: Path) -> list[str]:
    """Microseconds per statement each way; two passes, the second one is reported."""
    db = _db.create(backend, "lib", workdir=workdir, token=_db.new_token())
    store = SqlAlchemyStore(db.url, schema=db.schema)
    raw = _db.connect(db)
    try:
        results: dict[str, float] = {}
        for attempt in (1, 2):
            results = _one_pass(backend, store, db, raw, n, f"{attempt}-{time.time_ns()}")
    finally:
        raw.close()
        store.dispose()
        _db.drop(db)
    return [f"{backend:8}  {label:50} {us:7.0f} us" for label, us in results.items()]


def _one_pass(
    backend: str, store: SqlAlchemyStore, db: _db.Database, raw: Any, n: int, tag: str
) -> dict[str, float]:
    t = store.tables.escrows
    insert = postgresql.insert if backend == "postgres" else sqlite.insert
    now = datetime.now(UTC)
    prebuilt_insert = store._statements.add_escrow
    prebuilt_select = store._statements.escrow
    placeholder = "%(id)s" if backend == "postgres" else ":id"
    raw_select = f"SELECT * FROM {db.table('escrows')} WHERE id = {placeholder}"
    raw_cur = raw.cursor()

    def insert_built(i: int) -> object:
        row = _escrow_row(f"a{tag}-{i}", now)
        return conn.execute(
            insert(t).values(row).on_conflict_do_nothing().returning(t.c.id)
        ).first()

    def insert_prebuilt(i: int) -> object:
        return conn.execute(prebuilt_insert, _escrow_row(f"b{tag}-{i}", now)).first()

    def select_built(i: int) -> object:
        return conn.execute(sa.select(t).where(t.c.id == f"a{tag}-{i}")).first()

    def select_prebuilt(i: int) -> object:
        return conn.execute(prebuilt_select, {"id": f"a{tag}-{i}"}).first()

    def select_raw(i: int) -> object:
        raw_cur.execute(raw_select, {"id": f"a{tag}-{i}"})
        return raw_cur.fetchone()

    with store.engine.connect() as conn:
        conn.begin()
        results = {
            "INSERT escrows (30 columns), built per call": _time(n, insert_built),
            "INSERT escrows, prebuilt (the store) + parameters": _time(n, insert_prebuilt),
            "SELECT escrow by id, built per call": _time(n, select_built),
            "SELECT escrow by id, prebuilt (the store) + params": _time(n, select_prebuilt),
        }
        conn.rollback()
    results["SELECT escrow by id, raw driver (no SQLAlchemy)"] = _time(n, select_raw)
    raw.rollback()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/statement_cost.py", description=__doc__)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("-n", type=int, default=1000, help="statements per measurement")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "postgres" in backends and _db.postgres_problem(_db.postgres_url()) is not None:
        print("PostgreSQL not reachable; SQLite only", file=sys.stderr)
        backends.remove("postgres")
    with tempfile.TemporaryDirectory(prefix="bountyescrow-bench-") as tmp:
        for backend in backends:
            print("\n".join(measure(backend, args.n, Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
