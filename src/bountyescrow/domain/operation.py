"""Operations: every movement of money the library makes or adopts, with its status."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from bountyescrow.domain.gateway_objects import GatewayRequest
from bountyescrow.domain.money import Money


class OperationKind(enum.StrEnum):
    """What an operation does."""

    FUNDING = "funding"  #: the poster's payment into the escrow
    RELEASE = "release"  #: a transfer to a payee
    REFUND = "refund"  #: money back to the poster
    REVERSAL = "reversal"  #: a release pulled back from the payee
    CANCEL = "cancel"  #: cancelling the payment before it succeeded
    EXTERNAL_REFUND = "external_refund"  #: a refund made outside the library
    EXTERNAL_REVERSAL = "external_reversal"  #: a reversal made outside the library


class OperationStatus(enum.StrEnum):
    """Where an operation stands."""

    PENDING = "pending"  #: recorded; the gateway call is under way, unknown or awaited
    AWAITING_PAYEE = "awaiting_payee"  #: a release waiting for the payee's account to be ready
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        """True while the operation may still move money."""
        return self in (OperationStatus.PENDING, OperationStatus.AWAITING_PAYEE)


#: Kinds whose open operations reserve part of the escrow's held money.
RESERVING_KINDS = frozenset({OperationKind.RELEASE, OperationKind.REFUND})


@attrs.frozen
class Operation:
    """One money movement and its lifecycle.

    Amounts: `gross` is what leaves (or, for reversals, returns to) the escrow's held money;
    `fee` is the platform's part of it; `net` is what moves at the gateway. For refunds
    `fee` is zero; for reversals `fee` is the fee share given back. `shortfall` is what an
    adopted outside refund took beyond the escrow's available money.
    """

    id: str
    escrow_id: str
    kind: OperationKind
    status: OperationStatus
    gross: Money
    fee: Money
    net: Money
    actor_id: str
    created_at: datetime
    updated_at: datetime
    payee_id: str | None = None
    gateway_ref: str | None = None
    gateway_status: str | None = None
    error: str | None = None
    #: For reversals: the release operation being reversed.
    target_id: str | None = None
    #: The exact request sent to the gateway, stored before it is sent.
    request: GatewayRequest | None = None
    generation: int = 0
    #: When the current `generation`'s key was first sent (the gateway's 24 h key window
    #: runs from then, not from `created_at`: a release may wait days for its payee).
    sent_at: datetime | None = None
    claimed_until: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    #: For releases: the fixed fee included in `fee`.
    fixed_fee: Money | None = None
    #: For releases: net amount reversed so far (by reversals that succeeded).
    reversed: Money | None = None
    shortfall: Money | None = None
    reason: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None

    @property
    def reserves(self) -> Money:
        """The part of the escrow's held money this operation keeps from others."""
        if self.kind in RESERVING_KINDS and self.status.open:
            return self.gross
        return Money.zero(self.gross.currency)
