"""Random sequences of everything a marketplace, its users and Stripe can do.

Several escrows, payees and actors; every command, gateway behaviour and failure; outside
actors (Dashboard refunds and reversals, disputes opened and closed won or lost, inquiries,
fraud warnings, payouts); webhooks duplicated, reordered, delivered late or in part; gateway
calls that are slow while webhooks, `recover()` and clock jumps happen; crashes; `recover()`;
the clock jumping past Stripe's 24 h key window. After every step the money invariants hold
and no operation has moved money twice; at the end of every example, once every event is
delivered and `recover()` ran past every lease and backoff, the books agree with what really
moved at the gateway (`books_agree`, the money oracle).

The same world runs on every store: in memory, SQLite (a file) and PostgreSQL. The SQL runs
share one migrated database per test and empty its tables before each example; they run
fewer examples, as every step is a number of real transactions.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from bountyescrow import Actor, EscrowService, Money, OperationKind, OperationStatus, errors
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.domain.gateway_objects import GatewayEvent
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing import (
    FakeGateway,
    InMemoryStore,
    ManualClock,
    books_agree,
    during_next_call,
)
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from tests.keys import new_key

from .crashing import Crash, CrashingStore

POSTERS = [Actor("poster-a"), Actor("poster-b")]
ADMIN = Actor("admin", roles={"admin"})
PAYEES = ["hunter-x", "hunter-y", "hunter-z"]
TRANSFER_ERRORS = [
    "unavailable",
    "server_error",
    "timeout_after_effect",
    "invalid",
    "destination_not_ready",
]
REFUND_ERRORS = ["unavailable", "server_error", "timeout_after_effect", "invalid", "pending"]

amounts = st.integers(min_value=100, max_value=40_000)
maybe_amount = st.one_of(st.none(), st.integers(min_value=1, max_value=30_000))


class EscrowWorld(RuleBasedStateMachine):
    escrows = Bundle("escrows")

    @classmethod
    def make_store(cls) -> EscrowStore:
        """An empty store for one example; the per-store subclasses below override it."""
        return InMemoryStore()

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.fake = FakeGateway(webhook_secret="whsec_test", clock=self.clock)
        self.store = CrashingStore(self.make_store())
        self.service = EscrowService(
            self.store, self.fake, fee_bps=1000, namespace="sm", clock=self.clock
        )
        self.counter = 0
        self.late: list[GatewayEvent] = []

    def _try(self, call: object, *args: object, **kwargs: object) -> object:
        """Run a service call; documented errors and crashes are acceptable outcomes."""
        try:
            return call(*args, **kwargs)  # type: ignore[operator]
        except (errors.BountyEscrowError, Crash):
            return None

    def _ctl(self, call: object, *args: object, **kwargs: object) -> None:
        """Drive the fake; a control that does not apply to the object's state is skipped."""
        with contextlib.suppress(ValueError):
            call(*args, **kwargs)  # type: ignore[operator]

    @initialize()
    def payees(self) -> None:
        for i, payee_id in enumerate(PAYEES):
            payee = self.service.register_payee(payee_id, country="US")
            if i < 2:
                self.fake.complete_onboarding(payee.account_ref)
        self.fake.deliver(self.service)

    @rule(target=escrows, poster=st.sampled_from(POSTERS), amount=amounts)
    def open(self, poster: Actor, amount: int) -> str:
        self.counter += 1
        esc = self._try(
            self.service.open_escrow,
            bounty_id=f"b{self.counter}",
            poster_id=poster.id,
            amount=Money(amount, "usd"),
            actor=poster,
        )
        return esc.id if esc is not None else "missing"  # type: ignore[attr-defined]

    def _escrow(self, escrow_id: str):  # type: ignore[no-untyped-def]
        if escrow_id == "missing":
            return None
        return self.service.get(escrow_id)

    @rule(escrow_id=escrows, extra=st.sampled_from([0, 0, 0, 500]), twice=st.booleans())
    def pay(self, escrow_id: str, extra: int, twice: bool) -> None:
        esc = self._escrow(escrow_id)
        if esc is None or esc.payment_ref is None:
            return
        self._ctl(self.fake.pay, esc.payment_ref, amount=Money(esc.amount.amount + extra, "usd"))
        if twice:
            self._ctl(self.fake.pay_again, esc.payment_ref)

    @rule(escrow_id=escrows)
    def decline(self, escrow_id: str) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None and esc.payment_ref is not None:
            self._ctl(self.fake.decline, esc.payment_ref)

    @rule(escrow_id=escrows)
    def cancel(self, escrow_id: str) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None:
            poster = next(p for p in POSTERS if p.id == esc.poster_id)
            self._try(self.service.cancel, esc.id, actor=poster)

    @rule(
        escrow_id=escrows,
        payee=st.sampled_from(PAYEES),
        amount=maybe_amount,
        failure=st.one_of(st.none(), st.sampled_from(TRANSFER_ERRORS)),
        key=st.sampled_from([None, "k1", "k2"]),
    )
    def release(
        self, escrow_id: str, payee: str, amount: int | None, failure: str | None, key: str | None
    ) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        poster = next(p for p in POSTERS if p.id == esc.poster_id)
        if failure:
            self.fake.fail_next("transfer", error=failure)
        self._try(
            self.service.release,
            esc.id,
            payee_id=payee,
            amount=Money(amount, "usd") if amount else None,
            actor=poster,
            idempotency_key=f"{esc.id}:{key}" if key else new_key(),
        )

    @rule(
        escrow_id=escrows,
        amount=maybe_amount,
        failure=st.one_of(st.none(), st.sampled_from(REFUND_ERRORS)),
        reverse_releases=st.booleans(),
    )
    def refund(
        self, escrow_id: str, amount: int | None, failure: str | None, reverse_releases: bool
    ) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        if failure:
            self.fake.fail_next("refund", error=failure)
        self._try(
            self.service.refund,
            esc.id,
            amount=Money(amount, "usd") if amount else None,
            actor=ADMIN,
            reverse_releases=reverse_releases,
            idempotency_key=new_key(),
        )

    @rule(escrow_id=escrows, data=st.data())
    def reverse(self, escrow_id: str, data: st.DataObject) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        releases = [
            o
            for o in self.service.operations(esc.id)
            if o.kind is OperationKind.RELEASE and o.status is OperationStatus.SUCCEEDED
        ]
        if releases:
            op = data.draw(st.sampled_from(releases))
            self._try(self.service.reverse, esc.id, op.id, actor=ADMIN, idempotency_key=new_key())

    @rule(escrow_id=escrows, succeeded=st.booleans())
    def settle_a_pending_refund(self, escrow_id: str, succeeded: bool) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        for op in self.service.operations(esc.id):
            if op.kind is OperationKind.REFUND and op.gateway_ref and op.status.open:
                self._ctl(self.fake.settle_refund, op.gateway_ref, succeeded=succeeded)
                return

    @rule(escrow_id=escrows, won=st.booleans(), inquiry=st.booleans())
    def dispute(self, escrow_id: str, won: bool, inquiry: bool) -> None:
        esc = self._escrow(escrow_id)
        if esc is None or esc.payment_ref is None or not esc.funded:
            return
        self._ctl(self.fake.open_dispute, esc.payment_ref, inquiry=inquiry)
        self.fake.deliver(self.service, shuffle=True, seed=self.counter)
        self._ctl(self.fake.close_dispute, esc.payment_ref, won=won)

    @rule(escrow_id=escrows, amount=st.integers(min_value=1, max_value=5_000))
    def refund_outside(self, escrow_id: str, amount: int) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None and esc.payment_ref is not None and esc.funded:
            self._ctl(self.fake.refund_outside, esc.payment_ref, amount=Money(amount, "usd"))

    @rule()
    def onboard_the_last_payee(self) -> None:
        payee = self.service.get_payee(PAYEES[2])
        self._ctl(self.fake.complete_onboarding, payee.account_ref)

    @rule(duplicate=st.booleans(), shuffle=st.booleans(), seed=st.integers(0, 10))
    def deliver(self, duplicate: bool, shuffle: bool, seed: int) -> None:
        results = self.fake.deliver(
            self.service, duplicate=duplicate, shuffle=shuffle, seed=seed, raise_errors=False
        )
        for result in results:
            assert not isinstance(result, Exception) or isinstance(
                result, errors.BountyEscrowError
            ), result

    @rule(
        commit=st.integers(min_value=1, max_value=4),
        after=st.booleans(),
        escrow_id=escrows,
        amount=maybe_amount,
    )
    def crash_during_a_release(
        self, commit: int, after: bool, escrow_id: str, amount: int | None
    ) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        poster = next(p for p in POSTERS if p.id == esc.poster_id)
        self.store.arm(**{"after" if after else "before": commit})
        self._try(
            self.service.release,
            esc.id,
            payee_id=PAYEES[0],
            amount=Money(amount, "usd") if amount else None,
            actor=poster,
            idempotency_key=new_key(),
        )
        self.store.disarm()

    @rule(minutes=st.sampled_from([2, 30, 60 * 25]))
    def time_passes_and_recover_runs(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        self.service.recover()

    # --- outside actors ---------------------------------------------------------------------

    @rule(escrow_id=escrows, amount=st.one_of(st.none(), st.integers(1, 20_000)))
    def open_dispute(self, escrow_id: str, amount: int | None) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None and esc.payment_ref is not None:
            money = Money(amount, "usd") if amount else None
            self._ctl(self.fake.open_dispute, esc.payment_ref, money)

    @rule(escrow_id=escrows, won=st.booleans())
    def close_dispute(self, escrow_id: str, won: bool) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None and esc.payment_ref is not None:
            self._ctl(self.fake.close_dispute, esc.payment_ref, won=won)

    @rule(escrow_id=escrows)
    def fraud_warning(self, escrow_id: str) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None and esc.payment_ref is not None:
            self._ctl(self.fake.early_fraud_warning, esc.payment_ref)

    @rule(escrow_id=escrows)
    def clear_fraud_warning(self, escrow_id: str) -> None:
        esc = self._escrow(escrow_id)
        if esc is not None:
            self._try(self.service.clear_fraud_warning, esc.id, actor=ADMIN)

    @rule(escrow_id=escrows, data=st.data())
    def reverse_outside(self, escrow_id: str, data: st.DataObject) -> None:
        esc = self._escrow(escrow_id)
        if esc is None:
            return
        transfers = [
            o.gateway_ref
            for o in self.service.operations(esc.id)
            if o.kind is OperationKind.RELEASE and o.gateway_ref
        ]
        if transfers:
            ref = data.draw(st.sampled_from(transfers))
            amount = data.draw(st.one_of(st.none(), st.integers(1, 5_000)))
            self._ctl(self.fake.reverse_outside, ref, Money(amount, "usd") if amount else None)

    @rule(payee=st.sampled_from(PAYEES), amount=st.integers(1, 20_000))
    def payee_pays_out(self, payee: str, amount: int) -> None:
        """The payee's balance leaves for the bank: later reversals may find too little."""
        self._ctl(self.fake.payout, self.service.get_payee(payee).account_ref, Money(amount, "usd"))

    # --- webhooks: in part, late, lost for a while ---------------------------------------------

    @rule(data=st.data())
    def deliver_some_events(self, data: st.DataObject) -> None:
        """A permutation of the queued events, some of them only; the rest arrive later."""
        events = list(self.fake.pending_events)
        self.fake.drop_events()
        order = data.draw(st.permutations(events)) if events else []
        cut = data.draw(st.integers(0, len(order)))
        self._apply(order[:cut])
        self.late += order[cut:]

    @rule(duplicate=st.booleans())
    def deliver_late_events(self, duplicate: bool) -> None:
        late, self.late = self.late, []
        self._apply([e for e in late for _ in range(2 if duplicate else 1)])

    def _apply(self, events: list[GatewayEvent]) -> None:
        for event in events:
            try:
                self.service.apply_event(event)
            except errors.BountyEscrowError:
                self.late.append(event)  # answered 500: Stripe delivers it again

    # --- latency: a slow gateway call ------------------------------------------------------------

    @rule(
        escrow_id=escrows,
        kind=st.sampled_from(["transfer", "refund"]),
        when=st.sampled_from(["before", "after"]),
        meanwhile=st.sampled_from(
            [
                "deliver",
                "recover_past_lease",
                "recover_past_key_window",
                "refund_outside",
                "dispute",
                "cancel_waiting",
            ]
        ),
        failure=st.sampled_from([None, "timeout_after_effect"]),
    )
    def slow_gateway_call(
        self, escrow_id: str, kind: str, when: str, meanwhile: str, failure: str | None
    ) -> None:
        """While a transfer or refund is in flight, webhooks, recovery and time go on."""
        esc = self._escrow(escrow_id)
        if esc is None or not esc.funded or esc.payment_ref is None:
            return
        payment_ref = esc.payment_ref
        if meanwhile == "recover_past_key_window":
            when = "after"  # only an answer, never a request, is in flight for 23 h

        def act() -> None:
            if meanwhile == "deliver":
                self._apply(list(self.fake.pending_events))
                self.fake.drop_events()
            elif meanwhile.startswith("recover"):
                jump = timedelta(hours=23, minutes=30) if "key" in meanwhile else timedelta(hours=1)
                self.clock.advance(jump)
                self._try(self.service.recover)
            elif meanwhile == "refund_outside":
                self._ctl(self.fake.refund_outside, payment_ref, Money(1_000, "usd"))
            elif meanwhile == "dispute":
                self._ctl(self.fake.open_dispute, payment_ref)
            else:
                for op in self.service.operations(esc.id):
                    if op.status.open:
                        self._try(self.service.cancel_operation, op.id, actor=ADMIN)

        if failure:
            self.fake.fail_next(kind, error=failure)  # type: ignore[arg-type]
        during_next_call(self.fake, kind, act, when=when)  # type: ignore[arg-type]
        if kind == "transfer":
            poster = next(p for p in POSTERS if p.id == esc.poster_id)
            self._try(self.service.release, esc.id, payee_id=PAYEES[0], actor=poster,
                      idempotency_key=new_key())  # fmt: skip
        else:
            self._try(self.service.refund, esc.id, amount=Money(2_000, "usd"), actor=ADMIN,
                      idempotency_key=new_key())  # fmt: skip
        self.fake._call_hooks.clear()  # a call refused before it was sent leaves its hook

    # --- checks --------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Settle the world, then the books must agree with what moved at the gateway."""
        self.fake.hold_refunds(False)
        for _ in range(48):
            events, self.late = self.late + list(self.fake.pending_events), []
            self.fake.drop_events()
            self._apply(events)
            for movement in self.fake.movements:
                if movement.kind == "refund" and movement.status == "pending":
                    self.fake.settle_refund(movement.ref)
            self.clock.advance(timedelta(hours=2))
            report = self.service.recover(limit=1000)
            if report.claimed == 0 and not self.fake.pending_events and not self.late:
                break
        self._apply(list(self.fake.pending_events))
        self.fake.drop_events()
        assert self.service.check_invariants() == []
        assert books_agree(self.service, self.fake) == []

    @invariant()
    def money_invariants_hold(self) -> None:
        assert self.service.check_invariants() == []

    @invariant()
    def no_operation_moved_money_twice(self) -> None:
        per_op = Counter(m.operation_id for m in self.fake.movements if m.operation_id)
        assert all(n == 1 for n in per_op.values()), per_op

    @invariant()
    def books_never_show_money_the_gateway_lost(self) -> None:
        """In the middle of a run, only what can never be right is reported."""
        undelivered = bool(self.late or self.fake.pending_events)
        assert books_agree(self.service, self.fake, settled=False, undelivered=undelivered) == []


# --- one run per store ------------------------------------------------------------------------

MEMORY_SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None)
SQL_SETTINGS = settings(max_examples=15, stateful_step_count=30, deadline=None)


def emptied(store: SqlAlchemyStore) -> SqlAlchemyStore:
    """Delete every row of the store's tables (its migration version stays)."""
    tables = list(reversed(store.metadata.sorted_tables))
    with store.engine.begin() as conn:
        if store.backend == "postgresql":
            names = ", ".join(f'"{t.schema}"."{t.name}"' for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
        else:
            for table in tables:
                conn.execute(table.delete())
    return store


@pytest.fixture(scope="module")
def sqlite_world_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlAlchemyStore]:
    path: Path = tmp_path_factory.mktemp("state-machine") / "escrow.db"
    with SqlAlchemyStore(f"sqlite:///{path}") as store:
        store.migrate()
        yield store


@pytest.fixture(scope="module")
def postgres_world_store() -> Iterator[SqlAlchemyStore]:
    url = postgres_url_or_skip()
    with fresh_schema(url) as schema, SqlAlchemyStore(url, schema=schema) as store:
        store.migrate()
        yield store


def _world_on(name: str, make_store: Callable[[], EscrowStore]) -> type[EscrowWorld]:
    """`EscrowWorld` with every example on a store `make_store` hands out empty."""

    class World(EscrowWorld):
        @classmethod
        def make_store(cls) -> EscrowStore:
            return make_store()

    World.__name__ = World.__qualname__ = f"EscrowWorldOn{name.title()}"
    return World


@pytest.mark.parametrize(
    "backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_random_histories_keep_the_money_invariants(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memory":
        run_state_machine_as_test(EscrowWorld, settings=MEMORY_SETTINGS)
        return
    store: SqlAlchemyStore = request.getfixturevalue(f"{backend}_world_store")
    run_state_machine_as_test(_world_on(backend, lambda: emptied(store)), settings=SQL_SETTINGS)
