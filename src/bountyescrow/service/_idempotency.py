"""Idempotency of host calls (DESIGN §11): fingerprints, stored results and errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from bountyescrow import errors
from bountyescrow.domain.money import Money
from bountyescrow.domain.records import IdempotencyRecord
from bountyescrow.errors import (
    BountyEscrowError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
)
from bountyescrow.ports.store import UnitOfWork

#: Domain errors that are definitive for a given call: stored and raised again on replay.
STORED_ERRORS: tuple[type[BountyEscrowError], ...] = (
    errors.InvalidTransitionError,
    errors.InsufficientFundsError,
    errors.EscrowExistsError,
)


def _plain(value: Any) -> Any:
    if isinstance(value, Money):
        return {"amount": value.amount, "currency": value.currency}
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def fingerprint(action: str, params: Mapping[str, Any]) -> str:
    """A stable digest of a call's action and parameters."""
    body = json.dumps(
        [action, {k: _plain(v) for k, v in params.items()}], sort_keys=True, default=str
    )
    return hashlib.sha256(body.encode()).hexdigest()


def existing(
    uow: UnitOfWork, *, actor_id: str, key: str, action: str, print_: str, now: datetime
) -> IdempotencyRecord | None:
    """The record of an earlier call with this key, after checking it may be replayed.

    Raises:
        IdempotencyConflictError: the key was used with other parameters.
        IdempotencyInProgressError: the first call still holds its lease.
        BountyEscrowError: the stored definitive error of the first call.
    """
    record = uow.idempotency.get(actor_id, key, for_update=True)
    if record is None:
        return None
    if record.expires_at <= now:
        return None
    if record.fingerprint != print_ or record.action != action:
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was used for another {record.action} call with other "
            "parameters; use a new key for a new request"
        )
    if record.error_type is not None:
        raise rebuild_error(record)
    if record.locked_until is not None and record.locked_until > now:
        raise IdempotencyInProgressError(
            f"a call with idempotency key {key!r} is still running; retry with the same key "
            f"after {record.locked_until:%H:%M:%S}"
        )
    return record


def store_error(record: IdempotencyRecord, exc: BountyEscrowError) -> IdempotencyRecord:
    """The record of a call that ended with a definitive domain error."""
    details = {k: _plain(v) if isinstance(v, Money) else v for k, v in exc.details.items()}
    return attrs.evolve(
        record,
        error_type=type(exc).__name__,
        error_message=json.dumps({"message": exc.message, "details": details}, default=str),
        locked_until=None,
    )


def rebuild_error(record: IdempotencyRecord) -> BountyEscrowError:
    """The stored error of a first call, to raise again."""
    cls = getattr(errors, record.error_type or "", BountyEscrowError)
    data = json.loads(record.error_message or "{}")
    details = {k: _money_or_value(v) for k, v in data.get("details", {}).items()}
    exc: BountyEscrowError = cls.__new__(cls)
    BountyEscrowError.__init__(exc, data.get("message", ""), **details)
    for name, value in details.items():
        setattr(exc, name, value)
    return exc


def _money_or_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return Money(value["amount"], value["currency"])
    return value
