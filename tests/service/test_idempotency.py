"""Idempotency of host calls (DESIGN §11): replays, conflicts, stored errors, leases, expiry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import (
    Actor,
    Escrow,
    EscrowService,
    EscrowStatus,
    Operation,
    OperationKind,
    OperationStatus,
    errors,
)
from bountyescrow.domain.gateway_objects import CreateTransfer, TransferSnapshot
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd
from .crashing import Crash

LEASE = timedelta(seconds=60)  # the lease the service derives for the fake (60 s at least)


class InterceptingGateway:
    """A `FakeGateway` whose next transfer call first runs `before_transfer`.

    It stands between the service and the fake, so whatever `before_transfer` does happens
    while the service's first call is inside its gateway call (step 2: lease held, no unit
    of work open).
    """

    def __init__(self, inner: FakeGateway) -> None:
        self.inner = inner
        self.before_transfer: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        hook, self.before_transfer = self.before_transfer, None
        if hook is not None:
            hook()
        return self.inner.create_transfer(request, idempotency_key=idempotency_key)


@pytest.fixture
def intercepting(fake: FakeGateway) -> InterceptingGateway:
    return InterceptingGateway(fake)


@pytest.fixture
def intercepted(
    store: InMemoryStore, intercepting: InterceptingGateway, clock: ManualClock
) -> Iterator[EscrowService]:
    """A service whose gateway is the intercepting wrapper around the test's fake."""
    service = EscrowService(store, intercepting, fee_bps=1000, namespace="test", clock=clock)  # type: ignore[arg-type]
    yield service
    assert service.check_invariants() == []


def kinds(fake: FakeGateway) -> list[str]:
    return [m.kind for m in fake.movements]


def payable(service: EscrowService, fake: FakeGateway) -> Escrow:
    """A funded escrow whose hunter is ready to be paid."""
    esc = funded(service, fake)
    ready_payee(service, fake)
    return esc


def release(
    service: EscrowService,
    esc: Escrow,
    amount: int | None = None,
    *,
    key: str | None = None,
    actor: Actor = POSTER,
) -> Operation:
    """`actor` releases `amount` (everything if None) to the hunter under `key` (or a new one)."""
    gross = None if amount is None else usd(amount)
    return service.release(
        esc.id, payee_id=HUNTER, amount=gross, actor=actor, idempotency_key=key or new_key()
    )


class TestSameKeySameParameters:
    def test_release_replays_the_operation_with_one_transfer(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        calls = [release(service, esc, 5_000, key="r") for _ in range(3)]
        assert {op.id for op in calls} == {calls[0].id}
        assert {op.status for op in calls} == {OperationStatus.SUCCEEDED}
        assert [(m.kind, m.operation_id) for m in fake.movements] == [("transfer", calls[0].id)]
        assert service.get(esc.id).released == usd(5_000)

    def test_refund_replays_the_operation_with_one_refund(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        first = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key="f")
        again = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key="f")
        assert again.id == first.id
        assert again.status is OperationStatus.SUCCEEDED
        assert [(m.kind, m.operation_id) for m in fake.movements] == [("refund", first.id)]
        assert service.get(esc.id).refunded == usd(5_000)

    def test_reverse_replays_the_operation_with_one_reversal(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        paid = release(service, esc, 10_000)
        first = service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key="v")
        again = service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key="v")
        assert again.id == first.id
        assert again.status is OperationStatus.SUCCEEDED
        assert kinds(fake) == ["transfer", "reversal"]
        assert service.get(esc.id).held == usd(25_000)

    def test_cancel_replays_the_cancelled_escrow(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """Without the key the second cancel would be refused: the escrow is cancelled."""
        esc = open_escrow(service)
        first = service.cancel(esc.id, actor=POSTER, idempotency_key="c")
        again = service.cancel(esc.id, actor=POSTER, idempotency_key="c")
        assert first.status is again.status is EscrowStatus.CANCELLED
        cancels = [op for op in service.operations(esc.id) if op.kind is OperationKind.CANCEL]
        assert len(cancels) == 1
        canceled = [e for e in fake.pending_events if e.type == "payment_intent.canceled"]
        assert len(canceled) == 1
        with pytest.raises(errors.InvalidTransitionError):
            service.cancel(esc.id, actor=POSTER)

    def test_open_escrow_replays_the_escrow_with_one_payment(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        kwargs: dict[str, Any] = {
            "bounty_id": "b1",
            "poster_id": POSTER.id,
            "amount": usd(25_000),
            "actor": POSTER,
            "idempotency_key": "o",
        }
        first = service.open_escrow(**kwargs)
        again = service.open_escrow(**kwargs)
        assert again.id == first.id
        assert again.payment_ref == first.payment_ref == "pi_0001"
        assert again.client_secret == first.client_secret
        assert [e.id for e in service.find(bounty_id="b1")] == [first.id]
        with pytest.raises(errors.GatewayRejectedError):
            fake.get_payment("pi_0002")  # no second PaymentIntent was created


class TestKeysArePerActor:
    def test_two_actors_use_the_same_key_independently(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        by_poster = release(service, esc, 1_000, key="pay")
        by_admin = release(service, esc, 2_000, key="pay", actor=ADMIN)
        assert by_poster.id != by_admin.id
        assert (by_poster.gross, by_admin.gross) == (usd(1_000), usd(2_000))
        assert [m.operation_id for m in fake.movements] == [by_poster.id, by_admin.id]
        replay = release(service, esc, 1_000, key="pay")
        assert replay.id == by_poster.id


class TestStoredErrors:
    def test_insufficient_funds_is_replayed_after_money_came_back(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        big = release(service, esc, 20_000)

        def ask() -> errors.InsufficientFundsError:
            with pytest.raises(errors.InsufficientFundsError) as info:
                release(service, esc, 10_000, key="k")
            return info.value

        first = ask()
        service.reverse(esc.id, big.id, actor=ADMIN, idempotency_key=new_key())
        assert service.get(esc.id).available == usd(25_000)  # the call would succeed now
        again = ask()
        assert again.message == first.message
        assert kinds(fake) == ["transfer", "reversal"]

    def test_a_replayed_insufficient_funds_error_keeps_its_amounts(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """`available` and `requested` are Money on the replay too, as on the first call."""
        esc = payable(service, fake)
        errors_seen = []
        for _ in range(2):
            with pytest.raises(errors.InsufficientFundsError) as info:
                release(service, esc, 90_000, key="k")
            errors_seen.append(info.value)
        first, again = errors_seen
        assert (first.available, first.requested) == (usd(25_000), usd(90_000))
        assert (again.available, again.requested) == (first.available, first.requested)

    def test_invalid_transition_is_replayed_after_funding(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        ready_payee(service, fake)

        def ask() -> errors.InvalidTransitionError:
            with pytest.raises(errors.InvalidTransitionError) as info:
                release(service, esc, key="early")
            return info.value

        first = ask()
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.deliver(service)
        assert service.get(esc.id).status is EscrowStatus.FUNDED
        again = ask()
        assert (again.current, again.attempted) == (first.current, first.attempted)
        assert again.current == "awaiting_funding"
        assert fake.movements == []

    def test_escrow_exists_is_replayed_after_the_first_was_cancelled(
        self, service: EscrowService
    ) -> None:
        existing = open_escrow(service)

        def ask() -> errors.EscrowExistsError:
            with pytest.raises(errors.EscrowExistsError) as info:
                service.open_escrow(
                    bounty_id="b1",
                    poster_id=POSTER.id,
                    amount=usd(25_000),
                    actor=POSTER,
                    idempotency_key="second",
                )
            return info.value

        assert ask().existing_id == existing.id
        service.cancel(existing.id, actor=POSTER)
        assert ask().existing_id == existing.id
        assert [e.id for e in service.find(bounty_id="b1")] == [existing.id]


class TestInProgress:
    def test_a_retry_while_the_first_call_holds_its_lease_is_refused(
        self,
        intercepted: EscrowService,
        intercepting: InterceptingGateway,
        fake: FakeGateway,
    ) -> None:
        service = intercepted
        esc = payable(service, fake)
        seen: list[object] = []

        def ask() -> Operation:
            return release(service, esc, 5_000, key="r")

        def retry_meanwhile() -> None:
            try:
                seen.append(ask())
            except errors.BountyEscrowError as exc:
                seen.append(exc)

        intercepting.before_transfer = retry_meanwhile
        op = ask()
        assert op.status is OperationStatus.SUCCEEDED
        assert len(seen) == 1
        assert isinstance(seen[0], errors.IdempotencyInProgressError)
        assert seen[0].retryable
        assert "'r'" in str(seen[0])
        assert [m.operation_id for m in fake.movements] == [op.id]
        assert ask().id == op.id  # finished: a retry now replays it

    def test_after_the_lease_expires_a_retry_resumes_the_operation_of_a_dead_process(
        self,
        intercepted: EscrowService,
        intercepting: InterceptingGateway,
        fake: FakeGateway,
        clock: ManualClock,
    ) -> None:
        """The process dies inside the gateway call, with the lease still held."""
        service = intercepted
        esc = payable(service, fake)

        def ask() -> Operation:
            return release(service, esc, 5_000, key="r")

        def die() -> None:
            raise Crash("the process died before the transfer was sent")

        intercepting.before_transfer = die
        with pytest.raises(Crash):
            ask()
        (stuck,) = [op for op in service.operations(esc.id) if op.kind is OperationKind.RELEASE]
        assert stuck.status is OperationStatus.PENDING
        with pytest.raises(errors.IdempotencyInProgressError):
            ask()
        clock.advance(LEASE + timedelta(seconds=1))
        op = ask()
        assert op.id == stuck.id
        assert op.status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [stuck.id]

    def test_a_retry_after_an_unknown_outcome_resumes_the_same_operation(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = payable(service, fake)

        def ask() -> Operation:
            return release(service, esc, 5_000, key="r")

        fake.fail_next("transfer", error="unavailable")
        first = ask()
        assert first.status is OperationStatus.PENDING
        assert fake.movements == []
        clock.advance(LEASE + timedelta(seconds=1))
        again = ask()
        assert again.id == first.id
        assert again.status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [first.id]
        assert service.get(esc.id).released == usd(5_000)


class TestExpiry:
    def test_a_key_is_still_remembered_just_before_its_ttl(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = payable(service, fake)
        release(service, esc, 1_000, key="k")
        clock.advance(timedelta(hours=23, minutes=59))
        with pytest.raises(errors.IdempotencyConflictError):
            release(service, esc, 2_000, key="k")

    def test_after_the_ttl_the_key_is_free_for_another_request(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = payable(service, fake)
        first = release(service, esc, 1_000, key="k")
        clock.advance(timedelta(hours=25))
        second = release(service, esc, 2_000, key="k")
        assert second.id != first.id
        assert second.status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [first.id, second.id]


class TestRegisterPayeeKeys:
    def test_the_same_key_for_another_payee_is_a_conflict(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        admin = ADMIN
        service.register_payee("h1", country="US", actor=admin, idempotency_key="onboard")
        again = service.register_payee("h1", country="US", actor=admin, idempotency_key="onboard")
        assert again.id == "h1"
        with pytest.raises(errors.IdempotencyConflictError):
            service.register_payee("h2", country="US", actor=admin, idempotency_key="onboard")
