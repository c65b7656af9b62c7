"""Rows <-> domain values, in one place.

Each value has a ``*_row`` function (domain value to column dict) and a ``*_from`` function
(row mapping to domain value). Amounts are stored as minor units beside one currency column per
row; a value whose amounts mix currencies is refused rather than silently re-labelled.
`Escrow.client_secret` has no column and is never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import request_from_dict, request_to_dict
from bountyescrow.domain.ledger import JournalEntry, Posting
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import (
    AuditRecord,
    IdempotencyRecord,
    WebhookEventRecord,
    WebhookStatus,
)
from bountyescrow.errors import StorageError

Row = Mapping[Any, Any]


def _minor(value: Money, currency: str, what: str) -> int:
    if value.currency != currency:
        error = StorageError(
            f"{what} is in {value.currency} but the record is in {currency}: "
            "a stored record has one currency",
            field=what,
        )
        error.retryable = False
        raise error
    return value.amount


def _optional_minor(value: Money | None, currency: str, what: str) -> int | None:
    return None if value is None else _minor(value, currency, what)


def _optional_money(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount, currency)


# --- escrows ----------------------------------------------------------------------------------

_ESCROW_AMOUNTS = (
    "amount",
    "funded",
    "held",
    "reserved",
    "released",
    "refunded",
    "fees",
    "dispute_withdrawn",
    "shortfall",
)


def escrow_row(escrow: Escrow) -> dict[str, Any]:
    """Columns for an escrow (its `version` included; never its client secret)."""
    currency = escrow.currency
    fixed = escrow.fee_schedule.fixed
    row: dict[str, Any] = {
        name: _minor(getattr(escrow, name), currency, f"escrow.{name}") for name in _ESCROW_AMOUNTS
    }
    row.update(
        id=escrow.id,
        bounty_id=escrow.bounty_id,
        poster_id=escrow.poster_id,
        request_id=escrow.request_id,
        currency=currency,
        fee_bps=escrow.fee_schedule.bps,
        fee_fixed=None if fixed is None else fixed.amount,
        fee_fixed_currency=None if fixed is None else fixed.currency,
        transfer_group=escrow.transfer_group,
        payment_ref=escrow.payment_ref,
        charge_ref=escrow.charge_ref,
        payment_status=escrow.payment_status,
        last_payment_error=escrow.last_payment_error,
        cancelled=escrow.cancelled,
        fixed_fee_charged=escrow.fixed_fee_charged,
        open_disputes=sorted(escrow.open_disputes),
        fraud_warning=escrow.fraud_warning,
        status=escrow.status.value,
        created_at=escrow.created_at,
        funded_at=escrow.funded_at,
        version=escrow.version,
    )
    return row


def escrow_from(row: Row) -> Escrow:
    """The escrow a row stores."""
    currency: str = row["currency"]
    fixed = None
    if row["fee_fixed"] is not None:
        fixed = Money(row["fee_fixed"], row["fee_fixed_currency"] or currency)
    return Escrow(
        id=row["id"],
        bounty_id=row["bounty_id"],
        poster_id=row["poster_id"],
        amount=Money(row["amount"], currency),
        fee_schedule=FeeSchedule(bps=row["fee_bps"], fixed=fixed),
        transfer_group=row["transfer_group"],
        created_at=row["created_at"],
        request_id=row["request_id"],
        payment_ref=row["payment_ref"],
        charge_ref=row["charge_ref"],
        payment_status=row["payment_status"],
        last_payment_error=row["last_payment_error"],
        cancelled=bool(row["cancelled"]),
        fixed_fee_charged=bool(row["fixed_fee_charged"]),
        open_disputes=frozenset(row["open_disputes"] or ()),
        fraud_warning=bool(row["fraud_warning"]),
        funded_at=row["funded_at"],
        version=row["version"],
        funded=Money(row["funded"], currency),
        held=Money(row["held"], currency),
        reserved=Money(row["reserved"], currency),
        released=Money(row["released"], currency),
        refunded=Money(row["refunded"], currency),
        fees=Money(row["fees"], currency),
        dispute_withdrawn=Money(row["dispute_withdrawn"], currency),
        shortfall=Money(row["shortfall"], currency),
    )


# --- operations -------------------------------------------------------------------------------


def operation_row(op: Operation) -> dict[str, Any]:
    """Columns for an operation, with its gateway request as a JSON document."""
    currency = op.gross.currency
    return {
        "id": op.id,
        "escrow_id": op.escrow_id,
        "request_id": op.request_id,
        "actor_id": op.actor_id,
        "payee_id": op.payee_id,
        "kind": op.kind.value,
        "status": op.status.value,
        "currency": currency,
        "gross": op.gross.amount,
        "fee": _minor(op.fee, currency, "operation.fee"),
        "net": _minor(op.net, currency, "operation.net"),
        "fixed_fee": _optional_minor(op.fixed_fee, currency, "operation.fixed_fee"),
        "reversed": _optional_minor(op.reversed, currency, "operation.reversed"),
        "shortfall": _optional_minor(op.shortfall, currency, "operation.shortfall"),
        "gateway_ref": op.gateway_ref,
        "gateway_status": op.gateway_status,
        "request": None if op.request is None else request_to_dict(op.request),
        "generation": op.generation,
        "claimed_until": op.claimed_until,
        "next_attempt_at": op.next_attempt_at,
        "sent_at": op.sent_at,
        "attempts": op.attempts,
        "target_id": op.target_id,
        "reason": op.reason,
        "correlation_id": op.correlation_id,
        "error": op.error,
        "created_at": op.created_at,
        "updated_at": op.updated_at,
    }


def operation_from(row: Row) -> Operation:
    """The operation a row stores."""
    currency: str = row["currency"]
    request = row["request"]
    return Operation(
        id=row["id"],
        escrow_id=row["escrow_id"],
        kind=OperationKind(row["kind"]),
        status=OperationStatus(row["status"]),
        gross=Money(row["gross"], currency),
        fee=Money(row["fee"], currency),
        net=Money(row["net"], currency),
        actor_id=row["actor_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        payee_id=row["payee_id"],
        gateway_ref=row["gateway_ref"],
        gateway_status=row["gateway_status"],
        error=row["error"],
        target_id=row["target_id"],
        request=None if request is None else request_from_dict(request),
        generation=row["generation"],
        claimed_until=row["claimed_until"],
        next_attempt_at=row["next_attempt_at"],
        sent_at=row["sent_at"],
        attempts=row["attempts"],
        fixed_fee=_optional_money(row["fixed_fee"], currency),
        reversed=_optional_money(row["reversed"], currency),
        shortfall=_optional_money(row["shortfall"], currency),
        reason=row["reason"],
        correlation_id=row["correlation_id"],
        request_id=row["request_id"],
    )


# --- disputes and payees ----------------------------------------------------------------------

_DISPUTE_AMOUNTS = ("amount", "withdrawn", "reinstated", "from_held", "from_shortfall")


def dispute_row(dispute: Dispute) -> dict[str, Any]:
    """Columns for a dispute."""
    currency = dispute.amount.currency
    row: dict[str, Any] = {
        name: _minor(getattr(dispute, name), currency, f"dispute.{name}")
        for name in _DISPUTE_AMOUNTS
    }
    row.update(
        id=dispute.id,
        escrow_id=dispute.escrow_id,
        currency=currency,
        status=dispute.status,
        reason=dispute.reason,
        created_at=dispute.created_at,
        updated_at=dispute.updated_at,
        charge_refundable=dispute.charge_refundable,
    )
    return row


def dispute_from(row: Row) -> Dispute:
    """The dispute a row stores."""
    currency: str = row["currency"]
    return Dispute(
        id=row["id"],
        escrow_id=row["escrow_id"],
        amount=Money(row["amount"], currency),
        status=row["status"],
        reason=row["reason"],
        withdrawn=Money(row["withdrawn"], currency),
        reinstated=Money(row["reinstated"], currency),
        from_held=Money(row["from_held"], currency),
        from_shortfall=Money(row["from_shortfall"], currency),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        charge_refundable=bool(row["charge_refundable"]),
    )


def payee_row(payee: Payee) -> dict[str, Any]:
    """Columns for a payee."""
    return {
        "id": payee.id,
        "account_ref": payee.account_ref,
        "ready": payee.ready,
        "country": payee.country,
        "email": payee.email,
        "created_at": payee.created_at,
        "updated_at": payee.updated_at,
    }


def payee_from(row: Row) -> Payee:
    """The payee a row stores."""
    return Payee(
        id=row["id"],
        account_ref=row["account_ref"],
        ready=bool(row["ready"]),
        country=row["country"],
        email=row["email"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- ledger -----------------------------------------------------------------------------------


def entry_row(entry: JournalEntry) -> dict[str, Any]:
    """Columns for a journal entry's header (the store assigns `seq`)."""
    return {
        "escrow_id": entry.escrow_id,
        "kind": entry.kind,
        "ref": entry.ref,
        "operation_id": entry.operation_id,
        "created_at": entry.created_at,
    }


def posting_rows(seq: int, postings: Sequence[Posting]) -> list[dict[str, Any]]:
    """One row per posting, numbered in the entry's order."""
    return [
        {
            "entry_seq": seq,
            "line": line,
            "account": posting.account,
            "currency": posting.amount.currency,
            "amount": posting.amount.amount,
        }
        for line, posting in enumerate(postings, start=1)
    ]


def entry_from(row: Row, postings: Iterable[Row]) -> JournalEntry:
    """The journal entry a header row and its posting rows (in line order) store."""
    return JournalEntry(
        escrow_id=row["escrow_id"],
        kind=row["kind"],
        ref=row["ref"],
        postings=tuple(Posting(p["account"], Money(p["amount"], p["currency"])) for p in postings),
        operation_id=row["operation_id"],
        created_at=row["created_at"],
        seq=row["seq"],
    )


# --- audit, events, webhook events, idempotency -----------------------------------------------


def audit_row(record: AuditRecord) -> dict[str, Any]:
    """Columns for an audit record (the store assigns `seq`)."""
    return {
        "escrow_id": record.escrow_id,
        "operation_id": record.operation_id,
        "action": record.action,
        "actor_id": record.actor_id,
        "allowed": record.allowed,
        "before": dict(record.before),
        "after": dict(record.after),
        "correlation_id": record.correlation_id,
        "detail": record.detail,
        "created_at": record.created_at,
    }


def audit_from(row: Row) -> AuditRecord:
    """The audit record a row stores."""
    return AuditRecord(
        action=row["action"],
        actor_id=row["actor_id"],
        escrow_id=row["escrow_id"],
        created_at=row["created_at"],
        allowed=bool(row["allowed"]),
        operation_id=row["operation_id"],
        before=row["before"],
        after=row["after"],
        correlation_id=row["correlation_id"],
        detail=row["detail"],
        seq=row["seq"],
    )


def event_row(event: DomainEvent) -> dict[str, Any]:
    """Columns for a domain event (the store assigns `seq`)."""
    return {
        "type": event.type,
        "escrow_id": event.escrow_id,
        "operation_id": event.operation_id,
        "data": dict(event.data),
        "created_at": event.created_at,
    }


def event_from(row: Row) -> DomainEvent:
    """The domain event a row stores."""
    return DomainEvent(
        type=row["type"],
        escrow_id=row["escrow_id"],
        operation_id=row["operation_id"],
        data=row["data"],
        created_at=row["created_at"],
        seq=row["seq"],
    )


def webhook_row(record: WebhookEventRecord) -> dict[str, Any]:
    """Columns for a webhook event record."""
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status.value,
        "received_at": record.received_at,
        "processed_at": record.processed_at,
        "attempts": record.attempts,
        "error": record.error,
        "payload": record.payload,
    }


def webhook_from(row: Row) -> WebhookEventRecord:
    """The webhook event record a row stores."""
    return WebhookEventRecord(
        id=row["id"],
        type=row["type"],
        status=WebhookStatus(row["status"]),
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        attempts=row["attempts"],
        error=row["error"],
        payload=row["payload"],
    )


def idempotency_row(record: IdempotencyRecord) -> dict[str, Any]:
    """Columns for an idempotency record."""
    return {
        "actor_id": record.actor_id,
        "key": record.key,
        "action": record.action,
        "fingerprint": record.fingerprint,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "locked_until": record.locked_until,
        "result_kind": record.result_kind,
        "result_ref": record.result_ref,
        "error_type": record.error_type,
        "error_message": record.error_message,
    }


def idempotency_from(row: Row) -> IdempotencyRecord:
    """The idempotency record a row stores."""
    return IdempotencyRecord(
        actor_id=row["actor_id"],
        key=row["key"],
        action=row["action"],
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        locked_until=row["locked_until"],
        result_kind=row["result_kind"],
        result_ref=row["result_ref"],
        error_type=row["error_type"],
        error_message=row["error_message"],
    )
