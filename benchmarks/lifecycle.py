"""Full escrow lifecycles per second: bountyescrow against the same writes done by hand.

One lifecycle is ``open_escrow`` -> payment -> ``payment_intent.succeeded`` -> ``release`` ->
``transfer.created``, through `EscrowService` on `SqlAlchemyStore` with the fake gateway
(`benchmarks._library`). The baseline does the same logical writes with plain psycopg or
sqlite3 and no library: same tables, rows, transactions and row locks (`benchmarks._baseline`).
Both run in the same process, on fresh copies of the same tables, in alternating rounds, on
SQLite and PostgreSQL, with 1 and 4 worker threads.

    python benchmarks/lifecycle.py                      # the whole table (make bench)
    python benchmarks/lifecycle.py --backends sqlite --workers 1 --lifecycles 50
    python benchmarks/lifecycle.py --json               # machine-readable, on stdout
    python benchmarks/lifecycle.py --explain            # the statements of one lifecycle
    python benchmarks/lifecycle.py --profile            # where the library's time goes

PostgreSQL comes from ``BOUNTYESCROW_BENCH_POSTGRES_URL`` (or the test suite's
``BOUNTYESCROW_TEST_POSTGRES_URL``; default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
when it cannot be reached the benchmark says so and runs SQLite only.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import json
import os
import platform
import pstats
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _db
from benchmarks._baseline import BaselineSide
from benchmarks._library import LibrarySide, LibraryWorker
from bountyescrow.testing import InMemoryStore

#: The issue's target: the library at least half as fast as the hand-written baseline.
TARGET_BACKEND = "postgres"
TARGET_RATIO = 0.5
BACKENDS = ("sqlite", "postgres")
#: Lifecycles per side and configuration: the whole default run stays under ~2 minutes on an
#: idle 2-core machine.
DEFAULT_LIFECYCLES = 120
DEFAULT_ROUNDS = 4
#: Untimed lifecycles per worker first (connections, SQLAlchemy's statement cache).
DEFAULT_WARMUP = 2


class Side(Protocol):
    """What the runner needs of the library side and of the baseline."""

    name: str
    tally: _db.Tally

    def lifecycle(self, worker: int, bounty_id: str) -> None: ...

    def close(self) -> None: ...


# --- results -------------------------------------------------------------------------------------


@dataclass
class SideResult:
    """What one side did in the timed rounds of one configuration."""

    lifecycles: int = 0
    seconds: float = 0.0
    #: CPU time of this process (all its threads) during the timed rounds: less sensitive to
    #: other load on the machine than wall time, and it excludes time spent waiting.
    cpu_seconds: float = 0.0
    statements: int = 0
    transactions: int = 0
    commits: int = 0
    checkouts: int = 0

    @property
    def per_second(self) -> float:
        return self.lifecycles / self.seconds if self.seconds else 0.0

    def per_lifecycle(self, count: float) -> float:
        return count / self.lifecycles if self.lifecycles else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lifecycles": self.lifecycles,
            "seconds": round(self.seconds, 4),
            "cpu_ms_per_lifecycle": round(self.per_lifecycle(self.cpu_seconds) * 1000, 2),
            "lifecycles_per_s": round(self.per_second, 2),
            "statements_per_lifecycle": round(self.per_lifecycle(self.statements), 2),
            "transactions_per_lifecycle": round(self.per_lifecycle(self.transactions), 2),
            "commits_per_lifecycle": round(self.per_lifecycle(self.commits), 2),
            "connection_checkouts_per_lifecycle": round(self.per_lifecycle(self.checkouts), 2),
        }


@dataclass
class Comparison:
    """One backend and worker count: the library, the baseline, and the rows they wrote."""

    backend: str
    workers: int
    library: SideResult
    baseline: SideResult
    #: Rows each side wrote per lifecycle, per table (equal on both sides when identical).
    rows_per_lifecycle: dict[str, float] = field(default_factory=dict)
    #: Empty when both sides wrote the same rows (ids and times masked).
    row_differences: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        base = self.baseline.per_second
        return self.library.per_second / base if base else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "lifecycles": self.library.lifecycles,
            "library_lifecycles_per_s": round(self.library.per_second, 2),
            "baseline_lifecycles_per_s": round(self.baseline.per_second, 2),
            "ratio": round(self.ratio, 4),
            "library_statements_per_lifecycle": round(
                self.library.per_lifecycle(self.library.statements), 2
            ),
            "baseline_statements_per_lifecycle": round(
                self.baseline.per_lifecycle(self.baseline.statements), 2
            ),
            "library_cpu_ms_per_lifecycle": round(
                self.library.per_lifecycle(self.library.cpu_seconds) * 1000, 2
            ),
            "baseline_cpu_ms_per_lifecycle": round(
                self.baseline.per_lifecycle(self.baseline.cpu_seconds) * 1000, 2
            ),
            "library_transactions_per_lifecycle": round(
                self.library.per_lifecycle(self.library.transactions), 2
            ),
            "baseline_transactions_per_lifecycle": round(
                self.baseline.per_lifecycle(self.baseline.transactions), 2
            ),
            "library_commits_per_lifecycle": round(
                self.library.per_lifecycle(self.library.commits), 2
            ),
            "baseline_commits_per_lifecycle": round(
                self.baseline.per_lifecycle(self.baseline.commits), 2
            ),
            "rows_identical": not self.row_differences,
            "rows_per_lifecycle": self.rows_per_lifecycle,
            "row_differences": self.row_differences,
            "library": self.library.as_dict(),
            "baseline": self.baseline.as_dict(),
        }


# --- running ------------------------------------------------------------------------------------


def split(total: int, workers: int) -> list[int]:
    """`total` lifecycles shared as evenly as possible between `workers`."""
    return [total // workers + (1 if k < total % workers else 0) for k in range(workers)]


def run_threads(side: Side, counts: Sequence[int], label: str) -> tuple[float, float]:
    """Run ``counts[k]`` lifecycles in worker thread k; return (wall, CPU) seconds of the run.

    The clock starts when every thread is ready and stops when the last one is done.
    """
    workers = len(counts)
    barrier = threading.Barrier(workers + 1)
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for i in range(counts[k]):
                side.lifecycle(k, f"bounty-{label}-{k}-{i}")
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(k,), name=f"{side.name}-{k}", daemon=True)
        for k in range(workers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"{side.name} worker failed: {failures[0]!r}") from failures[0]
    return elapsed, cpu


def compare(
    backend: str,
    workers: int,
    *,
    lifecycles: int,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    workdir: Path,
    engine_options: dict[str, Any] | None = None,
    progress: Any = None,
) -> Comparison:
    """Time the library and the baseline on fresh databases of `backend`.

    Each side first runs `warmup` untimed lifecycles per worker; then `rounds` alternating
    rounds (library first in even rounds, baseline first in odd ones) share `lifecycles`.
    Afterwards the rows both sides wrote are compared.
    """
    token = _db.new_token()
    lib_db = _db.create(backend, "lib", workdir=workdir, token=token)
    raw_db = _db.create(backend, "raw", workdir=workdir, token=token)
    sides: list[Side] = []
    try:
        library = LibrarySide(lib_db, workers, engine_options=engine_options or {})
        sides.append(library)
        baseline = BaselineSide(raw_db, workers)
        sides.append(baseline)
        before = {lib_db: _db.snapshot(lib_db), raw_db: _db.snapshot(raw_db)}
        for side in sides:
            run_threads(side, [warmup] * workers, "warm")
            side.tally.reset()
        results = {side.name: SideResult() for side in sides}
        per_round = [
            lifecycles // rounds + (1 if r < lifecycles % rounds else 0) for r in range(rounds)
        ]
        for r, count in enumerate(per_round):
            if count == 0:
                continue
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                seconds, cpu = run_threads(side, split(count, workers), f"r{r}")
                results[side.name].seconds += seconds
                results[side.name].cpu_seconds += cpu
                results[side.name].lifecycles += count
                if progress is not None:
                    progress(
                        f"  {backend} x{workers} round {r + 1}/{rounds}: {side.name:8} "
                        f"{count / seconds:8.1f} lifecycles/s"
                    )
        for side in sides:
            result = results[side.name]
            result.statements = side.tally.statements
            result.transactions = side.tally.transactions
            result.commits = side.tally.commits
            result.checkouts = side.tally.checkouts
        lib_rows = _db.written(_db.snapshot(lib_db), before[lib_db])
        raw_rows = _db.written(_db.snapshot(raw_db), before[raw_db])
        written = lifecycles + warmup * workers
        counts = _db.row_counts(lib_rows)
        return Comparison(
            backend=backend,
            workers=workers,
            library=results["library"],
            baseline=results["baseline"],
            rows_per_lifecycle={name: round(n / written, 2) for name, n in counts.items() if n},
            row_differences=_db.differences(lib_rows, raw_rows),
        )
    finally:
        for side in sides:
            side.close()
        _db.drop(lib_db)
        _db.drop(raw_db)


# --- --explain: the statements of one lifecycle --------------------------------------------------


def _compact(sql: str) -> str:
    """One line per statement, without schema names and long column lists."""
    text = " ".join(sql.split())
    text = re.sub(r'"?bench_[0-9a-f]{10}_(lib|raw)"?\.', "", text)
    text = re.sub(r"\bbench_(?=\w)", "", text)
    text = re.sub(r"^SELECT (?!pg_advisory)(.+?) FROM (\w+)", _select_columns, text)
    text = re.sub(
        r"^INSERT INTO (\w+) \(([^)]*)\) VALUES \(.*?\)(?= ON| RETURNING|$)",
        lambda m: f"INSERT INTO {m[1]} ({len(m[2].split(','))} columns)",
        text,
    )
    text = re.sub(r"^UPDATE (\w+) SET (.+?) WHERE", _update_columns, text)
    text = re.sub(r"\(SELECT (\w+)\.bounty_id FROM \w+ WHERE .*?\)", "(sub-select)", text)
    text = re.sub(r"\b(\w+)\.(?=\w|\")", "", text)  # table-qualified column names
    text = re.sub(r"DO UPDATE SET (.+)$", _upsert_columns, text)
    text = re.sub(r"%\((\w+?)(?:_\d+)?\)s(::[\w ]+?(?: COLLATE \"C\")?)?(?=[,) ]|$)", "?", text)
    return re.sub(r":\w+", "?", text)


def _select_columns(match: re.Match[str]) -> str:
    columns = match[1].split(",")
    shown = match[1] if len(columns) <= 3 else f"<{len(columns)} columns>"
    return f"SELECT {shown} FROM {match[2]}"


def _upsert_columns(match: re.Match[str]) -> str:
    return f"DO UPDATE SET <{len(match[1].split(','))} columns>"


def _update_columns(match: re.Match[str]) -> str:
    return f"UPDATE {match[1]} SET <{len(match[2].split(','))} columns> WHERE"


def transactions(log: Sequence[str]) -> list[list[str]]:
    """A tally log cut into transactions (each a list of compact statements)."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for entry in log:
        if entry == "BEGIN":
            current = []
        elif entry in ("COMMIT", "ROLLBACK"):
            found.append([*(current or []), entry])
            current = None
        elif current is not None:
            current.append(_compact(entry))
    return found


def explain(backend: str, *, workdir: Path, engine_options: dict[str, Any] | None = None) -> str:
    """The statements and commits of one lifecycle on each side, transaction by transaction."""
    token = _db.new_token()
    lib_db = _db.create(backend, "lib", workdir=workdir, token=token)
    raw_db = _db.create(backend, "raw", workdir=workdir, token=token)
    sides: list[Side] = []
    lines: list[str] = []
    try:
        sides.append(LibrarySide(lib_db, 1, engine_options=engine_options or {}))
        sides.append(BaselineSide(raw_db, 1))
        for side in sides:
            side.lifecycle(0, "bounty-warm-0-0")
            side.tally.log = []
            side.tally.reset()
            side.lifecycle(0, "bounty-explain-0-0")
            txs = transactions(side.tally.log)
            lines.append(
                f"== {backend}, {side.name}: {side.tally.statements} statements in "
                f"{side.tally.transactions} transactions ({side.tally.commits} committed), "
                f"{side.tally.checkouts} connection checkouts"
            )
            for n, statements in enumerate(txs, start=1):
                *body, end = statements
                lines.append(f"  T{n}: {len(body)} statements, then {end}")
                lines.extend(f"    {s}" for s in body)
            side.tally.log = None
    finally:
        for side in sides:
            side.close()
        _db.drop(lib_db)
        _db.drop(raw_db)
    return "\n".join(lines)


# --- --profile: where the library's time goes ---------------------------------------------------

_COMPONENTS = (
    ("database driver and server (sqlite3 / psycopg calls, incl. waiting)", ("sqlite3", "psycopg")),
    ("bountyescrow SQL adapter (_store, _mapping, _types)", ("bountyescrow/adapters/",)),
    ("bountyescrow service layer", ("bountyescrow/service/",)),
    (
        "bountyescrow domain (transitions, money, ledger)",
        ("bountyescrow/domain/", "bountyescrow/policy"),
    ),
    ("FakeGateway (test double, stands for Stripe)", ("bountyescrow/testing/",)),
    ("SQLAlchemy Core and engine", ("sqlalchemy/",)),
    ("attrs (evolve, generated __init__/__eq__)", ("attrs generated", "/attr/", "/attrs/")),
    ("pydantic", ("pydantic",)),
    ("json encoding/decoding", ("/json/", "_json")),
    ("threading and locks", ("threading", "lock")),
)


def _component(key: tuple[str, int, str]) -> str:
    where = f"{key[0]}:{key[2]}"
    for name, needles in _COMPONENTS:
        if any(needle in where for needle in needles):
            return name
    if key[0] == "~":
        return "other built-ins (isinstance, getattr, dict/str methods...)"
    return "other Python (stdlib: datetime, secrets, hashlib, uuid...)"


def profile(
    backend: str,
    *,
    lifecycles: int,
    workdir: Path,
    top: int = 25,
    engine_options: dict[str, Any] | None = None,
) -> str:
    """Profile the library side (1 worker) with cProfile; summarise by component and function.

    First, without the profiler, the CPU time per lifecycle on `backend` and on `InMemoryStore`
    (the service, domain and fake gateway with no SQL at all), which splits the library's cost
    between its SQL path and the rest without the profiler's distortion.
    """
    memory = LibraryWorker(InMemoryStore(), 0)
    for i in range(DEFAULT_WARMUP):
        memory.lifecycle(f"bounty-warm-0-{i}")
    cpu = time.process_time()
    for i in range(lifecycles):
        memory.lifecycle(f"bounty-memory-0-{i}")
    memory_ms = (time.process_time() - cpu) / lifecycles * 1000
    token = _db.new_token()
    db = _db.create(backend, "lib", workdir=workdir, token=token)
    side = None
    try:
        side = LibrarySide(db, 1, engine_options=engine_options or {})
        for i in range(DEFAULT_WARMUP):
            side.lifecycle(0, f"bounty-warm-0-{i}")
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(lifecycles):
            side.lifecycle(0, f"bounty-plain-0-{i}")
        plain_ms = (time.perf_counter() - started) / lifecycles * 1000
        sql_ms = (time.process_time() - cpu) / lifecycles * 1000
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for i in range(lifecycles):
            side.lifecycle(0, f"bounty-profile-0-{i}")
        profiler.disable()
        elapsed = time.perf_counter() - started
    finally:
        if side is not None:
            side.close()
        _db.drop(db)
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    by_component: dict[str, float] = {}
    for key, value in raw.items():
        name = _component(key)
        by_component[name] = by_component.get(name, 0.0) + value[2]
    lines = [
        f"== profile: library on {backend}, 1 worker, {lifecycles} lifecycles, "
        f"{elapsed:.2f} s under cProfile ({elapsed / lifecycles * 1000:.1f} ms per lifecycle; "
        "the profiler itself inflates Python-heavy code)",
        f"without the profiler: {plain_ms:.1f} ms per lifecycle, of which {sql_ms:.1f} ms CPU in "
        f"this process; on InMemoryStore the same lifecycle takes {memory_ms:.1f} ms CPU (service,"
        f" domain, fake gateway, no SQL), so the SQL path costs about {sql_ms - memory_ms:.1f} ms "
        "CPU per lifecycle",
        "",
        "Own time by component (under the profiler):",
    ]
    for name, seconds in sorted(by_component.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds / total:6.1%}  {seconds / lifecycles * 1000:7.2f} ms/lc  {name}")
    lines += ["", f"Top {top} functions by own time:"]
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for key, (_, calls, own, cumulative, _) in ranked:
        where = key[2] if key[0] == "~" else f"{_short(key[0])}:{key[1]}({key[2]})"
        lines.append(
            f"  {own / total:6.1%}  {calls / lifecycles:8.1f} calls/lc  "
            f"cum {cumulative / lifecycles * 1000:6.2f} ms/lc  {where}"
        )
    lines += ["", "Top 15 by cumulative time (bountyescrow functions):"]
    ours = [item for item in raw.items() if "bountyescrow" in item[0][0]]
    for key, (_, calls, _own, cumulative, _) in sorted(ours, key=lambda i: -i[1][3])[:15]:
        lines.append(
            f"  {cumulative / total:6.1%}  {calls / lifecycles:6.1f} calls/lc  "
            f"{_short(key[0])}:{key[1]}({key[2]})"
        )
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# --- the command line ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine and versions the numbers were measured on."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
    }


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render(report: dict[str, Any]) -> str:
    """The results as a text table, with the target verdict."""
    settings, info = report["settings"], report["machine"]
    lines = [
        "bountyescrow full lifecycles per second (open -> payment_intent.succeeded -> release "
        "-> transfer.created, FakeGateway)",
        f"{settings['lifecycles']} timed lifecycles per side and configuration in "
        f"{settings['rounds']} alternating rounds, after {settings['warmup']} warm-up lifecycles "
        "per worker; worker threads share one engine",
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), load {info['load_average_at_start']}"
        f", Python {info['python']}, SQLAlchemy {info['sqlalchemy']}, psycopg {info['psycopg']}, "
        f"SQLite {info['sqlite']}"
        + (f", PostgreSQL {info['postgres']}" if info.get("postgres") else ""),
        "",
        f"{'backend':9} {'workers':>7} {'library/s':>10} {'baseline/s':>11} {'ratio':>6}  "
        f"{'CPU ms/lc':>13}  {'statements/lc':>13}  {'transactions/lc':>15}  {'commits/lc':>10}"
        f"  {'rows':>4}",
        f"{'':9} {'':>7} {'':>10} {'':>11} {'':>6}  {'lib / base':>13}  {'lib / base':>13}  "
        f"{'lib / base':>15}  {'lib / base':>10}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['backend']:9} {r['workers']:>7} {r['library_lifecycles_per_s']:>10.1f} "
            f"{r['baseline_lifecycles_per_s']:>11.1f} {r['ratio']:>6.2f}  "
            + _pair(r, "cpu_ms", 13, 1)
            + "  "
            + _pair(r, "statements", 13, 1)
            + "  "
            + _pair(r, "transactions", 15, 1)
            + "  "
            + _pair(r, "commits", 10, 1)
            + f"  {'same' if r['rows_identical'] else 'DIFF':>4}"
        )
    for r in report["results"]:
        for problem in r["row_differences"]:
            lines.append(f"rows differ ({r['backend']} x{r['workers']}): {problem}")
    if report["results"]:
        rows = report["results"][0]["rows_per_lifecycle"]
        lines.append(
            "rows written per lifecycle (both sides): "
            + ", ".join(f"{name} {n:g}" for name, n in rows.items())
        )
    for backend, reason in report["skipped"].items():
        lines.append(f"{backend}: skipped ({reason})")
    target = [r for r in report["results"] if r["backend"] == TARGET_BACKEND]
    if target:
        worst = min(r["ratio"] for r in target)
        verdict = "meets" if worst >= TARGET_RATIO else "BELOW"
        lines.append(
            f"target: ratio >= {TARGET_RATIO} on PostgreSQL -> lowest measured "
            f"{worst:.2f}: {verdict} the target"
        )
    return "\n".join(lines)


def _pair(result: dict[str, Any], what: str, width: int, digits: int) -> str:
    library = result[f"library_{what}_per_lifecycle"]
    baseline = result[f"baseline_{what}_per_lifecycle"]
    return f"{library:.{digits}f} / {baseline:.{digits}f}".rjust(width)


def _csv(text: str, allowed: Sequence[str] | None = None) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(allowed)}")
    return items


def _workers(text: str) -> list[int]:
    try:
        values = [int(part) for part in _csv(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"workers must be integers, got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("workers must be positive integers, e.g. 1,4")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/lifecycle.py",
        description="Full escrow lifecycles per second: bountyescrow vs the same writes by hand.",
    )
    p.add_argument(
        "--lifecycles",
        type=int,
        default=DEFAULT_LIFECYCLES,
        help=f"timed lifecycles per side and configuration (default {DEFAULT_LIFECYCLES})",
    )
    p.add_argument(
        "--backends",
        type=lambda s: _csv(s, BACKENDS),
        default=list(BACKENDS),
        help="comma-separated: sqlite,postgres (default both)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=[1, 4],
        help="comma-separated worker thread counts (default 1,4)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"alternating library/baseline rounds (default {DEFAULT_ROUNDS})",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed lifecycles per worker first (default {DEFAULT_WARMUP})",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument(
        "--explain",
        action="store_true",
        help="print the statements of one lifecycle on each side, then exit",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the library side (first backend, 1 worker) with cProfile, then exit",
    )
    p.add_argument(
        "--no-pre-ping",
        action="store_true",
        help="create the library's engine with pool_pre_ping=False (default: the library's True)",
    )
    return p


def run(args: argparse.Namespace, *, err: Any = None) -> dict[str, Any]:
    """Run the comparisons `args` ask for and return the report (see `render`).

    Progress lines and the "PostgreSQL not reachable" notice go to `err` (default stderr).
    """
    err = err or sys.stderr
    backends: list[str] = list(args.backends)
    skipped: dict[str, str] = {}
    info = machine()
    if "postgres" in backends:
        problem = _db.postgres_problem(_db.postgres_url())
        if problem is not None:
            backends.remove("postgres")
            skipped["postgres"] = f"PostgreSQL not reachable at {_db.postgres_url()}: {problem}"
            print(f"{skipped['postgres']}; running SQLite only", file=err)
        else:
            info["postgres"] = _db.postgres_version(_db.postgres_url())
    engine_options: dict[str, Any] = {"pool_pre_ping": False} if args.no_pre_ping else {}
    report: dict[str, Any] = {
        "benchmark": "lifecycle",
        "lifecycle": "open_escrow -> pay -> payment_intent.succeeded -> release -> "
        "transfer.created",
        "settings": {
            "lifecycles": args.lifecycles,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "backends": backends,
            "workers": list(args.workers),
            "pool_pre_ping": not args.no_pre_ping,
            "idempotency_keys": True,
        },
        "machine": info,
        "target": {"backend": TARGET_BACKEND, "min_ratio": TARGET_RATIO},
        "results": [],
        "skipped": skipped,
    }
    with tempfile.TemporaryDirectory(prefix="bountyescrow-bench-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            for workers in args.workers:
                result = compare(
                    backend,
                    workers,
                    lifecycles=args.lifecycles,
                    rounds=max(1, args.rounds),
                    warmup=max(0, args.warmup),
                    workdir=workdir,
                    engine_options=engine_options,
                    progress=lambda line: print(line, file=err, flush=True),
                )
                report["results"].append(result.as_dict())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.lifecycles < 1:
        print("--lifecycles must be at least 1", file=sys.stderr)
        return 2
    if args.explain or args.profile:
        backends = list(args.backends)
        if "postgres" in backends and _db.postgres_problem(_db.postgres_url()) is not None:
            print("PostgreSQL not reachable; using SQLite only", file=sys.stderr)
            backends.remove("postgres")
        options: dict[str, Any] = {"pool_pre_ping": False} if args.no_pre_ping else {}
        with tempfile.TemporaryDirectory(prefix="bountyescrow-bench-") as tmp:
            for backend in backends if args.explain else backends[:1]:
                if args.explain:
                    print(explain(backend, workdir=Path(tmp), engine_options=options))
                else:
                    count = min(args.lifecycles, 200)
                    print(
                        profile(
                            backend, lifecycles=count, workdir=Path(tmp), engine_options=options
                        )
                    )
        return 0
    started = time.perf_counter()
    report = run(args)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        print(f"(whole run: {report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
