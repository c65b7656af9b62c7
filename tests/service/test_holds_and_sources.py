"""Holding limits and transfer sources.

`nearing_max_hold` raises the alert ``hold_nearing_limit`` for every escrow it lists. A release
never goes out without ``source_transaction``: when the funding recorded no charge, the service
fetches the PaymentIntent and takes its ``latest_charge``, or refuses before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import attrs
import pytest
import respx

from bountyescrow import Actor, Escrow, EscrowService, GatewayEvent, OperationStatus
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._parse import parse_object
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.gateway_objects import CreateTransfer, PaymentSnapshot
from bountyescrow.domain.payee import Payee
from bountyescrow.errors import (
    GatewayUnavailableError,
    InvalidTransitionError,
    PermissionDeniedError,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.adapters.stripe.stand_in import StripeStandIn
from tests.adapters.stripe.support import API, TEST_KEY, form
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd

# --- holding limits -------------------------------------------------------------------------


def hold_alerts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "bountyescrow.alerts" and getattr(r, "alert", None) == "hold_nearing_limit"
    ]


class TestNearingMaxHold:
    def test_every_escrow_listed_raises_an_alert(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        first = funded(service, fake, bounty="first")
        second = funded(service, fake, bounty="second")
        clock.advance(timedelta(days=84))
        funded(service, fake, bounty="recent")  # 90 days are far away: no alert

        listed = service.nearing_max_hold(within=timedelta(days=7))

        assert {e.id for e in listed} == {first.id, second.id}
        alerts = hold_alerts(caplog)
        assert len(alerts) == 2
        by_escrow = {r.escrow_id: r for r in alerts}  # type: ignore[attr-defined]
        assert set(by_escrow) == {first.id, second.id}
        for escrow in listed:
            record = by_escrow[escrow.id]
            assert escrow.funded_at is not None
            assert record.levelno == logging.ERROR
            assert record.funded_at == escrow.funded_at.isoformat()  # type: ignore[attr-defined]
            ends = escrow.funded_at + service.settings.max_hold
            assert record.hold_ends_at == ends.isoformat()  # type: ignore[attr-defined]
            assert record.held == str(escrow.held)  # type: ignore[attr-defined]
            assert escrow.id in record.getMessage()

    def test_nothing_listed_nothing_alerted(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        emptied = funded(service, fake, bounty="emptied")
        open_escrow(service, bounty="unfunded")
        service.refund(emptied.id, actor=ADMIN, idempotency_key=new_key())
        clock.advance(timedelta(days=100))

        assert service.nearing_max_hold() == []
        assert hold_alerts(caplog) == []

    def test_each_call_alerts_again_while_the_money_is_held(
        self,
        service: EscrowService,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.ERROR, logger="bountyescrow.alerts")
        esc = funded(service, fake)
        clock.advance(timedelta(days=89))

        service.nearing_max_hold()
        service.nearing_max_hold()

        assert [r.escrow_id for r in hold_alerts(caplog)] == [esc.id, esc.id]  # type: ignore[attr-defined]


# --- releases without a charge id -------------------------------------------------------------


class ChargelessFake(FakeGateway):
    """A fake whose PaymentIntents, while `hide_charge` is set, name no ``latest_charge``
    (what a PaymentIntent rendered in an old API version looks like), and that counts the
    PaymentIntents fetched."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.hide_charge = False
        self.unreachable = False
        self.payments_fetched = 0

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        self.payments_fetched += 1
        if self.unreachable:
            raise GatewayUnavailableError("connection refused")
        snapshot = super().get_payment(payment_ref)
        return attrs.evolve(snapshot, charge_ref=None) if self.hide_charge else snapshot


@pytest.fixture
def chargeless(clock: ManualClock) -> ChargelessFake:
    return ChargelessFake(webhook_secret="whsec_test", clock=clock)


@pytest.fixture
def svc(
    store: InMemoryStore, chargeless: ChargelessFake, clock: ManualClock
) -> Iterator[EscrowService]:
    service = EscrowService(store, chargeless, fee_bps=1000, namespace="test", clock=clock)
    yield service
    assert service.check_invariants() == []


def funded_without_charge(service: EscrowService, fake: ChargelessFake) -> Escrow:
    """An escrow funded from a PaymentIntent that named no charge.

    `fake.deliver(service)` goes through `apply_event`, which fetches a succeeded PaymentIntent
    before it funds anything: the fetched snapshot names no charge.
    """
    fake.hide_charge = True
    esc = funded(service, fake)  # type: ignore[arg-type]
    assert esc.charge_ref is None
    assert esc.held == usd(25_000)
    return esc


def transfer_sources(fake: FakeGateway) -> list[str | None]:
    """The ``source_transaction`` of every transfer the fake made, in order."""
    return [
        fake.get_transfer(m.ref).source_transaction for m in fake.movements if m.kind == "transfer"
    ]


class TestReleaseWithoutChargeId:
    def test_the_charge_is_fetched_and_becomes_the_source(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        chargeless.hide_charge = False
        assert esc.payment_ref is not None
        charge = chargeless.get_payment(esc.payment_ref).charge_ref
        assert charge is not None

        op = svc.release(
            esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )

        assert op.status is OperationStatus.SUCCEEDED
        assert isinstance(op.request, CreateTransfer)
        assert op.request.source_transaction == charge
        assert transfer_sources(chargeless) == [charge]
        assert svc.get(esc.id).charge_ref == charge  # recorded for the next release

    def test_the_charge_is_fetched_once(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        chargeless.hide_charge = False
        fetched = chargeless.payments_fetched

        for _ in range(2):
            svc.release(
                esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
            )

        assert chargeless.payments_fetched == fetched + 1
        sources = transfer_sources(chargeless)
        assert len(sources) == 2
        assert sources[0] == sources[1] == svc.get(esc.id).charge_ref

    def test_a_release_waiting_for_its_payee_gets_the_source_too(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        payee = svc.register_payee(HUNTER, email="h@example.com", country="US")
        chargeless.hide_charge = False

        op = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert op.status is OperationStatus.AWAITING_PAYEE
        chargeless.complete_onboarding(payee.account_ref)
        chargeless.deliver(svc)

        assert svc.get_operation(op.id).status is OperationStatus.SUCCEEDED
        charge = svc.get(esc.id).charge_ref
        assert charge is not None
        assert transfer_sources(chargeless) == [charge]

    def test_without_a_charge_the_release_is_refused_before_anything_is_written(
        self, svc: EscrowService, chargeless: ChargelessFake, store: InMemoryStore
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        events = svc.events(limit=10_000)
        audit = svc.audit_trail(esc.id)
        commits = store.commits
        key = new_key()

        with pytest.raises(InvalidTransitionError, match="source_transaction") as refused:
            svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)

        assert (refused.value.current, refused.value.attempted) == ("funded", "release")
        assert store.commits == commits
        assert svc.events(limit=10_000) == events
        assert svc.audit_trail(esc.id) == audit
        assert [op.kind.value for op in svc.operations(esc.id)] == ["funding"]
        assert svc.get(esc.id).available == usd(25_000)
        assert transfer_sources(chargeless) == []

        # The refusal is not stored under the key: once Stripe names the charge, the same
        # request goes ahead.
        chargeless.hide_charge = False
        op = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)
        assert op.status is OperationStatus.SUCCEEDED

    def test_a_failed_fetch_writes_nothing_and_the_same_key_retries(
        self, svc: EscrowService, chargeless: ChargelessFake, store: InMemoryStore
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        chargeless.hide_charge = False
        chargeless.unreachable = True
        commits = store.commits
        key = new_key()

        with pytest.raises(GatewayUnavailableError):
            svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)

        assert store.commits == commits
        assert [op.kind.value for op in svc.operations(esc.id)] == ["funding"]
        chargeless.unreachable = False
        op = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)
        assert op.status is OperationStatus.SUCCEEDED

    def test_a_caller_the_policy_refuses_fetches_nothing(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        fetched = chargeless.payments_fetched

        with pytest.raises(PermissionDeniedError):
            svc.release(esc.id, payee_id=HUNTER, actor=Actor("stranger"), idempotency_key=new_key())

        assert chargeless.payments_fetched == fetched

    def test_a_replayed_key_fetches_nothing_and_returns_the_first_operation(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded_without_charge(svc, chargeless)
        ready_payee(svc, chargeless)
        chargeless.hide_charge = False
        key = new_key()
        first = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)
        fetched = chargeless.payments_fetched

        again = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=key)

        assert again.id == first.id
        assert chargeless.payments_fetched == fetched

    def test_an_escrow_with_a_charge_fetches_nothing(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = funded(svc, chargeless)  # type: ignore[arg-type]
        ready_payee(svc, chargeless)
        fetched = chargeless.payments_fetched

        op = svc.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())

        assert op.status is OperationStatus.SUCCEEDED
        assert chargeless.payments_fetched == fetched


class TestTheTransitions:
    """The domain decides from the fetched PaymentIntent; it never fetches."""

    def escrow(self, svc: EscrowService, chargeless: ChargelessFake) -> Escrow:
        return funded_without_charge(svc, chargeless)

    def snapshot(self, esc: Escrow, **changes: object) -> PaymentSnapshot:
        assert esc.payment_ref is not None
        base = PaymentSnapshot(
            ref=esc.payment_ref,
            status="succeeded",
            amount=esc.amount,
            amount_received=esc.amount,
            charge_ref="ch_fetched",
        )
        return attrs.evolve(base, **changes)

    def test_the_escrows_own_charge_comes_first(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        esc = attrs.evolve(self.escrow(svc, chargeless), charge_ref="ch_recorded")
        assert tr.release_source(esc, self.snapshot(esc)) == "ch_recorded"

    @pytest.mark.parametrize(
        "changes",
        [
            {"charge_ref": None},
            {"ref": "pi_someone_else"},
            {"status": "requires_payment_method"},
        ],
        ids=["no charge", "another PaymentIntent", "not succeeded"],
    )
    def test_only_the_escrows_succeeded_payment_can_name_the_charge(
        self, svc: EscrowService, chargeless: ChargelessFake, changes: dict[str, object]
    ) -> None:
        esc = self.escrow(svc, chargeless)
        assert tr.release_source(esc, self.snapshot(esc)) == "ch_fetched"
        with pytest.raises(InvalidTransitionError):
            tr.release_source(esc, self.snapshot(esc, **changes))
        with pytest.raises(InvalidTransitionError):
            tr.release_source(esc)

    def test_a_waiting_release_without_a_source_keeps_waiting(
        self, svc: EscrowService, chargeless: ChargelessFake
    ) -> None:
        """A release stored before every release had to name a charge is never sent without
        one."""
        esc = self.escrow(svc, chargeless)
        payee = Payee(id=HUNTER, account_ref="acct_waiting", ready=False, country="US")
        started = tr.start_release(
            esc,
            op_id="op_waiting",
            payee=payee,
            gross=None,
            actor_id=POSTER.id,
            now=esc.created_at,
            payment=self.snapshot(esc),
        )
        [op] = started.operations
        assert isinstance(op.request, CreateTransfer)
        legacy = attrs.evolve(op, request=attrs.evolve(op.request, source_transaction=None))
        ready = attrs.evolve(payee, ready=True)

        assert tr.payee_ready(esc, legacy, ready, now=esc.created_at).operations == ()
        sent = tr.payee_ready(started.escrow, legacy, ready, now=esc.created_at)
        [pending] = sent.operations
        assert pending.status is OperationStatus.PENDING
        assert isinstance(pending.request, CreateTransfer)
        assert pending.request.source_transaction == "ch_fetched"


class TestOverStripe:
    """The same through `StripeGateway`: the SDK's HTTP traffic, answered by the stand-in."""

    @pytest.fixture
    def stand_in(self) -> Iterator[StripeStandIn]:
        with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as mock:
            yield StripeStandIn(mock)

    @pytest.fixture
    def stripe_service(
        self, stand_in: StripeStandIn, clock: ManualClock
    ) -> Iterator[EscrowService]:
        with StripeGateway(api_key=TEST_KEY, max_network_retries=0) as gateway:
            service = EscrowService(
                InMemoryStore(), gateway, fee_bps=1000, namespace="test", clock=clock
            )
            yield service
            assert service.check_invariants() == []

    def deliver(self, service: EscrowService, event_type: str, data: dict[str, object]) -> None:
        service.apply_event(
            GatewayEvent(
                id=f"evt_{event_type.replace('.', '_')}",
                type=event_type,
                object=parse_object(data),
                livemode=False,
            )
        )

    def test_the_payment_intent_is_fetched_and_its_charge_sent_as_source(
        self, stripe_service: EscrowService, stand_in: StripeStandIn
    ) -> None:
        esc = stripe_service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=usd(25_000), actor=POSTER
        )
        assert esc.payment_ref is not None
        charge = stand_in.succeed(esc.payment_ref)
        intent = stand_in.payment_intents[esc.payment_ref]
        intent["latest_charge"] = None  # as a PaymentIntent of an old API version shows it
        self.deliver(stripe_service, "payment_intent.succeeded", intent)
        assert stripe_service.get(esc.id).charge_ref is None
        payee = stripe_service.register_payee(HUNTER, email="h@example.com", country="US")
        stand_in.activate(payee.account_ref)
        self.deliver(stripe_service, "account.updated", stand_in.accounts[payee.account_ref])

        intent["latest_charge"] = None
        with pytest.raises(InvalidTransitionError, match="latest_charge"):
            stripe_service.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert not any(r.url.path == "/v1/transfers" for r in stand_in.requests)

        intent["latest_charge"] = charge
        before = len(stand_in.requests)
        op = stripe_service.release(
            esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key()
        )

        assert op.status is OperationStatus.SUCCEEDED
        calls = [(r.method, r.url.path) for r in stand_in.requests[before:]]
        assert calls == [
            ("GET", f"/v1/payment_intents/{esc.payment_ref}"),
            ("POST", "/v1/transfers"),
        ]
        assert form(stand_in.requests[-1])["source_transaction"] == charge
        assert stripe_service.get(esc.id).charge_ref == charge
