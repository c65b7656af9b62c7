"""`EscrowService.reconcile`: the books against the gateway's own objects, and safe repair.

Every discrepancy is made the way it happens in production, through the fake gateway: events
lost (`drop_events`), changes made outside the library (Dashboard refunds and reversals, a
transfer carrying our metadata, a second transfer for one operation), the platform balance
paid out, an object the account does not have. Only the amount mismatch, which the library
cannot cause itself, is made by changing a row by hand.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from bountyescrow import (
    Actor,
    Discrepancy,
    DiscrepancyKind,
    DomainEvent,
    Escrow,
    EscrowService,
    Money,
    OperationKind,
    OperationStatus,
    ReconciliationReport,
)
from bountyescrow.cli import ServiceFactory, main
from bountyescrow.errors import (
    ConfigurationError,
    GatewayAuthenticationError,
    GatewayRejectedError,
    GatewayUnavailableError,
)
from bountyescrow.ports.store import EscrowStore
from bountyescrow.service._reconcile import GRACE, LIST_METHODS
from bountyescrow.testing import (
    FakeControlError,
    FakeGateway,
    InMemoryStore,
    ManualClock,
    books_agree,
)
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from tests.keys import new_key

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"
#: Past the grace period: what happened is older than five minutes.
LATER = GRACE + timedelta(minutes=5)
#: What the platform keeps in its balance beyond the reserve (the runbook's advice), so that
#: money a test lets leave without the books knowing does not also breach the reserve.
MARGIN = Money(200_000, "usd")
DOCS = Path(__file__).resolve().parents[2] / "docs"

Found = tuple[str, str | None, str | None, str | None]


def usd(amount: int) -> Money:
    return Money(amount, "usd")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    gateway = FakeGateway(webhook_secret="whsec_test", clock=clock)
    gateway.top_up(MARGIN)
    return gateway


@pytest.fixture
def store() -> EscrowStore:
    return InMemoryStore()


@pytest.fixture
def hooked() -> list[DomainEvent]:
    return []


@pytest.fixture
def service(
    store: EscrowStore, fake: FakeGateway, clock: ManualClock, hooked: list[DomainEvent]
) -> EscrowService:
    return EscrowService(
        store, fake, fee_bps=1000, namespace="test", clock=clock, hooks=[hooked.append]
    )


def opened(service: EscrowService, amount: int = 25_000, bounty: str = "b1") -> Escrow:
    esc = service.open_escrow(
        bounty_id=bounty, poster_id=POSTER.id, amount=usd(amount), actor=POSTER
    )
    assert esc.payment_ref is not None
    return esc


def funded(service: EscrowService, fake: FakeGateway, bounty: str = "b1") -> Escrow:
    esc = opened(service, bounty=bounty)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return service.get(esc.id)


def ready_payee(service: EscrowService, fake: FakeGateway, payee_id: str = HUNTER) -> str:
    payee = service.register_payee(payee_id, country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)
    return payee.account_ref


def released(
    service: EscrowService, fake: FakeGateway, bounty: str = "b1", amount: int = 10_000
) -> tuple[Escrow, str, str]:
    """A funded escrow with a release delivered: (escrow, release op id, transfer id)."""
    esc = funded(service, fake, bounty)
    ready_payee(service, fake)  # a later call finds the payee registered and ready
    op = service.release(
        esc.id, payee_id=HUNTER, amount=usd(amount), actor=POSTER, idempotency_key=new_key()
    )
    fake.deliver(service)
    op = service.get_operation(op.id)
    assert op.status is OperationStatus.SUCCEEDED
    assert op.gateway_ref is not None
    return service.get(esc.id), op.id, op.gateway_ref


def funding_of(service: EscrowService, esc: Escrow) -> str:
    (funding,) = [op for op in service.operations(esc.id) if op.kind is OperationKind.FUNDING]
    return funding.id


def reconcile(service: EscrowService, clock: ManualClock, **kwargs: Any) -> ReconciliationReport:
    clock.advance(LATER)
    return service.reconcile(**kwargs)


def found(report: ReconciliationReport) -> list[Found]:
    return [
        (d.kind.value, d.escrow_id, d.operation_id, d.gateway_ref) for d in report.discrepancies
    ]


@contextmanager
def tampered(store: EscrowStore, op_id: str, **changes: Any) -> Iterator[None]:
    """Change an operation's row by hand (what only a bug or a person can do)."""
    with store.unit_of_work() as uow:
        op = uow.operations.get(op_id)
        assert op is not None
        uow.operations.save(attrs.evolve(op, **changes))
        uow.commit()
    yield


# --- a clean run ----------------------------------------------------------------------------


class TestCleanBooks:
    def test_a_whole_life_of_escrows_reports_nothing(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        paid, release_id, transfer_ref = released(service, fake)
        service.reverse(
            paid.id, release_id, amount=usd(2_000), actor=ADMIN, idempotency_key=new_key()
        )
        service.refund(paid.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        disputed = funded(service, fake, bounty="b2")
        assert disputed.payment_ref is not None
        fake.open_dispute(disputed.payment_ref)
        fake.close_dispute(disputed.payment_ref, won=True)
        opened(service, bounty="b3")  # awaiting funding
        cancelled = opened(service, bounty="b4")
        service.cancel(cancelled.id, actor=POSTER)
        refunded = funded(service, fake, bounty="b5")
        fake.hold_refunds()
        pending = service.refund(refunded.id, actor=ADMIN, idempotency_key=new_key())
        fake.deliver(service)

        report = reconcile(service, clock)

        assert report.clean, found(report)
        assert report.discrepancies == ()
        assert report.escrows_checked == 5
        assert report.objects_read >= 9  # five payments, a transfer, two refunds, a dispute
        assert report.until == service.now() - GRACE
        every = reconcile(service, clock, escrow_ids=[e.id for e in service.find(bounty_id="b1")])
        assert every.clean
        assert books_agree(service, fake, settled=False) == []
        assert service.get_operation(pending.id).status is OperationStatus.PENDING
        assert transfer_ref

    def test_what_happened_within_the_grace_period_is_left_to_its_webhooks(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        assert service.reconcile().clean
        assert service.reconcile(until=service.now() + timedelta(seconds=1)).discrepancies

    def test_an_operation_under_its_lease_is_in_flight_not_missed(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """A release whose call is still recording its answer is not reported."""
        esc = funded(service, fake)
        ready_payee(service, fake)
        fake.fail_next("transfer", "timeout_after_effect")
        op = service.release(esc.id, payee_id=HUNTER, actor=ADMIN, idempotency_key=new_key())
        fake.drop_events()
        with tampered(service.store, op.id, claimed_until=service.now() + timedelta(hours=1)):
            assert reconcile(service, clock).clean

    def test_objects_of_another_namespace_are_not_ours(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        account = ready_payee(service, fake)
        fake.transfer_outside(
            account, usd(1_000), escrow_id=esc.id, operation_id="op_theirs", namespace="other"
        )
        fake.drop_events()
        assert reconcile(service, clock).clean


# --- each kind, made as it happens ------------------------------------------------------------


class TestEachKind:
    def test_funding_missed(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()

        report = reconcile(service, clock)

        assert found(report) == [
            ("funding_missed", esc.id, funding_of(service, esc), esc.payment_ref)
        ]
        (missed,) = report.discrepancies
        assert missed.repairable
        assert missed.ours == "awaiting funding"
        assert missed.theirs == "payment succeeded, $250.00 received"
        assert missed.runbook == "docs/operations.md#funding_missed"

    def test_an_overpayment_missed_is_left_to_a_person(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref, usd(30_000))
        fake.drop_events()

        (missed,) = reconcile(service, clock).discrepancies

        assert missed.kind is DiscrepancyKind.FUNDING_MISSED
        assert not missed.repairable
        assert "refunds the surplus" in missed.action

    def test_a_second_payment_missed_is_left_to_a_person(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        second = fake.pay_again(esc.payment_ref)
        fake.drop_events()

        assert found(reconcile(service, clock)) == [
            ("funding_missed", esc.id, funding_of(service, esc), second)
        ]

    def test_refund_outcome_missed_when_a_pending_refund_succeeds(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        fake.hold_refunds()
        op = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        fake.deliver(service)
        assert op.gateway_ref is not None
        fake.settle_refund(op.gateway_ref)
        fake.drop_events()

        assert found(reconcile(service, clock)) == [
            ("refund_outcome_missed", esc.id, op.id, op.gateway_ref)
        ]

    def test_refund_outcome_missed_when_a_refund_fails_late(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        op = service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
        fake.deliver(service)
        op = service.get_operation(op.id)
        assert op.status is OperationStatus.SUCCEEDED
        assert op.gateway_ref is not None
        fake.settle_refund(op.gateway_ref, succeeded=False)
        fake.drop_events()

        report = reconcile(service, clock)

        assert found(report) == [("refund_outcome_missed", esc.id, op.id, op.gateway_ref)]
        assert report.discrepancies[0].theirs == "refund failed, $50.00"

    def test_refund_outcome_missed_for_a_refund_made_in_the_dashboard(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        refund = fake.refund_outside(esc.payment_ref, usd(3_000))
        fake.drop_events()

        assert found(reconcile(service, clock)) == [("refund_outcome_missed", esc.id, None, refund)]

    def test_reversal_missed(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc, _, transfer = released(service, fake)
        reversal = fake.reverse_outside(transfer, usd(1_000))
        fake.drop_events()

        assert found(reconcile(service, clock)) == [("reversal_missed", esc.id, None, reversal)]

    def test_dispute_missed_when_it_opens(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        dispute = fake.open_dispute(esc.payment_ref)
        fake.drop_events()

        report = reconcile(service, clock)

        assert found(report) == [("dispute_missed", esc.id, None, dispute)]
        assert report.discrepancies[0].repairable

    def test_dispute_missed_when_it_is_won(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        dispute = fake.open_dispute(esc.payment_ref)
        fake.deliver(service)
        fake.close_dispute(esc.payment_ref, won=True)
        fake.drop_events()

        (missed,) = reconcile(service, clock).discrepancies

        assert (missed.kind, missed.gateway_ref) == (DiscrepancyKind.DISPUTE_MISSED, dispute)
        assert missed.ours == "dispute needs_response, $250.00 withdrawn, $0.00 reinstated"
        assert missed.theirs == "dispute won, $250.00 withdrawn, $250.00 reinstated"

    def test_unbooked_object_a_second_transfer_for_one_operation(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc, release, transfer = released(service, fake)
        second = fake.duplicate_transfer(transfer)
        fake.drop_events()

        report = reconcile(service, clock)

        assert found(report) == [("unbooked_object", esc.id, release, second)]
        assert not report.discrepancies[0].repairable

    def test_unbooked_object_a_transfer_made_outside_with_our_metadata(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        account = ready_payee(service, fake)
        named = fake.transfer_outside(account, usd(1_000), escrow_id=esc.id, operation_id="op_x")
        grouped = fake.transfer_outside(account, usd(500), transfer_group=esc.transfer_group)
        fake.drop_events()

        assert sorted(found(reconcile(service, clock)), key=str) == [
            ("unbooked_object", esc.id, "op_x", named),
            ("unbooked_object", esc.id, None, grouped),
        ]

    def test_an_unbooked_transfer_reversed_in_full_is_settled(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        _, _, transfer = released(service, fake)
        second = fake.duplicate_transfer(transfer)
        fake.reverse_outside(second)
        fake.drop_events()

        assert reconcile(service, clock).clean

    @pytest.mark.parametrize("lost", ["payment", "transfer", "refund", "reversal", "dispute"])
    def test_missing_object(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock, lost: str
    ) -> None:
        esc, release, transfer = released(service, fake)
        refund = service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        reversal = service.reverse(
            esc.id, release, amount=usd(900), actor=ADMIN, idempotency_key=new_key()
        )
        assert esc.payment_ref is not None
        dispute = fake.open_dispute(esc.payment_ref, usd(100))
        fake.deliver(service)
        refs = {
            "payment": (esc.payment_ref, funding_of(service, esc)),
            "transfer": (transfer, release),
            "refund": (service.get_operation(refund.id).gateway_ref, refund.id),
            "reversal": (service.get_operation(reversal.id).gateway_ref, reversal.id),
            "dispute": (dispute, None),
        }
        ref, op_id = refs[lost]
        assert ref is not None
        fake.lose_object(ref)

        report = reconcile(service, clock)

        expected = [("missing_object", esc.id, op_id, ref)]
        if lost == "transfer":  # its reversal is gone with it
            expected.append(("missing_object", esc.id, reversal.id, refs["reversal"][0]))
        assert sorted(found(report), key=str) == sorted(expected, key=str)
        assert "API key" in report.discrepancies[0].action

    def test_amount_mismatch(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc, release, transfer = released(service, fake)
        with tampered(service.store, release, net=usd(9_500)):
            report = reconcile(service, clock)
        assert found(report) == [("amount_mismatch", esc.id, release, transfer)]
        assert report.discrepancies[0].ours == "release of $95.00 net"

    def test_status_mismatch_a_transfer_whose_answer_was_lost(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake)
        fake.fail_next("transfer", "timeout_after_effect")
        op = service.release(esc.id, payee_id=HUNTER, actor=ADMIN, idempotency_key=new_key())
        fake.drop_events()
        assert op.status is OperationStatus.PENDING
        (transfer,) = [m.ref for m in fake.movements if m.operation_id == op.id]

        report = reconcile(service, clock)

        assert found(report) == [("status_mismatch", esc.id, op.id, transfer)]
        assert report.discrepancies[0].repairable

    def test_status_mismatch_a_payment_cancelled_in_the_dashboard(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.cancel_outside(esc.payment_ref)
        fake.drop_events()

        assert found(reconcile(service, clock)) == [
            ("status_mismatch", esc.id, funding_of(service, esc), esc.payment_ref)
        ]

    def test_status_mismatch_money_moved_for_a_release_the_books_failed(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake)
        fake.fail_next("transfer", "timeout_after_effect")
        op = service.release(esc.id, payee_id=HUNTER, actor=ADMIN, idempotency_key=new_key())
        fake.drop_events()
        (transfer,) = [m.ref for m in fake.movements if m.operation_id == op.id]
        with tampered(service.store, op.id, status=OperationStatus.FAILED, claimed_until=None):
            report = reconcile(service, clock)

        assert found(report) == [("status_mismatch", esc.id, op.id, transfer)]
        assert not report.discrepancies[0].repairable

    def test_reserve_breach(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        funded(service, fake)
        fake.payout_platform(MARGIN + usd(5_000))

        report = reconcile(service, clock)

        assert found(report) == [("reserve_breach", None, None, "usd")]
        assert report.discrepancies[0].ours == "escrows hold $250.00"
        assert report.discrepancies[0].theirs == "balance (available + pending) $200.00"

    def test_no_reserve_no_breach(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """A balance below zero with nothing escrowed leaves no escrowed money at risk."""
        fake.payout_platform(MARGIN + usd(1))
        assert reconcile(service, clock).clean


# --- repair -----------------------------------------------------------------------------------


class TestRepair:
    def test_repair_adopts_what_webhooks_missed_and_sends_nothing(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        hooked: list[DomainEvent],
    ) -> None:
        paid, _, transfer = released(service, fake)
        assert paid.payment_ref is not None
        unpaid = opened(service, bounty="b2")
        assert unpaid.payment_ref is not None
        disputed = funded(service, fake, bounty="b3")
        assert disputed.payment_ref is not None
        failing = funded(service, fake, bounty="b4")
        late = service.refund(failing.id, amount=usd(4_000), actor=ADMIN, idempotency_key=new_key())
        abandoned = opened(service, bounty="b5")
        assert abandoned.payment_ref is not None
        lost_answer = funded(service, fake, bounty="b6")
        fake.deliver(service)
        fake.fail_next("transfer", "timeout_after_effect")
        pending = service.release(
            lost_answer.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key()
        )
        fake.pay(unpaid.payment_ref)
        fake.refund_outside(paid.payment_ref, usd(2_000))
        fake.reverse_outside(transfer, usd(1_000))
        fake.open_dispute(disputed.payment_ref)
        gateway_ref = service.get_operation(late.id).gateway_ref
        assert gateway_ref is not None
        fake.settle_refund(gateway_ref, succeeded=False)
        fake.cancel_outside(abandoned.payment_ref)
        fake.drop_events()
        moved = fake.movements
        hooked.clear()

        report = reconcile(service, clock, repair=True)

        assert report.counts() == {
            "dispute_missed": 1,
            "funding_missed": 1,
            "refund_outcome_missed": 2,
            "reversal_missed": 1,
            "status_mismatch": 2,
        }
        assert all(d.repaired for d in report.discrepancies)
        assert report.unresolved == ()
        assert report.errors == ()
        assert fake.movements == moved
        assert books_agree(service, fake) == []
        assert service.check_invariants() == []
        assert reconcile(service, clock).clean
        assert service.get(unpaid.id).funded == usd(25_000)
        assert service.get(abandoned.id).status.value == "cancelled"
        assert service.get_operation(pending.id).status is OperationStatus.SUCCEEDED
        assert {"escrow.funded", "dispute.funds_withdrawn", "refund.failed"} <= {
            e.type for e in hooked
        }

    def test_repair_leaves_what_would_move_money_and_moves_none(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        _, _, transfer = released(service, fake, bounty="b2")
        over = opened(service)
        assert over.payment_ref is not None
        fake.pay(over.payment_ref, usd(30_000))
        fake.duplicate_transfer(transfer)
        fake.drop_events()
        moved = fake.movements

        report = reconcile(service, clock, repair=True)

        assert sorted(d.kind.value for d in report.unresolved) == [
            "funding_missed",
            "unbooked_object",
        ]
        assert report.repaired == ()
        assert fake.movements == moved
        assert service.get(over.id).funded == usd(0)
        assert [op.kind.value for op in service.operations(over.id)] == ["funding"]

    def test_an_object_whose_booking_would_send_money_is_rolled_back(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """The guard behind the checks: were an overpayment ever judged repairable, applying
        it (which creates the refund of the surplus) is rolled back and reported."""
        from bountyescrow.service._reconcile_checks import Run

        over = opened(service)
        assert over.payment_ref is not None
        fake.pay(over.payment_ref, usd(30_000))
        fake.drop_events()
        run = Run(now=service.now(), since=None, until=None)

        adopted = service._reconciler._adopt(run, fake.get_payment(over.payment_ref))

        assert adopted is False
        assert "rolled back" in run.errors[0]
        assert service.get(over.id).funded == usd(0)
        assert len(service.operations(over.id)) == 1

    def test_releases_a_repaired_dispute_lets_go_are_left_to_recover(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        payee = service.register_payee(HUNTER, country="US")
        waiting = service.release(esc.id, payee_id=HUNTER, actor=ADMIN, idempotency_key=new_key())
        assert waiting.status is OperationStatus.AWAITING_PAYEE
        fake.open_dispute(esc.payment_ref, inquiry=True)
        fake.deliver(service)
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        assert service.get_operation(waiting.id).status is OperationStatus.AWAITING_PAYEE
        fake.close_dispute(esc.payment_ref)
        fake.drop_events()
        moved = fake.movements

        report = reconcile(service, clock, repair=True)

        assert [(d.kind.value, d.repaired) for d in report.discrepancies] == [
            ("dispute_missed", True)
        ]
        assert fake.movements == moved
        assert not service.get(esc.id).frozen
        service.recover()
        assert service.get_operation(waiting.id).status is OperationStatus.SUCCEEDED
        assert len(fake.movements) == len(moved) + 1


# --- scopes -----------------------------------------------------------------------------------


class TestScopes:
    def test_escrow_ids_compare_only_those_escrows(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        first = opened(service)
        second = opened(service, bounty="b2")
        for esc in (first, second):
            assert esc.payment_ref is not None
            fake.pay(esc.payment_ref)
        fake.drop_events()
        fake.payout_platform(MARGIN + usd(40_000))

        report = service.reconcile(escrow_ids=[first.id, first.id])

        assert found(report) == [
            ("funding_missed", first.id, funding_of(service, first), first.payment_ref)
        ]
        assert report.escrows_checked == 1
        assert (report.since, report.until) == (None, None)

    def test_an_unknown_escrow_id_is_an_error_not_a_crash(self, service: EscrowService) -> None:
        report = service.reconcile(escrow_ids=["esc_nope"])
        assert report.errors == ("esc_nope: no such escrow",)
        assert not report.clean

    def test_one_string_is_not_a_list_of_ids(self, service: EscrowService) -> None:
        with pytest.raises(TypeError, match="sequence"):
            service.reconcile(escrow_ids="esc_1")

    def test_the_window_bounds_what_is_compared(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        made = service.now()
        clock.advance(timedelta(days=3))

        assert service.reconcile(since=made + timedelta(minutes=1)).clean
        assert service.reconcile(until=made - timedelta(minutes=1)).clean
        assert len(service.reconcile(since=made - timedelta(minutes=1)).discrepancies) == 1

    def test_an_old_object_lost_is_found_by_a_run_that_reaches_back(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc, release, transfer = released(service, fake)
        clock.advance(timedelta(days=3))
        fake.lose_object(transfer)

        assert service.reconcile(since=service.now() - timedelta(days=2)).clean
        assert found(service.reconcile()) == [("missing_object", esc.id, release, transfer)]


# --- guards and errors ------------------------------------------------------------------------


class _WithoutLists:
    """A gateway written before the list methods existed."""

    def __init__(self, inner: FakeGateway) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in LIST_METHODS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class TestGuards:
    def test_a_gateway_without_list_methods_cannot_be_reconciled(
        self, store: EscrowStore, fake: FakeGateway
    ) -> None:
        service = EscrowService(store, _WithoutLists(fake))  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="iter_payments"):
            service.reconcile()

    def test_naive_datetimes_and_backwards_windows_are_refused(
        self, service: EscrowService
    ) -> None:
        naive = service.now().replace(tzinfo=None)
        with pytest.raises(ValueError, match="aware"):
            service.reconcile(since=naive)
        with pytest.raises(ValueError, match="before"):
            service.reconcile(since=service.now(), until=service.now() - timedelta(days=1))

    def test_a_window_starting_within_the_grace_period_says_why_it_is_empty(
        self, service: EscrowService
    ) -> None:
        with pytest.raises(ValueError, match="five minutes ago"):
            service.reconcile(since=service.now() - timedelta(minutes=1))

    def test_an_escrow_whose_objects_cannot_be_read_is_an_error_and_the_run_goes_on(
        self, service: EscrowService, fake: FakeGateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = funded(service, fake)
        second = opened(service, bounty="b2")
        assert second.payment_ref is not None
        fake.pay(second.payment_ref)
        fake.drop_events()
        listed = fake.iter_transfers

        def flaky(**kwargs: Any) -> Iterator[Any]:
            if kwargs.get("transfer_group") == first.transfer_group:
                raise GatewayUnavailableError("Stripe is down")
            return listed(**kwargs)

        monkeypatch.setattr(fake, "iter_transfers", flaky)
        report = service.reconcile(escrow_ids=[first.id, second.id])

        assert report.errors == (
            f"{first.id}: reading its objects: GatewayUnavailableError: Stripe is down",
        )
        assert [d.escrow_id for d in report.discrepancies] == [second.id]

    def test_a_list_that_cannot_be_read_raises(
        self, service: EscrowService, fake: FakeGateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refused(**_: Any) -> Iterator[Any]:
            raise GatewayAuthenticationError("Invalid API Key provided")

        monkeypatch.setattr(fake, "iter_refunds", refused)
        with pytest.raises(GatewayAuthenticationError):
            service.reconcile()

    def test_an_object_that_cannot_be_read_is_an_error_and_the_run_goes_on(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        esc, _, transfer = released(service, fake)
        other = opened(service, bounty="b2")
        assert other.payment_ref is not None
        fake.pay(other.payment_ref)
        fake.drop_events()
        fake.lose_object(transfer)

        def unavailable(ref: str) -> Any:
            raise GatewayUnavailableError("Stripe is down")

        monkeypatch.setattr(fake, "get_transfer", unavailable)
        report = reconcile(service, clock)

        assert report.errors == (f"{esc.id}: reading transfer {transfer}: Stripe is down",)
        assert [d.kind.value for d in report.discrepancies] == ["funding_missed"]


# --- the report -------------------------------------------------------------------------------


class TestReport:
    def test_every_kind_has_its_runbook_section(self) -> None:
        operations = (DOCS / "operations.md").read_text(encoding="utf-8")
        headings = set(re.findall(r"^#+ `?([a-z_]+)`?\s*$", operations, flags=re.MULTILINE))
        assert {kind.value for kind in DiscrepancyKind} <= headings

    def test_the_report_is_json_ready(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()

        data = json.loads(json.dumps(reconcile(service, clock).to_dict()))

        assert data["clean"] is False
        assert data["counts"] == {"funding_missed": 1}
        assert data["unresolved"] == 1
        (item,) = data["discrepancies"]
        assert item["kind"] == "funding_missed"
        assert item["escrow_id"] == esc.id
        assert item["runbook"] == "docs/operations.md#funding_missed"
        assert item["repairable"] is True
        assert item["repaired"] is False

    def test_each_unresolved_discrepancy_raises_an_alert(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            reconcile(service, clock)
            caplog_records = [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        (record,) = caplog_records
        assert record.__dict__["alert"] == "reconciliation_discrepancy"
        assert record.__dict__["discrepancy"] == "funding_missed"
        assert record.__dict__["escrow_id"] == esc.id

    def test_discrepancy_values_are_frozen(self) -> None:
        found = Discrepancy(
            kind=DiscrepancyKind.RESERVE_BREACH,
            escrow_id=None,
            operation_id=None,
            gateway_ref="usd",
            ours="escrows hold $1.00",
            theirs="balance $0.00",
            action="top up",
        )
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            found.repaired = True  # type: ignore[misc]


# --- on SQL stores ----------------------------------------------------------------------------


def _repair_on(store: EscrowStore) -> None:
    """Lost funding, a Dashboard refund and reversal, a dispute: found, repaired, nothing sent."""
    clock = ManualClock()
    fake = FakeGateway(webhook_secret="whsec_test", clock=clock)
    fake.top_up(MARGIN)
    service = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)
    paid, _, transfer = released(service, fake)
    assert paid.payment_ref is not None
    unpaid = opened(service, bounty="b2")
    assert unpaid.payment_ref is not None
    fake.pay(unpaid.payment_ref)
    fake.refund_outside(paid.payment_ref, usd(2_000))
    fake.reverse_outside(transfer, usd(1_000))
    fake.open_dispute(unpaid.payment_ref, usd(5_000))
    fake.drop_events()
    moved = fake.movements

    report = reconcile(service, clock, repair=True)

    assert sorted(d.kind.value for d in report.repaired) == [
        "dispute_missed",
        "funding_missed",
        "refund_outcome_missed",
        "reversal_missed",
    ]
    assert report.unresolved == ()
    assert report.errors == ()
    assert report.escrows_checked == 2
    assert fake.movements == moved
    assert books_agree(service, fake) == []
    assert reconcile(service, clock).clean


class TestSqlStores:
    def test_sqlite(self, tmp_path: Path) -> None:
        from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore

        store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'reconcile.db'}")
        store.migrate()
        try:
            _repair_on(store)
        finally:
            store.dispose()

    @pytest.mark.postgres
    def test_postgresql(self) -> None:
        from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore

        url = postgres_url_or_skip()
        with fresh_schema(url) as schema:
            store = SqlAlchemyStore(url, schema=schema)
            store.migrate()
            try:
                _repair_on(store)
            finally:
                store.dispose()


# --- the command line -------------------------------------------------------------------------


def factory(service: EscrowService) -> ServiceFactory:
    @contextmanager
    def build(url: str, namespace: str) -> Iterator[EscrowService]:
        yield service

    return build


class TestCommandLine:
    def test_clean_books_exit_0_with_a_summary(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        funded(service, fake)
        clock.advance(LATER)

        assert main(["reconcile", "--url", "unused"], service_factory=factory(service)) == 0

        out = capsys.readouterr().out
        assert "reconciled 1 escrows and 1 gateway objects" in out
        assert "discrepancies none" in out

    def test_a_discrepancy_exits_1_with_a_table(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        clock.advance(LATER)

        assert (
            main(["reconcile", "--url", "u", "--since", "1h"], service_factory=factory(service))
            == 1
        )

        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split() == ["KIND", "ESCROW", "OPERATION", "GATEWAY", "STATE"]
        assert lines[1].split() == [
            "funding_missed",
            esc.id,
            funding_of(service, esc),
            esc.payment_ref,
            "repairable",
        ]
        assert "    books:   awaiting funding" in lines
        assert "(docs/operations.md#funding_missed)" in out
        assert "discrepancies funding_missed 1; repaired 0, unresolved 1" in out

    def test_repair_exits_0_once_everything_is_adopted(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.drop_events()
        clock.advance(LATER)

        argv = ["reconcile", "--url", "u", "--repair", "--json"]
        assert main(argv, service_factory=factory(service)) == 0

        data = json.loads(capsys.readouterr().out)
        assert data["repaired"] == 1
        assert data["unresolved"] == 0
        assert service.get(esc.id).funded == usd(25_000)

    def test_escrow_ids_and_json(
        self,
        service: EscrowService,
        fake: FakeGateway,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        esc = opened(service)
        other = opened(service, bounty="b2")
        assert esc.payment_ref is not None
        assert other.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.pay(other.payment_ref)
        fake.drop_events()

        argv = ["reconcile", "--url", "u", "--escrow", esc.id, "--json"]
        assert main(argv, service_factory=factory(service)) == 1

        data = json.loads(capsys.readouterr().out)
        assert data["escrows_checked"] == 1
        assert [d["escrow_id"] for d in data["discrepancies"]] == [esc.id]

    def test_what_could_not_be_checked_exits_2(
        self, service: EscrowService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["reconcile", "--url", "u", "--escrow", "esc_nope"]
        assert main(argv, service_factory=factory(service)) == 2
        assert "error: esc_nope: no such escrow" in capsys.readouterr().out

    def test_a_bad_window_exits_2(
        self, service: EscrowService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["reconcile", "--url", "u", "--since", "yesterday-ish"]
        assert main(argv, service_factory=factory(service)) == 2
        assert "yesterday-ish" in capsys.readouterr().err

    def test_a_gateway_error_exits_2(
        self,
        service: EscrowService,
        fake: FakeGateway,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        def refused(**_: Any) -> Iterator[Any]:
            raise GatewayAuthenticationError("Invalid API Key provided")

        monkeypatch.setattr(fake, "iter_payments", refused)
        assert main(["reconcile", "--url", "u"], service_factory=factory(service)) == 2
        assert "Invalid API Key" in capsys.readouterr().err

    def test_without_a_stripe_key_the_command_refuses_to_start(
        self,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        assert main(["reconcile", "--url", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
        assert "STRIPE_API_KEY" in capsys.readouterr().err


# --- the fake's controls for reconciliation -----------------------------------------------------


class TestFakeControls:
    def test_the_balance_follows_every_object_that_moved_money(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, _, transfer = released(service, fake)  # 25,000 in, 9,000 out
        assert esc.payment_ref is not None
        fake.refund_outside(esc.payment_ref, usd(1_000))
        fake.reverse_outside(transfer, usd(500))
        fake.open_dispute(esc.payment_ref, usd(2_000))  # and the 1,500 fee
        fake.payout_platform(usd(300))
        expected = MARGIN.amount + 25_000 - 9_000 - 1_000 + 500 - 2_000 - 1_500 - 300
        assert fake.get_balance() == {"usd": usd(expected)}

    def test_a_transfer_made_outside_carries_the_metadata_given(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        account = ready_payee(service, fake)
        ref = fake.transfer_outside(
            account, usd(700), escrow_id=esc.id, operation_id="op_1", namespace="test"
        )
        made = fake.get_transfer(ref)
        assert made.transfer_group == esc.transfer_group
        assert dict(made.metadata) == {
            "bountyescrow_escrow_id": esc.id,
            "bountyescrow_namespace": "test",
            "bountyescrow_operation_id": "op_1",
        }
        bare = fake.get_transfer(fake.transfer_outside(account, usd(100)))
        assert bare.transfer_group is None
        assert dict(bare.metadata) == {}

    def test_controls_refuse_what_stripe_would(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        payee = service.register_payee(HUNTER, country="US")  # not onboarded
        with pytest.raises(FakeControlError):
            fake.transfer_outside(payee.account_ref, usd(100))
        with pytest.raises(FakeControlError, match="no transfer"):
            fake.duplicate_transfer("tr_nope")
        with pytest.raises(FakeControlError, match="no object"):
            fake.lose_object("re_nope")
        with pytest.raises(ValueError, match="positive"):
            fake.payout_platform(usd(0))
        with pytest.raises(ValueError, match="positive"):
            fake.top_up(usd(-1))

    def test_a_lost_object_is_gone_from_reads_and_lists(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc, _, transfer = released(service, fake)
        assert esc.payment_ref is not None
        refund = fake.refund_outside(esc.payment_ref, usd(1_000))
        reversal = fake.reverse_outside(transfer, usd(100))
        dispute = fake.open_dispute(esc.payment_ref, usd(100))
        fake.lose_object(reversal)
        assert fake.get_transfer(transfer).reversals == ()
        for ref, read in (
            (refund, fake.get_refund),
            (dispute, fake.get_dispute),
            (transfer, fake.get_transfer),
            (esc.payment_ref, fake.get_payment),
        ):
            fake.lose_object(ref)
            with pytest.raises(GatewayRejectedError, match="No such"):
                read(ref)
        assert list(fake.iter_payments()) == []
        assert list(fake.iter_transfers()) == []
        assert list(fake.iter_refunds()) == []
        assert list(fake.iter_disputes()) == []

    def test_lists_page_through_more_than_a_page(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        for n in range(105):
            opened(service, amount=1_000, bounty=f"b{n}")
        listed = [p.ref for p in fake.iter_payments()]
        assert len(listed) == 105
        assert listed[0] == "pi_0105"  # newest first


# --- rarer disagreements ----------------------------------------------------------------------


def only(report: ReconciliationReport) -> Discrepancy:
    (found,) = report.discrepancies
    return found


class TestRarerCases:
    def test_a_payment_made_after_the_escrow_was_cancelled(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        assert esc.payment_ref is not None
        service.cancel(esc.id, actor=POSTER)
        fake.deliver(service)
        fake.pay(esc.payment_ref, force=True)
        fake.drop_events()

        found = only(reconcile(service, clock))

        assert (found.kind, found.repairable) == (DiscrepancyKind.STATUS_MISMATCH, False)
        assert found.ours == "funding cancelled"

    def test_a_payment_whose_creation_was_never_recorded(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """The PaymentIntent was made but its answer lost; then the payer paid it."""
        fake.fail_next("payment", "timeout_after_effect")
        esc = service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=usd(25_000), actor=POSTER
        )
        assert esc.payment_ref is None
        (payment,) = [p.ref for p in fake.iter_payments()]
        fake.pay(payment)
        fake.drop_events()
        moved = fake.movements

        report = reconcile(service, clock, repair=True)

        assert found(report) == [("funding_missed", esc.id, funding_of(service, esc), payment)]
        assert report.discrepancies[0].repaired
        assert service.get(esc.id).funded == usd(25_000)
        assert fake.movements == moved

    def test_a_payment_naming_an_escrow_the_books_do_not_have(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        from bountyescrow.domain.gateway_objects import CreatePayment

        stray = fake.create_payment(
            CreatePayment(
                amount=usd(5_000),
                transfer_group="escrow_esc_gone",
                metadata={"bountyescrow_escrow_id": "esc_gone", "bountyescrow_operation_id": "o"},
            ),
            idempotency_key=new_key(),
        )
        fake.pay(stray.ref)
        fake.drop_events()

        assert found(reconcile(service, clock)) == [("unbooked_object", "esc_gone", "o", stray.ref)]

    def test_a_funding_the_gateway_never_received(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = opened(service)
        funding = funding_of(service, esc)
        with tampered(service.store, funding, status=OperationStatus.SUCCEEDED):
            found = only(reconcile(service, clock))
        assert (found.kind, found.theirs) == (
            DiscrepancyKind.STATUS_MISMATCH,
            "payment requires_payment_method",
        )

    def test_a_funding_of_another_amount(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        with tampered(service.store, funding_of(service, esc), gross=usd(20_000)):
            assert only(reconcile(service, clock)).kind is DiscrepancyKind.AMOUNT_MISMATCH

    def test_a_transfer_naming_an_operation_that_is_no_release(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        account = ready_payee(service, fake)
        funding = funding_of(service, esc)
        ref = fake.transfer_outside(account, usd(100), escrow_id=esc.id, operation_id=funding)
        fake.transfer_outside(account, usd(100))  # neither metadata nor group: not ours
        fake.drop_events()

        found = only(reconcile(service, clock))

        assert (found.kind, found.gateway_ref) == (DiscrepancyKind.UNBOOKED_OBJECT, ref)
        assert found.ours == f"{funding} is a funding"

    def test_a_reversal_of_another_amount(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc, release, _ = released(service, fake)
        reversal = service.reverse(
            esc.id, release, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key()
        )
        fake.deliver(service)
        with tampered(service.store, reversal.id, net=usd(900)):
            found = only(reconcile(service, clock))
        assert (found.kind, found.operation_id) == (DiscrepancyKind.AMOUNT_MISMATCH, reversal.id)

    def test_a_second_refund_for_one_operation(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        from bountyescrow.domain.gateway_objects import CreateRefund

        esc = funded(service, fake)
        op = service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        fake.deliver(service)
        request = service.get_operation(op.id).request
        assert isinstance(request, CreateRefund)
        second = fake.create_refund(request, idempotency_key=new_key())  # a new key: twice
        fake.drop_events()

        assert found(reconcile(service, clock)) == [("unbooked_object", esc.id, op.id, second.ref)]

    @pytest.mark.parametrize(
        ("gateway_status", "books", "kind"),
        [
            ("succeeded", {"gross": usd(900)}, "amount_mismatch"),
            ("succeeded", {"status": OperationStatus.FAILED}, "status_mismatch"),
            ("pending", {"status": OperationStatus.SUCCEEDED}, "status_mismatch"),
            ("pending", {"status": OperationStatus.FAILED}, "status_mismatch"),
        ],
    )
    def test_refunds_the_books_misstate(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        gateway_status: str,
        books: dict[str, Any],
        kind: str,
    ) -> None:
        esc = funded(service, fake)
        fake.hold_refunds(gateway_status == "pending")
        op = service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        fake.deliver(service)
        assert service.get_operation(op.id).gateway_status == gateway_status
        with tampered(service.store, op.id, claimed_until=None, **books):
            found = only(reconcile(service, clock, escrow_ids=[esc.id]))
        assert (found.kind.value, found.operation_id, found.repairable) == (kind, op.id, False)

    def test_a_dispute_booked_beyond_what_the_gateway_withdrew(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        ref = fake.open_dispute(esc.payment_ref, usd(1_000))
        fake.deliver(service)
        with service.store.unit_of_work() as uow:
            dispute = uow.disputes.get(ref)
            assert dispute is not None
            uow.disputes.save(attrs.evolve(dispute, withdrawn=usd(2_000)))
            uow.commit()

        found = only(reconcile(service, clock))

        assert (found.kind, found.repairable) == (DiscrepancyKind.AMOUNT_MISMATCH, False)

    def test_a_dispute_of_a_payment_not_ours(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        from bountyescrow.domain.gateway_objects import CreatePayment

        theirs = fake.create_payment(
            CreatePayment(amount=usd(5_000), transfer_group="order-1", metadata={}),
            idempotency_key=new_key(),
        )
        fake.pay(theirs.ref)
        fake.refund_outside(theirs.ref, usd(100))
        fake.open_dispute(theirs.ref)
        fake.drop_events()

        assert reconcile(service, clock).clean
