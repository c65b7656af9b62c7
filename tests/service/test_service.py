"""EscrowService behaviour over the fake gateway and the in-memory store."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Literal

import pytest

from bountyescrow import (
    Actor,
    Decision,
    Escrow,
    EscrowService,
    EscrowStatus,
    Money,
    Operation,
    OperationKind,
    OperationStatus,
    errors,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd


def intent_of(esc: Escrow) -> str:
    """The escrow's PaymentIntent ref (every opened escrow has a non-empty one)."""
    assert esc.payment_ref
    return esc.payment_ref


def payable(service: EscrowService, fake: FakeGateway) -> Escrow:
    """A funded escrow whose hunter is ready to be paid."""
    esc = funded(service, fake)
    ready_payee(service, fake)
    return esc


def release(
    service: EscrowService, esc: Escrow, amount: int | None = None, key: str | None = None
) -> Operation:
    """The poster releases `amount` (everything available if None) to the hunter, under
    `key` (a fresh idempotency key if None)."""
    gross = None if amount is None else usd(amount)
    return service.release(
        esc.id, payee_id=HUNTER, amount=gross, actor=POSTER, idempotency_key=key or new_key()
    )


class TestOpenEscrow:
    def test_returns_an_escrow_awaiting_funding_with_a_client_secret(
        self, service: EscrowService
    ) -> None:
        esc = open_escrow(service)
        assert esc.status is EscrowStatus.AWAITING_FUNDING
        assert esc.client_secret
        assert esc.client_secret not in repr(esc)
        assert service.get(esc.id).client_secret is None

    def test_same_key_replays_the_escrow_without_a_second_payment(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        kwargs = {
            "bounty_id": "b1",
            "poster_id": POSTER.id,
            "amount": usd(25_000),
            "actor": POSTER,
            "idempotency_key": "open-b1",
        }
        first = service.open_escrow(**kwargs)  # type: ignore[arg-type]
        again = service.open_escrow(**kwargs)  # type: ignore[arg-type]
        assert again.id == first.id
        assert again.payment_ref == first.payment_ref
        assert again.client_secret == first.client_secret
        assert len(service.find(bounty_id="b1")) == 1

    def test_same_key_other_parameters_is_a_conflict(self, service: EscrowService) -> None:
        service.open_escrow(
            bounty_id="b1",
            poster_id=POSTER.id,
            amount=usd(25_000),
            actor=POSTER,
            idempotency_key="k",
        )
        with pytest.raises(errors.IdempotencyConflictError):
            service.open_escrow(
                bounty_id="b1",
                poster_id=POSTER.id,
                amount=usd(30_000),
                actor=POSTER,
                idempotency_key="k",
            )

    def test_a_second_open_escrow_for_the_bounty_names_the_first(
        self, service: EscrowService
    ) -> None:
        first = open_escrow(service)
        with pytest.raises(errors.EscrowExistsError) as info:
            open_escrow(service)
        assert info.value.existing_id == first.id
        second = service.open_escrow(
            bounty_id="b1",
            poster_id=POSTER.id,
            amount=usd(1_000),
            actor=POSTER,
            allow_additional=True,
        )
        assert second.id != first.id

    @pytest.mark.parametrize(
        ("amount", "error"),
        [
            (25_000, errors.ValidationError),
            (250.0, errors.ValidationError),
            (Money(25_000, "eur"), errors.ValidationError),
            (Money(-5, "usd"), errors.ValidationError),
            (Money(0, "usd"), errors.ValidationError),
            (Money(100_000_000, "usd"), errors.ValidationError),
            (Money(30, "usd"), errors.ValidationError),  # below Stripe's minimum charge
        ],
    )
    def test_bad_amounts_are_refused_and_nothing_is_written(
        self,
        service: EscrowService,
        store: InMemoryStore,
        fake: FakeGateway,
        amount: object,
        error: type[Exception],
    ) -> None:
        commits = store.commits
        with pytest.raises(error):
            service.open_escrow(
                bounty_id="b1",
                poster_id=POSTER.id,
                amount=amount,  # type: ignore[arg-type]
                actor=POSTER,
            )
        assert store.commits == commits
        assert service.find(bounty_id="b1") == []

    def test_someone_else_cannot_open_for_the_poster_and_the_denial_is_audited(
        self, service: EscrowService, store: InMemoryStore
    ) -> None:
        with pytest.raises(errors.PermissionDeniedError):
            service.open_escrow(
                bounty_id="b1", poster_id=POSTER.id, amount=usd(25_000), actor=Actor("mallory")
            )
        assert service.find(bounty_id="b1") == []


class TestFunding:
    def test_payment_succeeded_funds_the_escrow_once_even_if_delivered_twice(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc))
        fake.deliver(service, duplicate=True)
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.FUNDED
        assert esc.held == usd(25_000)
        assert esc.funded == usd(25_000)
        assert [e.kind for e in service.ledger(esc.id)] == ["funding"]

    def test_a_declined_payment_keeps_the_escrow_awaiting_funding(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.decline(intent_of(esc))
        fake.deliver(service)
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.AWAITING_FUNDING
        assert esc.last_payment_error

    def test_money_above_the_amount_is_refunded_automatically(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc), amount=usd(30_000))
        fake.deliver(service)
        esc = service.get(esc.id)
        assert esc.held == usd(25_000)
        assert esc.refunded == usd(5_000)
        assert [(m.kind, m.amount) for m in fake.movements] == [("refund", usd(5_000))]

    def test_a_second_payment_is_refunded_whole(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.pay_again(intent_of(esc))
        fake.deliver(service)
        esc = service.get(esc.id)
        assert esc.held == usd(25_000)
        assert esc.funded == usd(50_000)
        assert esc.refunded == usd(25_000)

    def test_success_after_cancel_books_the_money_and_refunds_it(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """The payment was created but its answer lost; the poster cancels; then pays."""
        fake.fail_next("payment", error="timeout_after_effect")
        esc = open_escrow(service)
        assert esc.payment_ref is None
        service.cancel(esc.id, actor=POSTER)
        assert service.get(esc.id).status is EscrowStatus.CANCELLED
        fake.pay("pi_0001")
        fake.deliver(service)
        esc = service.get(esc.id)
        assert esc.funded == usd(25_000)
        assert esc.refunded == usd(25_000)
        assert esc.status is EscrowStatus.REFUNDED
        assert [(m.kind, m.amount) for m in fake.movements] == [("refund", usd(25_000))]


class TestCancel:
    def test_cancel_before_funding(self, service: EscrowService) -> None:
        esc = service.cancel(open_escrow(service).id, actor=POSTER)
        assert esc.status is EscrowStatus.CANCELLED

    def test_cancel_racing_a_payment_fails_and_applies_the_funding(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = open_escrow(service)
        fake.pay(intent_of(esc))  # paid at Stripe, webhook not delivered yet
        with pytest.raises(errors.InvalidTransitionError):
            service.cancel(esc.id, actor=POSTER)
        assert service.get(esc.id).status is EscrowStatus.FUNDED

    def test_a_funded_escrow_cannot_be_cancelled(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        with pytest.raises(errors.InvalidTransitionError) as info:
            service.cancel(esc.id, actor=POSTER)
        assert info.value.current == "funded"


class TestRelease:
    def test_partial_release_pays_net_and_keeps_the_fee(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        op = release(service, esc, 10_000)
        assert op.status is OperationStatus.SUCCEEDED
        assert (op.gross, op.fee, op.net) == (usd(10_000), usd(1_000), usd(9_000))
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.PARTIALLY_SETTLED
        assert esc.held == usd(15_000)
        assert esc.fees == usd(1_000)
        assert [(m.kind, m.amount, m.operation_id) for m in fake.movements] == [
            ("transfer", usd(9_000), op.id)
        ]

    def test_release_everything_to_several_payees(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake, "h1")
        ready_payee(service, fake, "h2")
        service.release(
            esc.id, payee_id="h1", amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        service.release(esc.id, payee_id="h2", actor=POSTER, idempotency_key=new_key())
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.RELEASED
        assert esc.held == usd(0)

    def test_release_to_a_payee_still_onboarding_waits_then_goes(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        payee = service.register_payee(HUNTER, country="US")
        op = release(service, esc)
        assert op.status is OperationStatus.AWAITING_PAYEE
        assert service.get(esc.id).available == usd(0)
        assert fake.movements == []
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert len(fake.movements) == 1

    def test_a_waiting_release_can_be_cancelled(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        service.register_payee(HUNTER, country="US")
        op = release(service, esc)
        cancelled = service.cancel_operation(op.id, actor=POSTER)
        assert cancelled.status is OperationStatus.CANCELLED
        assert service.get(esc.id).available == usd(25_000)

    def test_more_than_available_is_refused_naming_both(
        self, service: EscrowService, fake: FakeGateway, store: InMemoryStore
    ) -> None:
        esc = payable(service, fake)
        before = service.operations(esc.id)
        with pytest.raises(errors.InsufficientFundsError) as info:
            release(service, esc, 30_000)
        assert info.value.available == usd(25_000)
        # Only the refusal is stored, under its idempotency key (DESIGN §11): no money state.
        assert service.operations(esc.id) == before
        assert service.get(esc.id) == esc

    def test_releasing_to_the_poster_is_refused(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake, POSTER.id)
        for actor in (POSTER, ADMIN):
            with pytest.raises(errors.PermissionDeniedError):
                service.release(esc.id, payee_id=POSTER.id, actor=actor, idempotency_key=new_key())

    def test_the_domain_refuses_it_even_under_a_policy_that_allows_everything(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        class AllowAll:
            def decide(self, *args: object) -> Decision:
                return Decision.allow()

        service = EscrowService(store, fake, AllowAll(), clock=clock)
        esc = funded(service, fake)
        ready_payee(service, fake, POSTER.id)
        with pytest.raises(errors.ValidationError):
            service.release(esc.id, payee_id=POSTER.id, actor=ADMIN, idempotency_key=new_key())

    def test_a_stranger_cannot_release_and_the_denial_is_audited(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        with pytest.raises(errors.PermissionDeniedError):
            service.release(
                esc.id, payee_id=HUNTER, actor=Actor("mallory"), idempotency_key=new_key()
            )
        denied = [r for r in service.audit_trail(esc.id) if not r.allowed]
        assert [(r.actor_id, r.action) for r in denied] == [("mallory", "release")]

    def test_unknown_escrow(self, service: EscrowService) -> None:
        with pytest.raises(errors.EscrowNotFoundError):
            service.release("esc_nope", payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())

    def test_same_key_replays_the_operation(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        a = release(service, esc, 1_000, key="r1")
        b = release(service, esc, 1_000, key="r1")
        assert a.id == b.id
        assert len(fake.movements) == 1
        with pytest.raises(errors.IdempotencyConflictError):
            release(service, esc, 2_000, key="r1")


class TestUnknownOutcomes:
    @pytest.mark.parametrize(
        ("error", "made"),
        [
            pytest.param("timeout_after_effect", 1, id="made_but_the_answer_was_lost"),
            pytest.param("unavailable", 0, id="never_made"),
        ],
    )
    def test_a_lost_answer_returns_pending_and_recover_ends_with_one_transfer(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        error: Literal["timeout_after_effect", "unavailable"],
        made: int,
    ) -> None:
        """Whether or not Stripe made the transfer, recovery sends it at most once."""
        esc = payable(service, fake)
        fake.fail_next("transfer", error=error)
        op = release(service, esc)
        assert op.status is OperationStatus.PENDING
        assert len(fake.movements) == made
        clock.advance(timedelta(minutes=5))
        service.recover()
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert [m.operation_id for m in fake.movements] == [op.id]

    def test_a_replayed_server_error_waits_for_the_key_window_then_looks_up(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = payable(service, fake)
        fake.fail_next("transfer", error="server_error")
        op = release(service, esc)
        clock.advance(timedelta(minutes=5))
        service.recover()  # same key: Stripe replays the 500
        assert service.get_operation(op.id).status is OperationStatus.PENDING
        clock.advance(timedelta(hours=24))
        service.recover()  # looked up, absent, new key generation sent
        done = service.get_operation(op.id)
        assert done.status is OperationStatus.SUCCEEDED
        assert done.generation == 1
        assert len(fake.movements) == 1

    def test_a_definitive_gateway_error_fails_the_operation_and_frees_the_money(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.fail_next("transfer", error="invalid")
        op = release(service, esc)
        assert op.status is OperationStatus.FAILED
        assert op.error
        assert service.get(esc.id).available == usd(25_000)

    def test_destination_not_ready_sends_the_release_back_to_waiting(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.fail_next("transfer", error="destination_not_ready")
        op = release(service, esc)
        assert op.status is OperationStatus.AWAITING_PAYEE


class TestRefundAndReverse:
    def test_admin_partial_refund(self, service: EscrowService, fake: FakeGateway) -> None:
        esc = funded(service, fake)
        op = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        assert op.status is OperationStatus.SUCCEEDED
        assert service.get(esc.id).refunded == usd(5_000)

    def test_the_poster_cannot_refund_after_funding(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        with pytest.raises(errors.PermissionDeniedError):
            service.refund(esc.id, actor=POSTER, idempotency_key=new_key())

    def test_a_pending_refund_that_fails_gives_the_money_back(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.hold_refunds(True)
        op = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        assert op.status is OperationStatus.PENDING
        assert service.get(esc.id).available == usd(20_000)
        assert op.gateway_ref
        fake.settle_refund(op.gateway_ref, succeeded=False)
        fake.deliver(service)
        assert service.get_operation(op.id).status is OperationStatus.FAILED
        assert service.get(esc.id).available == usd(25_000)
        assert "refund.failed" in [e.type for e in service.events(limit=1000)]

    def test_reverse_pulls_a_release_back_with_its_fee(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        paid = release(service, esc, 10_000)
        rev = service.reverse(esc.id, paid.id, actor=ADMIN, idempotency_key=new_key())
        assert rev.status is OperationStatus.SUCCEEDED
        esc = service.get(esc.id)
        assert esc.held == usd(25_000)
        assert esc.released == usd(0)
        assert esc.fees == usd(0)

    def test_refund_with_reverse_releases_refunds_everything(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        release(service, esc, 10_000)
        service.refund(esc.id, actor=ADMIN, reverse_releases=True, idempotency_key=new_key())
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.REFUNDED
        assert esc.refunded == usd(25_000)

    def test_a_reversal_the_payee_cannot_cover_stops_the_refund(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        paid = release(service, esc, 10_000)
        payee = service.get_payee(HUNTER)
        fake.payout(payee.account_ref, usd(9_000))
        with pytest.raises(errors.ReversalFailedError) as info:
            service.refund(esc.id, actor=ADMIN, reverse_releases=True, idempotency_key=new_key())
        assert info.value.shortfall == usd(9_000)
        assert service.get(esc.id).refunded == usd(0)
        assert service.get_operation(paid.id).status is OperationStatus.SUCCEEDED


class TestDisputesAndOutsideChanges:
    def test_a_dispute_freezes_and_a_won_dispute_gives_everything_back(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        fake.open_dispute(intent_of(esc), amount=usd(25_000))
        fake.deliver(service, shuffle=True, seed=3)
        frozen = service.get(esc.id)
        assert frozen.status is EscrowStatus.DISPUTED
        assert frozen.held == usd(0)
        with pytest.raises(errors.EscrowFrozenError):
            release(service, esc)
        fake.close_dispute(intent_of(esc), won=True)
        fake.deliver(service)
        esc = service.get(esc.id)
        assert esc.status is EscrowStatus.FUNDED
        assert esc.held == usd(25_000)

    def test_an_outside_refund_reported_by_several_events_is_booked_once(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.refund_outside(intent_of(esc), amount=usd(5_000))
        fake.deliver(service, duplicate=True, shuffle=True)
        ops = [o for o in service.operations(esc.id) if o.kind is OperationKind.EXTERNAL_REFUND]
        assert len(ops) == 1
        assert ops[0].actor_id == "gateway:external"
        assert service.get(esc.id).refunded == usd(5_000)


class TestConcurrency:
    def test_eight_threads_never_move_more_than_is_held(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = payable(service, fake)
        outcomes: list[str] = []

        def worker(n: int) -> None:
            for i in range(5):
                try:
                    if (n + i) % 2:
                        service.release(
                            esc.id,
                            payee_id=HUNTER,
                            amount=usd(1_500),
                            actor=POSTER,
                            idempotency_key=new_key(),
                        )
                    else:
                        service.refund(
                            esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key()
                        )
                    outcomes.append("ok")
                except errors.InsufficientFundsError:
                    outcomes.append("insufficient")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(outcomes) == 8 * 5  # no worker died of an undocumented error
        esc = service.get(esc.id)
        moved = sum(m.amount.amount for m in fake.movements) + esc.fees.amount
        assert moved == esc.funded.amount - esc.held.amount
        assert "insufficient" in outcomes
        assert esc.held.amount >= 0
