"""Builders for the store contract: records with every optional field set.

A store that drops a field fails the round-trip tests. Times are UTC-aware (`T0` carries
microseconds, so a store that drops precision is caught); amounts use `usd` and `jpy` (a
zero-decimal currency) so minor units are not confused with major ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import (
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    GatewayRequest,
)
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import (
    AuditRecord,
    IdempotencyRecord,
    WebhookEventRecord,
    WebhookStatus,
)

#: A fixed moment with microseconds, so stores that drop precision are caught.
T0 = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def usd(amount: int) -> Money:
    """Money in cents."""
    return Money(amount, "usd")


def jpy(amount: int) -> Money:
    """Money in yen (zero-decimal)."""
    return Money(amount, "jpy")


# --- builders: every optional field set, so a store that drops one fails ----------------------


def make_escrow(escrow_id: str = "esc_1", *, currency: str = "usd", **changes: Any) -> Escrow:
    """A funded, partly settled escrow with every optional field set (I1 holds)."""
    big = 100 if currency == "jpy" else 1
    m = {"usd": usd, "jpy": jpy}[currency]
    escrow = Escrow(
        id=escrow_id,
        bounty_id="bounty_1",
        poster_id="poster_1",
        amount=m(25_000 * big),
        fee_schedule=FeeSchedule(bps=1_000, fixed=m(30 * big)),
        transfer_group=f"escrow_{escrow_id}",
        created_at=T0,
        funded=m(25_000 * big),
        held=m(15_000 * big),
        reserved=m(5_000 * big),
        released=m(8_000 * big),
        refunded=m(1_000 * big),
        fees=m(830 * big),
        dispute_withdrawn=m(1_000 * big),
        shortfall=m(200 * big),
        request_id="claim_7",
        payment_ref=f"pi_{escrow_id}",
        charge_ref=f"ch_{escrow_id}",
        payment_status="succeeded",
        last_payment_error="card_declined (an earlier attempt)",
        cancelled=False,
        fixed_fee_charged=True,
        open_disputes=frozenset({"dp_1", "dp_2"}),
        fraud_warning=True,
        funded_at=T0 + MINUTE,
        version=0,
    )
    return attrs.evolve(escrow, **changes)


def new_escrow(
    escrow_id: str,
    *,
    bounty_id: str = "bounty_1",
    poster_id: str = "poster_1",
    amount: Money | None = None,
    created_at: datetime = T0,
) -> Escrow:
    """A fresh escrow awaiting funding, as `open_escrow` creates it."""
    return Escrow.new(
        id=escrow_id,
        bounty_id=bounty_id,
        poster_id=poster_id,
        amount=amount or usd(10_000),
        fee_schedule=FeeSchedule(bps=1_000),
        created_at=created_at,
    )


def _metadata(escrow_id: str, operation_id: str) -> dict[str, str]:
    return {
        "bountyescrow_escrow_id": escrow_id,
        "bountyescrow_operation_id": operation_id,
        "bounty_id": "bounty_1",
    }


def gateway_requests(currency: str = "usd") -> dict[str, GatewayRequest]:
    """One stored gateway request of each type."""
    m = {"usd": usd, "jpy": jpy}[currency]
    meta = _metadata("esc_1", "op_1")
    return {
        "create_payment": CreatePayment(
            amount=m(25_000),
            transfer_group="escrow_esc_1",
            metadata=meta,
            payment_method_types=("card", "link"),
            description="Bounty b1",
            receipt_email="poster@example.com",
        ),
        "cancel_payment": CancelPayment(payment_ref="pi_esc_1"),
        "create_transfer": CreateTransfer(
            amount=m(9_000),
            destination="acct_hunter",
            source_transaction="ch_esc_1",
            transfer_group="escrow_esc_1",
            metadata=meta,
        ),
        "create_refund": CreateRefund(
            amount=m(5_000), payment_ref="pi_esc_1", metadata=meta, reason="requested_by_customer"
        ),
        "create_reversal": CreateReversal(amount=m(4_000), transfer_ref="tr_1", metadata=meta),
    }


def make_operation(
    operation_id: str = "op_1",
    escrow_id: str = "esc_1",
    *,
    currency: str = "usd",
    **changes: Any,
) -> Operation:
    """A release with every optional field set."""
    m = {"usd": usd, "jpy": jpy}[currency]
    op = Operation(
        id=operation_id,
        escrow_id=escrow_id,
        kind=OperationKind.RELEASE,
        status=OperationStatus.PENDING,
        gross=m(10_000),
        fee=m(1_030),
        net=m(8_970),
        actor_id="poster_1",
        created_at=T0,
        updated_at=T0 + MINUTE,
        payee_id="hunter_1",
        gateway_ref=None,
        gateway_status="pending",
        error="timeout (will retry)",
        target_id="op_0",
        request=gateway_requests(currency)["create_transfer"],
        generation=2,
        claimed_until=T0 + 5 * MINUTE,
        next_attempt_at=T0 + 2 * MINUTE,
        attempts=3,
        fixed_fee=m(30),
        reversed=m(0),
        shortfall=m(5),
        reason="milestone 1",
        correlation_id="req-abc",
        request_id="claim_7",
    )
    return attrs.evolve(op, **changes)


def due_operation(operation_id: str, created_at: datetime, **changes: Any) -> Operation:
    """A pending operation with no lease and no retry delay: due at once."""
    fields: dict[str, Any] = {
        "created_at": created_at,
        "updated_at": created_at,
        "claimed_until": None,
        "next_attempt_at": None,
    }
    return make_operation(operation_id, **{**fields, **changes})


def make_dispute(dispute_id: str = "dp_1", escrow_id: str = "esc_1", **changes: Any) -> Dispute:
    """A dispute with money withdrawn, part of it from held money."""
    dispute = Dispute(
        id=dispute_id,
        escrow_id=escrow_id,
        amount=usd(25_000),
        status="needs_response",
        reason="fraudulent",
        withdrawn=usd(25_000),
        reinstated=usd(0),
        from_held=usd(15_000),
        from_shortfall=usd(10_000),
        created_at=T0,
        updated_at=T0 + MINUTE,
    )
    return attrs.evolve(dispute, **changes)


def make_payee(payee_id: str = "hunter_1", **changes: Any) -> Payee:
    """A ready payee with every optional field set."""
    payee = Payee(
        id=payee_id,
        account_ref=f"acct_{payee_id}",
        ready=True,
        country="US",
        email=f"{payee_id}@example.com",
        created_at=T0,
        updated_at=T0 + MINUTE,
    )
    return attrs.evolve(payee, **changes)


def make_entry(
    kind: str = "release", ref: str = "tr_1", escrow_id: str = "esc_1", **changes: Any
) -> JournalEntry:
    """A balanced release entry: held money to the payee and the platform fee."""
    entry = JournalEntry.of(
        escrow_id,
        kind,
        ref,
        (f"escrow:{escrow_id}", usd(-10_000)),
        ("payee:hunter_1", usd(8_970)),
        ("platform:fees", usd(1_030)),
        operation_id="op_1",
    )
    return attrs.evolve(entry, created_at=T0, **changes)


def make_audit(escrow_id: str | None = "esc_1", **changes: Any) -> AuditRecord:
    """An audit record with every optional field set."""
    record = AuditRecord(
        action="release",
        actor_id="poster_1",
        escrow_id=escrow_id,
        created_at=T0,
        allowed=False,
        operation_id="op_1",
        before={"held": 15_000, "status": "funded"},
        after={"held": 5_000, "ops": ["op_1"], "nested": {"ok": True, "none": None}},
        correlation_id="req-abc",
        detail="denied: not the poster",
    )
    return attrs.evolve(record, **changes)


def make_event(event_type: str = "operation.created", **changes: Any) -> DomainEvent:
    """A domain event with data of every JSON kind."""
    event = DomainEvent(
        type=event_type,
        escrow_id="esc_1",
        operation_id="op_1",
        data={
            "amount": 10_000,
            "kind": "release",
            "flags": [True, None],
            "ratio": 0.5,
            "nested": {"currency": "usd"},
        },
        created_at=T0,
    )
    return attrs.evolve(event, **changes)


def make_webhook_event(
    event_id: str = "evt_1", *, status: WebhookStatus = WebhookStatus.PROCESSED, **changes: Any
) -> WebhookEventRecord:
    """A webhook event record with every optional field set."""
    record = WebhookEventRecord(
        id=event_id,
        type="payment_intent.succeeded",
        status=status,
        received_at=T0,
        processed_at=T0 + MINUTE,
        attempts=2,
        error="escrow not committed yet",
        payload='{"id": "evt_1"}',
    )
    return attrs.evolve(record, **changes)


def make_idempotency(
    actor_id: str = "poster_1", key: str = "bounty:b1", **changes: Any
) -> IdempotencyRecord:
    """An idempotency record with every optional field set."""
    record = IdempotencyRecord(
        actor_id=actor_id,
        key=key,
        action="open_escrow",
        fingerprint="sha256:abc",
        created_at=T0,
        expires_at=T0 + timedelta(hours=24),
        locked_until=T0 + MINUTE,
        result_kind="escrow",
        result_ref="esc_1",
        error_type="InsufficientFundsError",
        error_message="only $50.00 available",
    )
    return attrs.evolve(record, **changes)
