"""Records kept beside the money state: audit trail, idempotency, webhook event log."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs


@attrs.frozen
class AuditRecord:
    """One append-only audit line: who did what to which escrow, and what changed."""

    action: str
    actor_id: str
    escrow_id: str | None
    created_at: datetime
    allowed: bool = True
    operation_id: str | None = None
    before: Mapping[str, Any] = attrs.field(factory=dict)
    after: Mapping[str, Any] = attrs.field(factory=dict)
    correlation_id: str | None = None
    detail: str | None = None
    seq: int | None = None


@attrs.frozen
class IdempotencyRecord:
    """The stored outcome of a host call made with an idempotency key.

    `fingerprint` identifies the call's parameters; `result_kind`/`result_ref` point at what
    the first call produced (an escrow, operation or payee id); a definitive error is kept as
    `error_type` and `error_message` and raised again on replay. `locked_until` is the lease
    of the call still running.
    """

    actor_id: str
    key: str
    action: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    locked_until: datetime | None = None
    result_kind: str | None = None
    result_ref: str | None = None
    error_type: str | None = None
    error_message: str | None = None

    @property
    def finished(self) -> bool:
        """True once the first call produced a result or a definitive error."""
        return self.result_ref is not None or self.error_type is not None


class WebhookStatus(enum.StrEnum):
    """What became of a webhook event."""

    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


@attrs.frozen
class WebhookEventRecord:
    """One gateway event seen by the library. Raw payloads are kept only for failed events."""

    id: str
    type: str
    status: WebhookStatus
    received_at: datetime
    processed_at: datetime | None = None
    attempts: int = 1
    error: str | None = None
    payload: str | None = None
