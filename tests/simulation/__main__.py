"""The soak run: ``python -m tests.simulation`` (``make soak``).

Runs the deterministic simulation (`tests.simulation.world`) for several seeds and prints, per
seed and in total, the steps, steps per second and violations. Exits 1 on any violation,
after printing the seed and the last steps before it, so the run can be replayed:

    PYTHONHASHSEED=0 python -m tests.simulation --seed 17 --steps 2000

(``make soak`` fixes ``PYTHONHASHSEED`` so set iteration orders replay too.)

Options: ``--seeds N`` (how many seeds, from ``--first-seed``), ``--steps`` (per seed),
``--seed`` (one seed only), ``--store memory|sqlite|postgres``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from bountyescrow.ports.store import EscrowStore
from tests.simulation.world import Outcome, Simulation, memory_store


@contextmanager
def store_factory(kind: str) -> Iterator[Callable[[], EscrowStore]]:
    """Hand out an empty store per seed: in memory, or a fresh SQLite file / Postgres schema."""
    if kind == "memory":
        yield memory_store
        return
    from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url

    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        made: list[int] = []

        def make() -> EscrowStore:
            made.append(1)
            if kind == "sqlite":
                store = SqlAlchemyStore(f"sqlite:///{directory}/sim-{len(made)}.db")
            else:
                url = postgres_url()
                schema = stack.enter_context(fresh_schema(url))
                store = SqlAlchemyStore(url, schema=schema)
            stack.enter_context(store)
            store.migrate()
            return store

        yield make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--steps", type=int, default=1000, help="steps per seed (default 1000)")
    parser.add_argument("--store", choices=["memory", "sqlite", "postgres"], default="memory")
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a violation")
    args = parser.parse_args(argv)
    # The library logs every alert and outside change it adopts; thousands of them would
    # drown the report. The oracle, not the log, decides whether a run is right.
    logging.disable(logging.CRITICAL)

    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.first_seed, args.first_seed + args.seeds))
    )
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with store_factory(args.store) as make_store:
        for seed in seeds:
            outcome = Simulation(seed, make_store=make_store).run(args.steps)
            outcomes.append(outcome)
            rate = outcome.steps / outcome.seconds if outcome.seconds else 0.0
            print(
                f"seed {seed:>4}: {outcome.steps:>6} steps, {rate:7.0f} steps/s, "
                f"{len(outcome.violations)} violation(s)",
                flush=True,
            )
            if not outcome.ok:
                print(outcome.report(), flush=True)
                if not args.keep_going:
                    break
    elapsed = time.perf_counter() - started
    moved: Counter[str] = Counter()
    for outcome in outcomes:
        moved.update(outcome.moved)
    print("at the gateway: " + ", ".join(f"{n} {what}" for what, n in sorted(moved.items())))
    steps = sum(o.steps for o in outcomes)
    violations = sum(len(o.violations) for o in outcomes)
    failed = [o.seed for o in outcomes if not o.ok]
    print(
        f"total: {steps} steps over {len(outcomes)} seed(s) on {args.store} in {elapsed:.1f} s "
        f"({steps / elapsed:.0f} steps/s), {violations} violation(s)"
        + (f", failing seeds {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
