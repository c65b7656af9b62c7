"""The outbox (`events`), post-commit hooks, the audit trail, and what never reaches logs."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import (
    Actor,
    AuditRecord,
    DomainEvent,
    Escrow,
    EscrowService,
    EscrowStatus,
    OperationKind,
    OperationStatus,
    errors,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd

GATEWAY = "gateway:external"

Hook = Callable[[DomainEvent], None]


def story(service: EscrowService, fake: FakeGateway) -> str:
    """Fund, pay out part, refund part, reverse a release: many events on one escrow."""
    esc = funded(service, fake)
    ready_payee(service, fake)
    release = service.release(
        esc.id, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
    )
    service.refund(esc.id, amount=usd(5_000), actor=ADMIN, idempotency_key=new_key())
    service.reverse(esc.id, release.id, actor=ADMIN, idempotency_key=new_key())
    fake.deliver(service)
    return esc.id


def intent_of(esc: Escrow) -> str:
    """The escrow's PaymentIntent ref (every opened escrow has one)."""
    assert esc.payment_ref is not None
    return esc.payment_ref


def hooked_service(
    store: InMemoryStore, fake: FakeGateway, clock: ManualClock, *hooks: Hook
) -> EscrowService:
    """A service that hands each committed event to `hooks`, in order."""
    return EscrowService(store, fake, fee_bps=1000, clock=clock, hooks=hooks)


def key(event: DomainEvent) -> tuple[Any, ...]:
    """An event without its storage position and time."""
    return event.type, event.escrow_id, event.operation_id, tuple(sorted(event.data.items()))


class TestOutbox:
    def test_events_come_in_order_with_increasing_seq(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc_id = story(service, fake)
        events = service.events(limit=10_000)
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(events) + 1))
        types = [e.type for e in events if e.escrow_id == esc_id]
        assert types.index("escrow.funded") < types.index("operation.succeeded")
        assert all(e.created_at is not None for e in events)

    def test_paging_with_the_cursor_gives_each_event_once(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        story(service, fake)
        everything = service.events(limit=10_000)
        assert len(everything) > 6
        pages: list[list[DomainEvent]] = []
        cursor = 0
        while page := service.events(after=cursor, limit=3):
            assert len(page) <= 3
            pages.append(page)
            assert page[-1].seq is not None
            cursor = page[-1].seq
        assert [e for page in pages for e in page] == everything
        assert len(pages) == -(-len(everything) // 3)

    def test_the_cursor_picks_up_only_what_happened_since(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        last = service.events(limit=10_000)[-1].seq
        assert last is not None
        assert service.events(after=last) == []
        service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        new = service.events(after=last)
        assert [e.type for e in new] == ["operation.created", "operation.succeeded"]
        assert {e.escrow_id for e in new} == {esc.id}


class TestHooks:
    @pytest.fixture
    def received(self) -> list[DomainEvent]:
        return []

    @pytest.fixture
    def hooked(
        self,
        store: InMemoryStore,
        fake: FakeGateway,
        clock: ManualClock,
        received: list[DomainEvent],
    ) -> Iterator[EscrowService]:
        service = hooked_service(store, fake, clock, received.append)
        yield service
        assert service.check_invariants() == []

    def test_hooks_get_every_escrow_event_of_a_money_story(
        self, hooked: EscrowService, fake: FakeGateway, received: list[DomainEvent]
    ) -> None:
        esc_id = story(hooked, fake)
        outbox = [key(e) for e in hooked.events(limit=10_000) if e.escrow_id is not None]
        assert [key(e) for e in received if e.escrow_id is not None] == outbox
        assert any(e.escrow_id == esc_id for e in received)

    def test_hooks_run_after_the_commit(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """When a hook sees an event, the outbox already holds it."""
        found: list[bool] = []

        def hook(event: DomainEvent) -> None:
            found.append(key(event) in [key(e) for e in service.events(limit=10_000)])

        service = hooked_service(store, fake, clock, hook)
        story(service, fake)
        assert found
        assert all(found)

    def test_hooks_get_payee_events(
        self, hooked: EscrowService, fake: FakeGateway, received: list[DomainEvent]
    ) -> None:
        payee = hooked.register_payee(HUNTER, country="US")
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(hooked)
        outbox = [key(e) for e in hooked.events(limit=10_000)]
        assert [e[0] for e in outbox] == ["payee.registered", "payee.ready"]
        assert [key(e) for e in received] == outbox

    def test_hooks_get_the_unfreeze_by_clear_fraud_warning(
        self, hooked: EscrowService, fake: FakeGateway, received: list[DomainEvent]
    ) -> None:
        esc = funded(hooked, fake)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(hooked)
        hooked.clear_fraud_warning(esc.id, actor=ADMIN)
        assert [e.type for e in hooked.events(limit=10_000)][-1] == "escrow.unfrozen"
        assert [e.type for e in received][-2:] == ["escrow.frozen", "escrow.unfrozen"]

    def test_hook_events_carry_their_outbox_seq(
        self, hooked: EscrowService, fake: FakeGateway, received: list[DomainEvent]
    ) -> None:
        """Hooks deliver at least once, so a host needs each event's position to dedupe."""
        funded(hooked, fake)
        outbox = {key(e): e.seq for e in hooked.events(limit=10_000)}
        assert received
        assert [e.seq for e in received] == [outbox[key(e)] for e in received]

    def test_a_hook_that_raises_undoes_nothing_and_the_next_hook_still_runs(
        self,
        store: InMemoryStore,
        fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def boom(event: DomainEvent) -> None:
            raise RuntimeError("the host's hook is broken")

        after: list[DomainEvent] = []
        service = hooked_service(store, fake, clock, boom, after.append)
        esc = funded(service, fake)
        ready_payee(service, fake)
        with caplog.at_level(logging.ERROR, logger="bountyescrow"):
            op = service.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert op.status is OperationStatus.SUCCEEDED
        assert service.get(esc.id).status is EscrowStatus.RELEASED
        assert len(fake.movements) == 1
        assert "operation.succeeded" in [e.type for e in after]
        assert any("event hook failed" in r.getMessage() for r in caplog.records)
        assert service.check_invariants() == []


def audit_of(service: EscrowService, escrow_id: str, action: str) -> AuditRecord:
    (record,) = [r for r in service.audit_trail(escrow_id) if r.action == action]
    return record


class TestAuditTrail:
    def test_host_commands_are_audited_with_actor_statuses_operation_and_correlation(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        opened = service.open_escrow(
            bounty_id="b1",
            poster_id=POSTER.id,
            amount=usd(25_000),
            actor=POSTER,
            correlation_id="req-open",
        )
        fake.pay(intent_of(opened))
        fake.deliver(service)
        ready_payee(service, fake)
        release = service.release(
            opened.id,
            payee_id=HUNTER,
            amount=usd(10_000),
            actor=POSTER,
            correlation_id="req-rel",
            idempotency_key=new_key(),
        )
        refund = service.refund(
            opened.id,
            amount=usd(5_000),
            actor=ADMIN,
            correlation_id="req-ref",
            idempotency_key=new_key(),
        )
        reversal = service.reverse(
            opened.id, release.id, actor=ADMIN, correlation_id="req-rev", idempotency_key=new_key()
        )
        (funding_id,) = [
            op.id for op in service.operations(opened.id) if op.kind is OperationKind.FUNDING
        ]

        expected = {
            "open": (POSTER.id, None, "awaiting_funding", funding_id, "req-open"),
            "release": (POSTER.id, "funded", "funded", release.id, "req-rel"),
            "refund": (ADMIN.id, "partially_settled", "partially_settled", refund.id, "req-ref"),
            "reverse": (
                ADMIN.id,
                "partially_settled",
                "partially_settled",
                reversal.id,
                "req-rev",
            ),
        }
        for action, want in expected.items():
            r = audit_of(service, opened.id, action)
            got = (r.actor_id, r.before.get("status"), r.after["status"])
            assert (*got, r.operation_id, r.correlation_id) == want, action
            assert r.allowed

    def test_cancel_cancel_operation_and_clear_fraud_warning_are_audited(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        unfunded = open_escrow(service, bounty="b2")
        service.cancel(unfunded.id, actor=POSTER, correlation_id="req-c")
        intent = audit_of(service, unfunded.id, "cancel")
        assert (intent.actor_id, intent.correlation_id) == (POSTER.id, "req-c")
        assert intent.operation_id is not None
        done = audit_of(service, unfunded.id, "cancelled")
        assert done.operation_id == intent.operation_id
        assert (intent.before["status"], done.after["status"]) == ("awaiting_funding", "cancelled")

        esc = funded(service, fake)
        service.register_payee("hunter-2", country="US")
        waiting = service.release(
            esc.id, payee_id="hunter-2", actor=POSTER, idempotency_key=new_key()
        )
        service.cancel_operation(waiting.id, actor=POSTER, correlation_id="req-co")
        record = audit_of(service, esc.id, "cancel_operation")
        assert (record.actor_id, record.operation_id, record.correlation_id) == (
            POSTER.id,
            waiting.id,
            "req-co",
        )
        assert (record.before["reserved"], record.after["reserved"]) == (25_000, 0)
        fake.early_fraud_warning(intent_of(esc))
        fake.deliver(service)
        service.clear_fraud_warning(esc.id, actor=ADMIN, correlation_id="req-cfw")
        record = audit_of(service, esc.id, "clear_fraud_warning")
        assert (record.actor_id, record.correlation_id) == (ADMIN.id, "req-cfw")
        assert (record.before["status"], record.after["status"]) == ("disputed", "funded")

    def test_every_change_of_the_escrow_is_in_the_trail(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """Each record starts where the one before it ended; the last one is the escrow now."""
        esc_id = story(service, fake)
        payment_ref = service.get(esc_id).payment_ref
        assert payment_ref is not None
        fake.refund_outside(payment_ref, amount=usd(1_000))
        fake.open_dispute(payment_ref, amount=usd(2_000))
        fake.deliver(service)
        fake.close_dispute(payment_ref, won=True)
        fake.deliver(service)
        trail = [r for r in service.audit_trail(esc_id) if r.allowed]
        for previous, record in itertools.pairwise(trail):
            assert record.before == previous.after, record.action
        now = service.get(esc_id)
        last = trail[-1].after
        assert (last["status"], last["held"], last["refunded"]) == (
            now.status.value,
            now.held.amount,
            now.refunded.amount,
        )
        assert [r.seq for r in service.audit_trail(esc_id)] == sorted(
            r.seq for r in service.audit_trail(esc_id) if r.seq is not None
        )

    def test_changes_the_gateway_reports_are_audited_as_the_gateway(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        fake.refund_outside(intent_of(esc), amount=usd(1_000))
        fake.open_dispute(intent_of(esc), amount=usd(2_000))
        fake.deliver(service)
        by_action = {r.action: r for r in service.audit_trail(esc.id)}
        for action in ("payment_succeeded", "external_refund", "dispute_needs_response"):
            assert by_action[action].actor_id == GATEWAY, action
        assert by_action["payment_succeeded"].after["status"] == "funded"

    def test_a_denial_is_audited_and_changes_nothing(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        with pytest.raises(errors.PermissionDeniedError):
            service.refund(
                esc.id, actor=Actor("mallory"), correlation_id="req-x", idempotency_key=new_key()
            )
        record = service.audit_trail(esc.id)[-1]
        assert (record.actor_id, record.action, record.allowed) == ("mallory", "refund", False)
        assert record.correlation_id == "req-x"
        assert record.detail
        assert service.get(esc.id).available == usd(25_000)


def deliver_with_payloads(fake: FakeGateway, service: EscrowService) -> None:
    """Deliver queued events with their raw Stripe JSON, as a webhook endpoint would."""
    while fake.pending_events:
        batch = list(zip(fake.pending_events, fake.pending_payloads, strict=True))
        fake.drop_events()
        for event, payload in batch:
            service.apply_event(event, payload=json.dumps(payload))


class TestSecretsStayOut:
    WEBHOOK_SECRET = "whsec_never_in_a_log_1234"
    CARD = ("4242", "exp_month", "exp_year", "last4")

    @pytest.fixture
    def secret_fake(self, clock: ManualClock) -> FakeGateway:
        return FakeGateway(webhook_secret=self.WEBHOOK_SECRET, clock=clock)

    def open_b1(self, service: EscrowService) -> Escrow:
        """The poster opens bounty b1 under the key ``open-b1``; again, the call is replayed."""
        return service.open_escrow(
            bounty_id="b1",
            poster_id=POSTER.id,
            amount=usd(25_000),
            actor=POSTER,
            receipt_email="poster@example.com",
            idempotency_key="open-b1",
        )

    def full_story(
        self, service: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> tuple[str, str]:
        """Everything that logs: denials, outside changes, unknown outcomes, broken hooks."""
        esc = self.open_b1(service)
        assert esc.client_secret
        assert esc.payment_ref
        again = self.open_b1(service)
        assert again.client_secret == esc.client_secret
        fake.decline(esc.payment_ref)
        deliver_with_payloads(fake, service)
        fake.pay(esc.payment_ref)
        deliver_with_payloads(fake, service)
        payee = service.register_payee(HUNTER, email="hunter@example.com", country="US")
        fake.complete_onboarding(payee.account_ref)
        deliver_with_payloads(fake, service)
        with pytest.raises(errors.PermissionDeniedError):
            service.release(
                esc.id, payee_id=HUNTER, actor=Actor("mallory"), idempotency_key=new_key()
            )
        fake.fail_next("transfer", error="timeout_after_effect")
        service.release(
            esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        fake.fail_next("refund", error="idempotency_mismatch")
        service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        clock.advance(timedelta(minutes=10))
        service.recover()
        deliver_with_payloads(fake, service)
        fake.refund_outside(esc.payment_ref, amount=usd(1_000))
        fake.open_dispute(esc.payment_ref, amount=usd(2_000))
        deliver_with_payloads(fake, service)
        fake.close_dispute(esc.payment_ref, won=False)
        deliver_with_payloads(fake, service)
        return esc.id, esc.client_secret

    def test_no_log_record_holds_a_secret_or_card_details(
        self,
        store: InMemoryStore,
        secret_fake: FakeGateway,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def broken_hook(event: DomainEvent) -> None:
            raise RuntimeError(f"hook failed on {event!r}")

        service = hooked_service(store, secret_fake, clock, broken_hook)
        with caplog.at_level(logging.DEBUG, logger="bountyescrow"):
            _, client_secret = self.full_story(service, secret_fake, clock)
        assert len(caplog.records) > 5  # the story did log: warnings, errors, exceptions
        formatter = logging.Formatter()
        # Only what a record carries beyond the standard attributes: timestamps and line
        # numbers are digits that could contain "4242" by chance.
        standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
        for record in caplog.records:
            extras = {k: v for k, v in vars(record).items() if k not in standard}
            text = " ".join(
                (
                    record.getMessage(),
                    repr(record.args),
                    repr(extras),
                    formatter.format(record),
                )
            )
            for secret in (client_secret, self.WEBHOOK_SECRET, *self.CARD):
                assert secret not in text, (secret, record.getMessage())
        assert service.check_invariants() == []

    def test_the_client_secret_is_not_in_repr_nor_in_any_stored_record(
        self, store: InMemoryStore, secret_fake: FakeGateway, clock: ManualClock
    ) -> None:
        service = EscrowService(store, secret_fake, fee_bps=1000, clock=clock)
        esc_id, client_secret = self.full_story(service, secret_fake, clock)
        opened = self.open_b1(service)
        assert client_secret not in repr(opened)
        with store.unit_of_work() as uow:
            idempotency = uow.idempotency.get(POSTER.id, "open-b1")
        assert idempotency is not None
        stored = [
            service.get(esc_id),
            service.find(),
            service.operations(esc_id),
            [op.request for op in service.operations(esc_id)],
            service.audit_trail(esc_id),
            service.events(limit=10_000),
            service.ledger(esc_id),
            service.disputes(esc_id),
            idempotency,
        ]
        for item in stored:
            assert client_secret not in repr(item)
        assert service.check_invariants() == []
