"""A deterministic simulation of a marketplace, its users, Stripe and time, checked by the oracle.

One `Simulation` is one world: a service over a (crash-injecting) store, one `FakeGateway`, a
`ManualClock`, several posters, payees and many escrows. Each step draws one action from a
`random.Random(seed)`: every command of the service (open, cancel, release full or partial,
refund with or without ``reverse_releases``, reverse, cancel_operation, register and onboard
payees, retries with the same idempotency key), gateway failures (`FakeGateway.fail_next`),
gateway latency (`during_next_call`: webhooks, `recover()`, other commands and clock jumps
past the lease, the backoffs and the 23 h key window while a call is in flight), outside
actors (Dashboard refunds and reversals, disputes won and lost, inquiries, fraud warnings,
payouts, refunds that fail late), webhooks duplicated, reordered and delivered late, crashes
before and after a commit, `recover()` and clock jumps.

After every step `check_invariants()` must be empty and no call may raise anything but a
documented `BountyEscrowError`; every few steps `books_agree(settled=False)` must be empty; and
periodically and at the end the world is *settled* (every event delivered, pending refunds
decided, `recover()` run past every lease and backoff) and `books_agree()` must be empty.

The same seed replays the same run: ``python -m tests.simulation --seed N --steps M``.
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from bountyescrow import (
    Actor,
    EscrowService,
    EscrowSettings,
    FeeSchedule,
    Money,
    OperationKind,
    OperationStatus,
    errors,
)
from bountyescrow.domain.gateway_objects import META_OPERATION, GatewayEvent
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing import (
    FakeControlError,
    FakeGateway,
    InMemoryStore,
    ManualClock,
    books_agree,
    during_next_call,
)
from bountyescrow.webhooks import WebhookDispatcher
from tests.service.crashing import Crash, CrashingStore

ADMIN = Actor("admin", roles={"admin"})
POSTERS = [Actor(f"poster-{n}") for n in range(4)]
#: Most seeds run in dollars; some in a three-decimal currency (amounts Stripe moves are
#: multiples of 10) or a zero-decimal one.
CURRENCIES = ["usd", "usd", "usd", "eur", "kwd", "jpy"]

TRANSFER_FAILURES = [
    "unavailable",
    "server_error",
    "timeout_after_effect",
    "declined",
    "invalid",
    "destination_not_ready",
    "insufficient_balance",
    "idempotency_mismatch",
]
REFUND_FAILURES = [
    "unavailable",
    "server_error",
    "timeout_after_effect",
    "declined",
    "invalid",
    "insufficient_balance",
    "pending",
    "idempotency_mismatch",
]
REVERSAL_FAILURES = [
    "unavailable",
    "server_error",
    "timeout_after_effect",
    "invalid",
    "insufficient_balance",
]
PAYMENT_FAILURES = ["unavailable", "server_error", "timeout_after_effect", "invalid"]

#: How often (in steps) the run is checked with `books_agree(settled=False)`.
LIGHT_CHECK_EVERY = 10
#: How often (in steps) the world is settled and checked with `books_agree()`.
SETTLE_EVERY = 250


def memory_store() -> EscrowStore:
    return InMemoryStore()


@attrs.define
class Violation:
    """Something the harness caught: which check, at which step, with what message."""

    step: int
    check: str
    message: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.check}: {self.message}"


@attrs.define
class Outcome:
    """How a run ended."""

    seed: int
    steps: int
    seconds: float
    violations: list[Violation]
    trace: list[str]
    counts: dict[str, int]
    #: What the run made happen at the gateway: escrows, transfers, refunds, reversals...
    moved: dict[str, int] = attrs.Factory(dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        """The seed, the first violations and the last steps before the first one."""
        lines = [f"seed {self.seed}: {len(self.violations)} violation(s) in {self.steps} steps"]
        lines += [f"  {v}" for v in self.violations[:10]]
        lines.append(f"last steps (replay: PYTHONHASHSEED=0 python -m tests.simulation "
                     f"--seed {self.seed} --steps {self.steps}):")  # fmt: skip
        lines += [f"  {t}" for t in self.trace]
        return "\n".join(lines)


class Simulation:
    """One seeded world; `run(steps)` drives it and returns the `Outcome`."""

    def __init__(
        self,
        seed: int,
        *,
        make_store: Callable[[], EscrowStore] = memory_store,
        trace_length: int = 40,
        settle_every: int = SETTLE_EVERY,
        stop_at_first: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = ManualClock()
        self.fake = FakeGateway(webhook_secret="whsec_sim", clock=self.clock)
        self.store = CrashingStore(make_store())
        self.currency = self.rng.choice(CURRENCIES)
        fixed = Money(self.rng.choice([0, 0, 50, 300]), self.currency)
        self.service = EscrowService(
            self.store,
            self.fake,
            fees=FeeSchedule(self.rng.choice([0, 500, 1000, 1250]), fixed if fixed else None),
            namespace="sim",
            clock=self.clock,
            settings=EscrowSettings(settlement_currencies=frozenset({self.currency})),
        )
        self.lease: timedelta = getattr(self.service, "lease", timedelta(seconds=60))
        self.dispatcher = WebhookDispatcher(self.service, secrets=["whsec_sim"])
        self.settle_every = settle_every
        self.stop_at_first = stop_at_first
        self.step_no = 0
        self.trace: deque[str] = deque(maxlen=trace_length)
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self.escrows: list[str] = []
        self.payees: list[str] = []
        self.late: list[GatewayEvent] = []
        self.keys: list[tuple[str, str, dict[str, Any]]] = []  # (action, key, kwargs)
        #: Keys whose first call returned an operation, and when.
        self.answered: dict[str, datetime] = {}
        self.bounties = 0

    # --- running --------------------------------------------------------------------------

    def run(self, steps: int) -> Outcome:
        with _deterministic_ids(self.seed):
            return self._run(steps)

    def _run(self, steps: int) -> Outcome:
        started = time.perf_counter()
        self._setup()
        for _ in range(steps):
            self.step_no += 1
            self.step()
            if self.violations and self.stop_at_first:
                break
            if self.step_no % self.settle_every == 0:
                self.settle_and_check()
            elif self.step_no % LIGHT_CHECK_EVERY == 0:
                self._check_books(settled=False)
            if self.violations and self.stop_at_first:
                break
        if not (self.violations and self.stop_at_first):
            self.settle_and_check()
        return Outcome(
            seed=self.seed,
            steps=self.step_no,
            seconds=time.perf_counter() - started,
            violations=self.violations,
            trace=list(self.trace),
            counts=dict(sorted(self.counts.items())),
            moved=self._moved(),
        )

    def _moved(self) -> dict[str, int]:
        moved = {"escrows": len(self.escrows), "currency " + self.currency: 1}
        for movement in self.fake.movements:
            key = f"{movement.kind}s" + ("" if movement.operation_id else " outside")
            moved[key] = moved.get(key, 0) + 1
        return moved

    def _setup(self) -> None:
        for n in range(5):
            self._register(f"hunter-{n}", onboard=n < 3)
        self._deliver_all()

    def step(self) -> None:
        actions = self.ACTIONS
        name = self.rng.choices(list(actions), weights=list(actions.values()))[0]
        self.counts[name] = self.counts.get(name, 0) + 1
        try:
            getattr(self, f"do_{name}")()
        except Crash:
            self.store.disarm()
            self._log("  -> crash")
        except errors.BountyEscrowError as exc:
            self._log(f"  -> {type(exc).__name__}")
        except FakeControlError:
            self._log("  -> (control did not apply)")
        except Exception as exc:
            self._violation("undocumented error", _describe(exc))
        finally:
            self.store.disarm()
        problems = self.service.check_invariants()
        if problems:
            self._violation("check_invariants", "; ".join(problems[:5]))

    #: Action name -> weight.
    ACTIONS: ClassVar[dict[str, int]] = {
        "open": 8,
        "pay": 8,
        "decline": 1,
        "cancel": 2,
        "release": 12,
        "refund": 6,
        "refund_reversing": 2,
        "reverse": 4,
        "cancel_operation": 3,
        "retry_same_key": 4,
        "register": 1,
        "onboard": 3,
        "restrict": 1,
        "in_flight": 8,
        "refund_outside": 2,
        "reverse_outside": 2,
        "dispute": 2,
        "close_dispute": 2,
        "fraud_warning": 1,
        "clear_fraud_warning": 1,
        "payout": 2,
        "settle_refund": 2,
        "hold_refunds": 1,
        "deliver": 10,
        "deliver_some": 6,
        "deliver_late": 3,
        "lose_events": 2,
        "deliver_signed": 4,
        "crash": 4,
        "recover": 5,
        "time_passes": 4,
    }

    # --- helpers ------------------------------------------------------------------------------

    def _log(self, text: str) -> None:
        self.trace.append(f"{self.step_no}: {text}" if not text.startswith("  ") else text)

    def _violation(self, check: str, message: str) -> None:
        self.violations.append(Violation(self.step_no, check, message))
        self._log(f"  !! {check}: {message.splitlines()[0][:300]}")

    def _check_books(self, *, settled: bool) -> None:
        undelivered = bool(self.late or self.fake.pending_events)
        problems = books_agree(self.service, self.fake, settled=settled, undelivered=undelivered)
        if problems:
            check = "books_agree" if settled else "books_agree(settled=False)"
            self._violation(check, "; ".join(problems[:6]))

    def _escrow(self) -> Any:
        if not self.escrows:
            return None
        recent = self.escrows[-25:]
        return self.service.get(self.rng.choice(recent))

    def _funded_escrow(self) -> Any:
        for _ in range(4):
            esc = self._escrow()
            if esc is not None and esc.funded:
                return esc
        return None

    def _poster(self, esc: Any) -> Actor:
        return next(p for p in POSTERS if p.id == esc.poster_id)

    def _amount(self, esc: Any, *, full: float = 0.3) -> Money | None:
        if self.rng.random() < full:
            return None
        top = max(esc.available.amount, 1)
        if self.rng.random() < 0.1:
            top = esc.amount.amount + 1000  # more than is available: refused
        return self._money(self.rng.randint(1, top))

    def _money(self, amount: int) -> Money:
        """`amount` in the run's currency; mostly what Stripe moves (a multiple of 10 in KWD)."""
        if self.currency == "kwd" and self.rng.random() < 0.9:
            amount = max(10, amount - amount % 10)
        return Money(amount, self.currency)

    def _new_key(self) -> str:
        return f"sim-{self.seed}-{self.step_no}-{self.rng.randrange(10**9)}"

    def _keyed(self, action: str, **kwargs: Any) -> Any:
        """Call a money-moving command with a fresh key, remembering it for a retry."""
        key = self._new_key()
        self.keys.append((action, key, kwargs))
        del self.keys[:-30]
        started = self.clock.now()  # the key's record is as old as step 1, before any jump
        result = getattr(self.service, action)(idempotency_key=key, **kwargs)
        self.answered[key] = started  # step 1 committed: a retry must not act again
        return result

    def _maybe_fail(self, kind: str, modes: list[str], chance: float = 0.2) -> None:
        if self.rng.random() < chance:
            mode = self.rng.choice(modes)
            self.fake.fail_next(kind, error=mode)  # type: ignore[arg-type]
            self._log(f"  fail_next({kind}, {mode})")

    def _maybe_crash(self, chance: float = 0.0) -> None:
        if chance and self.rng.random() < chance:
            commit = self.rng.randint(1, 4)
            after = self.rng.random() < 0.5
            self.store.arm(**{"after" if after else "before": commit})
            self._log(f"  crash {'after' if after else 'before'} commit {commit}")

    def _register(self, payee_id: str, *, onboard: bool) -> None:
        payee = self.service.register_payee(payee_id, country="US")
        self.payees.append(payee_id)
        if onboard:
            self.fake.complete_onboarding(payee.account_ref)

    def _apply(self, events: list[GatewayEvent]) -> None:
        """Apply events; one the service cannot take yet is delivered again later."""
        for event in events:
            try:
                self.service.apply_event(event)
            except errors.BountyEscrowError as exc:
                self._log(f"  event {event.id} {event.type} -> {type(exc).__name__}, later")
                self.late.append(event)

    def _take_events(self) -> list[GatewayEvent]:
        events = list(self.fake.pending_events)
        self.fake.drop_events()
        return events

    def _deliver_all(self) -> None:
        self._apply(self._take_events())

    # --- the service's commands ---------------------------------------------------------------

    def do_open(self) -> None:
        poster = self.rng.choice(POSTERS)
        if self.rng.random() < 0.15 and self.escrows:
            bounty = self.service.get(self.rng.choice(self.escrows)).bounty_id
        else:
            self.bounties += 1
            bounty = f"bounty-{self.bounties}"
        amount = self.rng.choice([1000, 2500, 10_000, 20_000, self.rng.randint(500, 50_000)])
        self._log(f"open {bounty} by {poster.id} for {amount}")
        self._maybe_fail("payment", PAYMENT_FAILURES, 0.1)
        self._maybe_crash(0.05)
        esc = self.service.open_escrow(
            bounty_id=bounty,
            poster_id=poster.id,
            amount=Money(amount, self.currency),
            actor=poster,
            idempotency_key=self._new_key(),
        )
        self.escrows.append(esc.id)

    def do_pay(self) -> None:
        esc = self._escrow()
        if esc is None or esc.payment_ref is None:
            return
        extra = self.rng.choice([0, 0, 0, 0, 700])
        self._log(f"pay {esc.id} (+{extra})")
        if esc.funded and self.rng.random() < 0.3:
            self._log(f"  pay_again {esc.id}")
            self.fake.pay_again(esc.payment_ref)
            return
        self.fake.pay(esc.payment_ref, Money(esc.amount.amount + extra, self.currency))

    def do_decline(self) -> None:
        esc = self._escrow()
        if esc is not None and esc.payment_ref is not None:
            self._log(f"decline {esc.id}")
            self.fake.decline(esc.payment_ref)

    def do_cancel(self) -> None:
        esc = self._escrow()
        if esc is None:
            return
        self._log(f"cancel {esc.id}")
        self._maybe_fail("cancel", PAYMENT_FAILURES, 0.1)
        self._maybe_crash(0.1)
        self.service.cancel(esc.id, actor=self._poster(esc), idempotency_key=self._new_key())

    def do_release(self) -> None:
        esc = self._funded_escrow()
        if esc is None:
            return
        payee = self.rng.choice(self.payees)
        amount = self._amount(esc)
        self._log(f"release {esc.id} {amount} to {payee}")
        self._maybe_fail("transfer", TRANSFER_FAILURES)
        self._maybe_crash(0.08)
        self._keyed(
            "release", escrow_id=esc.id, payee_id=payee, amount=amount, actor=self._poster(esc)
        )

    def do_refund(self, reverse_releases: bool = False) -> None:
        esc = self._funded_escrow()
        if esc is None:
            return
        amount = self._amount(esc, full=0.4)
        self._log(f"refund {esc.id} {amount} reverse_releases={reverse_releases}")
        self._maybe_fail("refund", REFUND_FAILURES)
        if reverse_releases:
            self._maybe_fail("reversal", REVERSAL_FAILURES)
        self._maybe_crash(0.08)
        self._keyed(
            "refund",
            escrow_id=esc.id,
            amount=amount,
            actor=ADMIN,
            reverse_releases=reverse_releases,
        )

    def do_refund_reversing(self) -> None:
        self.do_refund(reverse_releases=True)

    def _releases(self, esc: Any, status: OperationStatus) -> list[Any]:
        return [
            op
            for op in self.service.operations(esc.id)
            if op.kind is OperationKind.RELEASE and op.status is status
        ]

    def do_reverse(self) -> None:
        esc = self._funded_escrow()
        if esc is None:
            return
        releases = self._releases(esc, OperationStatus.SUCCEEDED)
        if not releases:
            return
        release = self.rng.choice(releases)
        amount = None
        if self.rng.random() < 0.5:
            amount = self._money(self.rng.randint(1, max(release.net.amount, 1)))
        self._log(f"reverse {release.id} of {esc.id} {amount}")
        self._maybe_fail("reversal", REVERSAL_FAILURES)
        self._maybe_crash(0.08)
        self._keyed(
            "reverse", escrow_id=esc.id, operation_id=release.id, amount=amount, actor=ADMIN
        )

    def do_cancel_operation(self) -> None:
        esc = self._funded_escrow()
        if esc is None:
            return
        waiting = self._releases(esc, OperationStatus.AWAITING_PAYEE)
        ops = waiting or self.service.operations(esc.id)
        if not ops:
            return
        op = self.rng.choice(ops)
        actor = self.rng.choice([ADMIN, self._poster(esc)])
        self._log(f"cancel_operation {op.id} ({op.kind.value} {op.status.value}) by {actor.id}")
        self._maybe_crash(0.05)
        self.service.cancel_operation(op.id, actor=actor, idempotency_key=self._new_key())

    def do_retry_same_key(self) -> None:
        """A host retries a call with the same key: same or (rarely) other parameters."""
        if not self.keys:
            return
        action, key, kwargs = self.rng.choice(self.keys)
        kwargs = dict(kwargs)
        if self.rng.random() < 0.2 and kwargs.get("amount") is not None:
            kwargs["amount"] = Money(kwargs["amount"].amount + 1, self.currency)
        self._log(f"retry {action} with key {key} {kwargs}")
        escrow_id = kwargs["escrow_id"]
        before = {op.id for op in self.service.operations(escrow_id)}
        moved = len(self.fake.movements)
        try:
            getattr(self.service, action)(idempotency_key=key, **kwargs)
        finally:
            first = self.answered.get(key)
            ttl = self.service.settings.idempotency_ttl
            if first is not None and self.clock.now() - first < ttl - timedelta(minutes=1):
                # The first call's answer is stored: the retry replays it (or resumes its
                # operation), refuses other parameters, or says it is in progress; it never
                # starts anything new (a reversal included) before checking the key.
                new = [op for op in self.service.operations(escrow_id) if op.id not in before]
                fresh = {op.id for op in new}
                late = [m for m in self.fake.movements[moved:] if m.operation_id in fresh]
                if new or late:
                    self._violation(
                        "idempotency",
                        f"retry of {action} with key {key} started "
                        f"{[(op.kind.value, op.id, op.status.value) for op in new]}",
                    )

    def do_register(self) -> None:
        payee_id = f"hunter-{len(self.payees)}"
        self._log(f"register {payee_id}")
        self._maybe_fail("account", ["unavailable", "timeout_after_effect"], 0.2)
        self._register(payee_id, onboard=False)

    def do_onboard(self) -> None:
        payee_id = self.rng.choice(self.payees)
        self._log(f"onboard {payee_id}")
        self.fake.complete_onboarding(self.service.get_payee(payee_id).account_ref)

    def do_restrict(self) -> None:
        payee_id = self.rng.choice(self.payees)
        self._log(f"restrict {payee_id}")
        self.fake.restrict(self.service.get_payee(payee_id).account_ref)

    # --- latency: things that happen while a gateway call is in flight -----------------------

    def do_in_flight(self) -> None:
        """Start a release, refund or reversal whose gateway call is slow; act meanwhile."""
        esc = self._funded_escrow()
        if esc is None:
            return
        kind = self.rng.choice(["transfer", "transfer", "refund", "reversal"])
        when = self.rng.choice(["before", "after"])
        meanwhile = self.rng.choice(
            [
                "deliver",
                "recover_within_lease",
                "recover_past_lease",
                "recover_past_key_window",
                "refund_outside",
                "dispute",
                "release_rest",
                "refund_rest",
                "cancel_waiting",
            ]
        )
        if when == "before" and meanwhile == "recover_past_key_window":
            # A request Stripe has not executed after 23 h does not exist: calls are bounded
            # by the gateway's max_call_duration. Only a lost or late *answer* is that old.
            when = "after"
        self._log(f"in flight: {kind} on {esc.id}, {when} the effect: {meanwhile}")
        during_next_call(self.fake, kind, lambda: self._meanwhile(meanwhile, esc.id), when=when)
        try:
            self._slow_command(esc, kind)
        finally:
            self._drop_unused_hooks()

    def _slow_command(self, esc: Any, kind: str) -> None:
        if kind == "transfer":
            payee = self.rng.choice(self.payees)
            amount = self._amount(esc)
            self._keyed(
                "release", escrow_id=esc.id, payee_id=payee, amount=amount, actor=self._poster(esc)
            )
        elif kind == "refund":
            self._keyed("refund", escrow_id=esc.id, amount=self._amount(esc), actor=ADMIN)
        else:
            releases = self._releases(esc, OperationStatus.SUCCEEDED)
            if releases:
                release = self.rng.choice(releases)
                self._keyed("reverse", escrow_id=esc.id, operation_id=release.id, actor=ADMIN)

    def _drop_unused_hooks(self) -> None:
        """A command refused before its call leaves its hook unused: it must not fire later."""
        self.fake._call_hooks.clear()

    def _meanwhile(self, what: str, escrow_id: str) -> None:
        self._log(f"  meanwhile: {what}")
        try:
            self._meanwhile_inner(what, escrow_id)
        except (errors.BountyEscrowError, FakeControlError) as exc:
            self._log(f"  meanwhile -> {type(exc).__name__}")

    def _meanwhile_inner(self, what: str, escrow_id: str) -> None:
        esc = self.service.get(escrow_id)
        if what == "deliver":
            self._deliver_all()
        elif what == "recover_within_lease":
            self.clock.advance(self.lease / 2)
            self.service.recover()
        elif what in ("recover_past_lease", "recover_past_key_window"):
            jump = (
                self.lease * 2 if what == "recover_past_lease" else timedelta(hours=23, minutes=30)
            )
            self.clock.advance(jump + timedelta(hours=1, seconds=1))
            self.service.recover()
            self._deliver_all()
        elif what == "refund_outside" and esc.payment_ref and esc.funded:
            self.fake.refund_outside(
                esc.payment_ref, self._money(self.rng.randint(1, esc.amount.amount))
            )
            self._deliver_all()
        elif what == "dispute" and esc.payment_ref and esc.funded:
            self.fake.open_dispute(esc.payment_ref)
            self._deliver_all()
        elif what == "release_rest":
            self._keyed(
                "release",
                escrow_id=esc.id,
                payee_id=self.rng.choice(self.payees),
                actor=self._poster(esc),
            )
        elif what == "refund_rest":
            self._keyed("refund", escrow_id=esc.id, actor=ADMIN)
        elif what == "cancel_waiting":
            for op in self.service.operations(esc.id):
                if op.status.open:
                    self.service.cancel_operation(op.id, actor=ADMIN)
                    break

    # --- outside actors -------------------------------------------------------------------------

    def do_refund_outside(self) -> None:
        esc = self._funded_escrow()
        if esc is None or esc.payment_ref is None:
            return
        amount = None if self.rng.random() < 0.3 else self._money(self.rng.randint(1, 8000))
        self._log(f"Dashboard refund {esc.id} {amount}")
        self.fake.refund_outside(esc.payment_ref, amount)

    def do_reverse_outside(self) -> None:
        esc = self._funded_escrow()
        if esc is None:
            return
        releases = self._releases(esc, OperationStatus.SUCCEEDED)
        if not releases:
            return
        release = self.rng.choice(releases)
        amount = None if self.rng.random() < 0.5 else self._money(self.rng.randint(1, 3000))
        self._log(f"Dashboard reversal of {release.gateway_ref} ({release.id}) {amount}")
        self.fake.reverse_outside(release.gateway_ref, amount)

    def do_dispute(self) -> None:
        esc = self._funded_escrow()
        if esc is None or esc.payment_ref is None:
            return
        inquiry = self.rng.random() < 0.3
        amount = None
        if self.rng.random() < 0.3:
            amount = self._money(self.rng.randint(1, esc.amount.amount))
        self._log(f"dispute {esc.id} inquiry={inquiry} {amount}")
        self.fake.open_dispute(esc.payment_ref, amount, inquiry=inquiry)

    def do_close_dispute(self) -> None:
        esc = self._funded_escrow()
        if esc is None or esc.payment_ref is None:
            return
        won = self.rng.random() < 0.5
        self._log(f"close dispute on {esc.id} won={won}")
        self.fake.close_dispute(esc.payment_ref, won=won)

    def do_fraud_warning(self) -> None:
        esc = self._funded_escrow()
        if esc is not None and esc.payment_ref is not None:
            self._log(f"early fraud warning on {esc.id}")
            self.fake.early_fraud_warning(esc.payment_ref)

    def do_clear_fraud_warning(self) -> None:
        esc = self._funded_escrow()
        if esc is not None and esc.fraud_warning:
            self._log(f"clear fraud warning on {esc.id}")
            self.service.clear_fraud_warning(esc.id, actor=ADMIN)

    def do_payout(self) -> None:
        """A payee pays out: later reversals may find too little on the account."""
        payee = self.service.get_payee(self.rng.choice(self.payees))
        balance = self.fake.balance(payee.account_ref, self.currency)
        if balance.amount <= 0:
            return
        amount = Money(self.rng.randint(1, balance.amount), self.currency)
        self._log(f"payout {amount} from {payee.account_ref}")
        self.fake.payout(payee.account_ref, amount)

    def do_settle_refund(self) -> None:
        refunds = [m for m in self.fake.movements if m.kind == "refund" and m.status != "failed"]
        if not refunds:
            return
        refund = self.rng.choice(refunds[-20:])
        succeeded = refund.status == "pending" and self.rng.random() < 0.6
        self._log(f"refund {refund.ref} ({refund.status}) settles succeeded={succeeded}")
        self.fake.settle_refund(refund.ref, succeeded=succeeded)

    def do_hold_refunds(self) -> None:
        hold = self.rng.random() < 0.5
        self._log(f"hold_refunds({hold})")
        self.fake.hold_refunds(hold)

    # --- webhooks, crashes, time ----------------------------------------------------------------

    def do_deliver(self) -> None:
        events = self._take_events()
        duplicate = self.rng.random() < 0.3
        if duplicate:
            events = [e for e in events for _ in range(2)]
        if self.rng.random() < 0.5:
            self.rng.shuffle(events)
        self._log(f"deliver {len(events)} events (duplicated={duplicate})")
        self._apply(events)

    def do_deliver_some(self) -> None:
        """Deliver a random part, in random order; the rest arrives late (Stripe retries)."""
        events = self._take_events()
        self.rng.shuffle(events)
        cut = self.rng.randint(0, len(events))
        self._log(f"deliver {cut} of {len(events)} events, the rest late")
        self._apply(events[:cut])
        self.late += events[cut:]

    def do_deliver_late(self) -> None:
        late, self.late = self.late, []
        self.rng.shuffle(late)
        self._log(f"deliver {len(late)} late events")
        self._apply(late)

    def do_deliver_signed(self) -> None:
        """Deliver as Stripe does: signed requests to the webhook endpoint (`handle`).

        A 500 means "deliver again later"; a 400 for a request the fake signed would lose the
        event for good, so it is a violation.
        """
        with self.fake._lock:  # the events and their Stripe-shaped bodies, in one order
            pairs = list(zip(self.fake.pending_events, self.fake.pending_payloads, strict=True))
            self.fake.drop_events()
        if self.rng.random() < 0.5:
            self.rng.shuffle(pairs)
        self._log(f"deliver {len(pairs)} signed requests")
        for event, payload in pairs:
            body, headers = self.fake.webhook_request(payload)
            response = self.dispatcher.handle(body=body, headers=headers)
            if response.status >= 500:
                self.late.append(event)
            elif response.status != 200:
                self._violation(
                    "webhook",
                    f"{event.type} {event.id} answered {response.status}: {response.body!r}",
                )

    def do_lose_events(self) -> None:
        """Lose for good the events that report the library's own transfers and refunds made.

        The library must not need them: the call's answer and `recover()` (which looks
        transfers up and polls pending refunds) tell it the same. Every other event is only
        late: what Stripe alone knows (a Dashboard refund, a dispute, a refund that fails
        after it succeeded) reaches the books through events, which Stripe retries for days.
        """
        events = self._take_events()
        kept = []
        for event in events:
            metadata = getattr(event.object, "metadata", None) or {}
            status = getattr(event.object, "status", None)
            if (
                META_OPERATION in metadata
                and event.type in ("transfer.created", "refund.created", "refund.updated")
                and status not in ("failed", "canceled")
            ):
                continue
            kept.append(event)
        self._log(f"lose {len(events) - len(kept)} of {len(events)} events, the rest late")
        self.late += kept

    def do_crash(self) -> None:
        """The process dies inside a release or refund, at a chosen commit."""
        self._log("crash during the next command")
        self._maybe_crash(1.0)
        if self.rng.random() < 0.6:
            self.do_release()
        else:
            self.do_refund()

    def do_recover(self) -> None:
        self._log("recover")
        self._maybe_crash(0.05)
        self.service.recover()

    def do_time_passes(self) -> None:
        jump = self.rng.choice(
            [
                timedelta(seconds=5),
                self.lease + timedelta(seconds=1),
                timedelta(minutes=16),
                timedelta(hours=1, minutes=1),
                timedelta(hours=23, minutes=1),
                timedelta(hours=25),
            ]
        )
        self._log(f"time passes: {jump}")
        self.clock.advance(jump)

    # --- settling ---------------------------------------------------------------------------

    def settle(self) -> None:
        """Deliver everything, let the bank decide pending refunds, recover past every lease.

        Up to four days in steps of two hours: an operation whose 500 Stripe replays waits
        out the 23 h key window before a new key generation is sent.
        """
        self.fake.hold_refunds(False)
        for _ in range(48):
            events, self.late = self.late + self._take_events(), []
            self._apply(events)
            for m in self.fake.movements:
                if m.kind == "refund" and m.status == "pending":
                    self.fake.settle_refund(m.ref, succeeded=True)
            self._apply(self._take_events())
            self.clock.advance(timedelta(hours=2))
            report = self.service.recover(limit=1000)
            if (
                report.claimed == 0
                and not self.fake.pending_events
                and not self.late
                and not self._open_pending()
            ):
                return

    def _open_pending(self) -> bool:
        return any(
            op.status is OperationStatus.PENDING
            for escrow_id in self.escrows
            for op in self.service.operations(escrow_id)
        )

    def settle_and_check(self) -> None:
        self._log("settle: deliver all, settle refunds, recover past leases")
        try:
            self.settle()
        except Exception as exc:
            self._violation("undocumented error while settling", _describe(exc))
            return
        problems = self.service.check_invariants()
        if problems:
            self._violation("check_invariants after settling", "; ".join(problems[:5]))
        self._check_books(settled=True)


class _Ids:
    """Stands in for `secrets` where the service makes ids: ``esc_s7-000001``..."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.count = 0

    def token_urlsafe(self, nbytes: int | None = None) -> str:
        self.count += 1
        return f"s{self.seed}-{self.count:06d}"


@contextmanager
def _deterministic_ids(seed: int) -> Iterator[None]:
    """Make the service's random ids a sequence, so a seed replays the same run exactly.

    Stores list escrows and operations in id order, so random ids would change which one a
    seeded choice picks. (Set iteration order also depends on ``PYTHONHASHSEED``, which
    ``make soak`` fixes.)
    """
    import bountyescrow.service  # noqa: F401  (loads the modules searched below)

    modules = [
        module
        for name, module in sorted(sys.modules.items())
        if name.startswith("bountyescrow.")
        and getattr(getattr(module, "new_id", None), "__module__", None) == name
        and hasattr(module, "secrets")
    ]
    originals = [module.secrets for module in modules]
    for module in modules:  # none found: ids are made some other way, runs merely seeded
        module.secrets = _Ids(seed)
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.secrets = original


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()
