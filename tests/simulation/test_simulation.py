"""The deterministic simulation, short: a few seeds in the normal suite (`make soak`: long).

Each run checks, after every step, `check_invariants()` and that nothing but a documented
error escaped; every few steps `books_agree(settled=False)`; and, periodically and at the end,
the oracle on a settled world. A failure prints the seed and the last steps to replay it with
``python -m tests.simulation --seed N --steps M``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip

from .world import Simulation

MEMORY_SEEDS = [101, 202, 303]
MEMORY_STEPS = 1_000


class TestSimulation:
    @pytest.mark.parametrize("seed", MEMORY_SEEDS)
    def test_a_seeded_run_in_memory_keeps_the_books_right(self, seed: int) -> None:
        outcome = Simulation(seed).run(MEMORY_STEPS)

        assert outcome.ok, outcome.report()
        assert outcome.steps == MEMORY_STEPS
        assert set(outcome.counts) == set(Simulation.ACTIONS)  # every action was drawn

    def test_a_seed_replays_the_same_run(self) -> None:
        first = Simulation(7).run(200)
        again = Simulation(7).run(200)

        assert first.trace == again.trace
        assert first.counts == again.counts

    def test_sqlite(self, tmp_path: Path) -> None:
        with SqlAlchemyStore(f"sqlite:///{tmp_path / 'sim.db'}") as store:
            store.migrate()
            outcome = Simulation(404, make_store=lambda: store, settle_every=100).run(200)

        assert outcome.ok, outcome.report()

    @pytest.mark.postgres
    def test_postgres(self, postgres_store: SqlAlchemyStore) -> None:
        outcome = Simulation(505, make_store=lambda: postgres_store, settle_every=100).run(100)

        assert outcome.ok, outcome.report()


@pytest.fixture
def postgres_store() -> Iterator[SqlAlchemyStore]:
    url = postgres_url_or_skip()
    with fresh_schema(url) as schema, SqlAlchemyStore(url, schema=schema) as store:
        store.migrate()
        yield store
