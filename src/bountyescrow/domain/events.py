"""Domain events: what happened, for the host's outbox readers and hooks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs


@attrs.frozen
class DomainEvent:
    """One thing that happened, such as ``escrow.funded`` or ``operation.succeeded``.

    `seq` is the position in the store's event log (assigned on commit) and is the cursor for
    `EscrowService.events(after=...)`.
    """

    type: str
    escrow_id: str | None
    operation_id: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    created_at: datetime | None = None
    seq: int | None = None
