"""Time and latency: what happens while a gateway call is in flight, checked by the oracle.

`during_next_call` runs code inside the fake's next call of a kind: ``"before"`` the request
takes effect (its key in use), or ``"after"`` (money moved, the answer on its way back). There
webhooks arrive, `recover()` runs and the clock jumps past the lease, the backoffs and the
23 h key window. Whatever happens, each operation moves money at most once and the books end
agreeing with the gateway.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bountyescrow import Actor, Escrow, EscrowService, Money, OperationStatus
from bountyescrow.testing import (
    FakeGateway,
    InMemoryStore,
    ManualClock,
    books_agree,
    during_next_call,
)
from tests.keys import new_key

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
KEY_WINDOW = timedelta(hours=23, minutes=30)


def usd(amount: int) -> Money:
    return Money(amount, "usd")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(clock=clock)


@pytest.fixture
def service(fake: FakeGateway, clock: ManualClock) -> EscrowService:
    svc = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="latency", clock=clock)
    payee = svc.register_payee("hunter-1", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(svc)
    return svc


@pytest.fixture
def escrow(service: EscrowService, fake: FakeGateway) -> Escrow:
    esc = service.open_escrow(bounty_id="b1", poster_id=POSTER.id, amount=usd(10_000),
                              actor=POSTER)  # fmt: skip
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return service.get(esc.id)


def lease(service: EscrowService) -> timedelta:
    found: timedelta = service.lease
    return found


def settle(service: EscrowService, fake: FakeGateway, clock: ManualClock) -> list[str]:
    """Deliver everything and recover past every lease and backoff; return the oracle's say."""
    for _ in range(6):
        fake.deliver(service, duplicate=True, shuffle=True)
        clock.advance(timedelta(hours=2))
        service.recover(limit=1000)
    fake.deliver(service)
    return service.check_invariants() + books_agree(service, fake)


def transfers(fake: FakeGateway) -> list[str]:
    return [m.ref for m in fake.movements if m.kind == "transfer"]


class TestDuringNextCall:
    def test_runs_once_inside_the_next_call_of_its_kind(
        self, service: EscrowService, fake: FakeGateway, escrow: Escrow
    ) -> None:
        seen: list[list[str]] = []
        during_next_call(fake, "transfer", lambda: seen.append(transfers(fake)), when="after")
        during_next_call(fake, "refund", lambda: seen.append(["refund"]), when="before")

        service.release(escrow.id, payee_id="hunter-1", amount=usd(1_000), actor=POSTER,
                        idempotency_key=new_key())  # fmt: skip
        service.release(escrow.id, payee_id="hunter-1", amount=usd(1_000), actor=POSTER,
                        idempotency_key=new_key())  # fmt: skip

        assert seen == [["tr_0001"]]  # after the first transfer took effect, and only then

    def test_before_runs_before_the_money_moves(
        self, service: EscrowService, fake: FakeGateway, escrow: Escrow
    ) -> None:
        seen: list[list[str]] = []
        during_next_call(fake, "transfer", lambda: seen.append(transfers(fake)))

        service.release(escrow.id, payee_id="hunter-1", actor=POSTER, idempotency_key=new_key())

        assert seen == [[]]
        assert transfers(fake) == ["tr_0001"]

    def test_refuses_an_unknown_kind_or_moment(self, fake: FakeGateway) -> None:
        with pytest.raises(ValueError, match="unknown kind"):
            during_next_call(fake, "payout", print)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="before"):
            during_next_call(fake, "transfer", print, when="during")  # type: ignore[arg-type]


class TestSlowTransfer:
    def test_recover_past_the_lease_while_the_transfer_executes_moves_money_once(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow: Escrow
    ) -> None:
        """Stripe is slower than the lease: recovery resends under the key in use, no 2nd."""

        def meanwhile() -> None:
            clock.advance(lease(service) + timedelta(seconds=1))
            service.recover()

        during_next_call(fake, "transfer", meanwhile, when="before")
        service.release(escrow.id, payee_id="hunter-1", actor=POSTER, idempotency_key=new_key())

        assert settle(service, fake, clock) == []
        assert len(transfers(fake)) == 1

    @pytest.mark.parametrize("jump", [timedelta(minutes=2), timedelta(hours=2), KEY_WINDOW])
    def test_recover_while_the_answer_is_late_moves_money_once(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        escrow: Escrow,
        jump: timedelta,
    ) -> None:
        """The transfer was made; its answer arrives after the lease, a backoff or 23 h."""

        def meanwhile() -> None:
            clock.advance(jump)
            service.recover()
            fake.deliver(service)

        fake.fail_next("transfer", "timeout_after_effect")
        during_next_call(fake, "transfer", meanwhile, when="after")
        op = service.release(
            escrow.id, payee_id="hunter-1", actor=POSTER, idempotency_key=new_key()
        )

        assert settle(service, fake, clock) == []
        assert len(transfers(fake)) == 1
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED

    def test_a_release_that_waited_a_day_for_its_payee_is_sent_once(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow: Escrow
    ) -> None:
        """The 23 h key window counts from the first send, not from the operation's creation."""
        payee = service.register_payee("hunter-2", country="US")
        op = service.release(escrow.id, payee_id="hunter-2", actor=POSTER,
                             idempotency_key=new_key())  # fmt: skip
        assert op.status is OperationStatus.AWAITING_PAYEE
        clock.advance(timedelta(hours=30))
        fake.fail_next("transfer", "timeout_after_effect")
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)

        assert settle(service, fake, clock) == []
        assert len(transfers(fake)) == 1

    def test_a_dispute_opened_while_the_transfer_is_in_flight_is_booked(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow: Escrow
    ) -> None:
        assert escrow.payment_ref is not None
        payment_ref = escrow.payment_ref

        def meanwhile() -> None:
            fake.open_dispute(payment_ref)
            fake.deliver(service)

        during_next_call(fake, "transfer", meanwhile, when="before")
        service.release(escrow.id, payee_id="hunter-1", amount=usd(4_000), actor=POSTER,
                        idempotency_key=new_key())  # fmt: skip
        fake.close_dispute(payment_ref, won=False)

        assert settle(service, fake, clock) == []
        assert service.get(escrow.id).available == usd(0)


class TestSlowRefund:
    def test_an_outside_refund_while_ours_is_in_flight_and_then_fails(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow: Escrow
    ) -> None:
        """Issue 9 item 4: the escrow must not stay releasable with money the payer got back."""
        assert escrow.payment_ref is not None
        payment_ref = escrow.payment_ref

        def meanwhile() -> None:
            fake.refund_outside(payment_ref)
            fake.deliver(service)

        fake.fail_next("refund", "declined")
        during_next_call(fake, "refund", meanwhile, when="before")
        service.refund(escrow.id, amount=usd(4_000), actor=ADMIN, idempotency_key=new_key())

        assert settle(service, fake, clock) == []
        assert service.get(escrow.id).available == usd(0)

    def test_recover_while_a_refund_answer_is_late_refunds_once(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, escrow: Escrow
    ) -> None:
        def meanwhile() -> None:
            clock.advance(KEY_WINDOW)
            service.recover()

        fake.fail_next("refund", "timeout_after_effect")
        during_next_call(fake, "refund", meanwhile, when="after")
        service.refund(escrow.id, amount=usd(4_000), actor=ADMIN, idempotency_key=new_key())

        assert settle(service, fake, clock) == []
        assert [m.kind for m in fake.movements] == ["refund"]

    @pytest.mark.parametrize(
        ("refusal", "jump"),
        [
            # Not stored under the key: recovery's resend with the same key succeeds.
            ("insufficient_balance", timedelta(seconds=61)),
            # Stored and replayed: recovery waits out the key window, then a new generation.
            ("declined", KEY_WINDOW + timedelta(hours=1)),
        ],
    )
    def test_a_stale_refusal_does_not_fail_a_refund_recovery_made(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        escrow: Escrow,
        refusal: str,
        jump: timedelta,
    ) -> None:
        """The first call is refused, but its answer is recorded only after recovery resent
        the refund, which the gateway now has pending: the stale refusal must not fail the
        operation (the refund then succeeds, and the books would still show the money held).

        Found by the simulation (seed 32, step 213; seed 1, step 465). It needs a caller
        paused longer than its lease between the gateway's answer and step 3.
        """

        def meanwhile() -> None:
            clock.advance(jump)
            service.recover()

        fake.hold_refunds(True)
        fake.fail_next("refund", refusal)  # type: ignore[arg-type]
        during_next_call(fake, "refund", meanwhile, when="after")
        op = service.refund(escrow.id, amount=usd(4_000), actor=ADMIN, idempotency_key=new_key())
        fake.hold_refunds(False)
        for movement in fake.movements:
            if movement.status == "pending":
                fake.settle_refund(movement.ref)

        assert settle(service, fake, clock) == []
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
