"""The lifecycle benchmark still runs, and its baseline still writes what the library writes.

Tiny runs on SQLite only; nothing here looks at timings.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from benchmarks import _db, lifecycle, statement_cost
from benchmarks._baseline import BaselineSide
from benchmarks._library import LibrarySide

RESULT_KEYS = {
    "backend",
    "workers",
    "lifecycles",
    "library_lifecycles_per_s",
    "baseline_lifecycles_per_s",
    "ratio",
    "library_statements_per_lifecycle",
    "baseline_statements_per_lifecycle",
    "library_transactions_per_lifecycle",
    "baseline_transactions_per_lifecycle",
    "library_commits_per_lifecycle",
    "baseline_commits_per_lifecycle",
    "rows_identical",
    "rows_per_lifecycle",
}


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    args = lifecycle.parser().parse_args(
        ["--backends", "sqlite", "--workers", "2", "--lifecycles", "2", "--rounds", "2"]
    )
    args.warmup = 1
    return lifecycle.run(args, err=io.StringIO())


class TestComparison:
    def test_both_sides_write_the_same_rows(self, report: dict[str, object]) -> None:
        """Same tables, same number of rows per table, same values once ids are masked."""
        results = report["results"]
        assert isinstance(results, list)
        assert [(r["backend"], r["workers"]) for r in results] == [("sqlite", 2)]
        for result in results:
            assert result["row_differences"] == []
            assert result["rows_identical"] is True
            assert result["rows_per_lifecycle"] == {
                "escrows": 1,
                "operations": 2,
                "ledger_entries": 2,
                "ledger_postings": 5,
                "audit": 5,
                "domain_events": 4,
                "webhook_events": 2,
                "idempotency_keys": 2,
            }

    def test_both_sides_run_the_same_transactions(self, report: dict[str, object]) -> None:
        results = report["results"]
        assert isinstance(results, list)
        for result in results:
            assert result["lifecycles"] == 2
            for what in ("transactions", "commits"):
                assert result[f"library_{what}_per_lifecycle"] > 0
                assert (
                    result[f"library_{what}_per_lifecycle"]
                    == result[f"baseline_{what}_per_lifecycle"]
                )
            assert result["library_statements_per_lifecycle"] > 0
            assert result["baseline_statements_per_lifecycle"] > 0

    def test_the_report_has_its_keys(self, report: dict[str, object]) -> None:
        assert {"settings", "machine", "target", "results", "skipped"} <= report.keys()
        results = report["results"]
        assert isinstance(results, list)
        for result in results:
            assert result.keys() >= RESULT_KEYS
            assert result["library"].keys() == result["baseline"].keys()
        json.dumps(report)

    def test_the_table_names_every_column(self, report: dict[str, object]) -> None:
        table = lifecycle.render(report)
        for heading in ("library/s", "baseline/s", "ratio", "statements/lc", "commits/lc"):
            assert heading in table
        assert table.count("\nsqlite ") == 1


class TestRowCheck:
    def test_a_missing_lifecycle_is_reported(self, tmp_path: Path) -> None:
        """The row comparison is not vacuous: one lifecycle more on one side shows up."""
        token = _db.new_token()
        lib_db = _db.create("sqlite", "lib", workdir=tmp_path, token=token)
        raw_db = _db.create("sqlite", "raw", workdir=tmp_path, token=token)
        library, baseline = LibrarySide(lib_db, 1, engine_options={}), BaselineSide(raw_db, 1)
        try:
            before = {"lib": _db.snapshot(lib_db), "raw": _db.snapshot(raw_db)}
            library.lifecycle(0, "bounty-a")
            baseline.lifecycle(0, "bounty-a")
            baseline.lifecycle(0, "bounty-b")
            lib_rows = _db.written(_db.snapshot(lib_db), before["lib"])
            raw_rows = _db.written(_db.snapshot(raw_db), before["raw"])
        finally:
            library.close()
            baseline.close()
        problems = _db.differences(lib_rows, raw_rows)
        assert "escrows: library wrote 1 rows, baseline 2" in problems
        assert "operations: library wrote 2 rows, baseline 4" in problems


def test_main_prints_json(
    report: dict[str, object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--json`` prints the report run() made (reused here rather than run again)."""
    monkeypatch.setattr(lifecycle, "run", lambda args: dict(report))
    assert lifecycle.main(["--backends", "sqlite", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0].keys() >= RESULT_KEYS
    assert out["wall_seconds"] >= 0


def test_explain_lists_each_transaction(tmp_path: Path) -> None:
    text = lifecycle.explain("sqlite", workdir=tmp_path)
    sides = re.findall(r"^== sqlite, (\w+): \d+ statements in (\d+) transactions", text, re.M)
    assert [side for side, _ in sides] == ["library", "baseline"]
    assert sides[0][1] == sides[1][1]
    assert text.count("  T1: ") == 2
    assert "INSERT INTO escrows (30 columns)" in text


def test_statement_cost_measures_each_way(tmp_path: Path) -> None:
    lines = statement_cost.measure("sqlite", 2, tmp_path)
    assert len(lines) == 5
    assert all(line.endswith(" us") for line in lines)
