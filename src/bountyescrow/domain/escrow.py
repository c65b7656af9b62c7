"""The escrow aggregate: one poster's money held for one bounty."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.money import Money


class EscrowStatus(enum.StrEnum):
    """Where an escrow stands, derived from confirmed amounts and open disputes."""

    AWAITING_FUNDING = "awaiting_funding"
    FUNDED = "funded"  #: held, nothing paid out yet
    PARTIALLY_SETTLED = "partially_settled"  #: some paid out or refunded, some still held
    RELEASED = "released"  #: everything went to payees
    REFUNDED = "refunded"  #: everything went back to the poster
    SETTLED = "settled"  #: nothing held, a mix of outcomes
    DISPUTED = "disputed"  #: a dispute or fraud warning is open: frozen
    CANCELLED = "cancelled"


@attrs.frozen
class Escrow:
    """Money held for one bounty, with every confirmed amount.

    Invariant I1: ``funded + shortfall == held + released + refunded + dispute_withdrawn``.
    `refunded` and `dispute_withdrawn` count all the money that left at the gateway;
    `shortfall` is the escrow's debt, what left beyond what `held` could cover, paid first
    from any money that comes back (so while it is positive, `available` is zero).
    `reserved` is the part of `held` that open operations keep; `available` is the rest.
    `client_secret` is set only on the value `open_escrow` returns; it is never stored,
    logged or shown in `repr`.
    """

    id: str
    bounty_id: str
    poster_id: str
    amount: Money
    fee_schedule: FeeSchedule
    transfer_group: str
    created_at: datetime
    funded: Money
    held: Money
    reserved: Money
    released: Money
    refunded: Money
    fees: Money
    dispute_withdrawn: Money
    shortfall: Money
    request_id: str | None = None
    payment_ref: str | None = None
    charge_ref: str | None = None
    payment_status: str | None = None
    last_payment_error: str | None = None
    cancelled: bool = False
    fixed_fee_charged: bool = False
    open_disputes: frozenset[str] = frozenset()
    fraud_warning: bool = False
    funded_at: datetime | None = None
    version: int = 0
    client_secret: str | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def new(
        cls,
        *,
        id: str,
        bounty_id: str,
        poster_id: str,
        amount: Money,
        fee_schedule: FeeSchedule,
        created_at: datetime,
        request_id: str | None = None,
    ) -> Escrow:
        """An escrow awaiting funding, with nothing confirmed yet."""
        zero = Money.zero(amount.currency)
        return cls(
            id=id,
            bounty_id=bounty_id,
            poster_id=poster_id,
            amount=amount,
            fee_schedule=fee_schedule,
            transfer_group=f"escrow_{id}",
            created_at=created_at,
            request_id=request_id,
            funded=zero,
            held=zero,
            reserved=zero,
            released=zero,
            refunded=zero,
            fees=zero,
            dispute_withdrawn=zero,
            shortfall=zero,
        )

    @property
    def currency(self) -> str:
        """The escrow's one currency."""
        return self.amount.currency

    @property
    def available(self) -> Money:
        """Held money that no open operation reserves."""
        return self.held - self.reserved

    @property
    def frozen(self) -> bool:
        """True while a dispute is open, or an early fraud warning while money is held.

        A fraud warning guards the money still held; once nothing is held (refunded in
        full) there is nothing left to guard, so it no longer freezes.
        """
        return bool(self.open_disputes) or (self.fraud_warning and self.held.is_positive)

    @property
    def status(self) -> EscrowStatus:
        """The status, derived from amounts and open disputes, never stored."""
        if self.frozen:
            return EscrowStatus.DISPUTED
        if not self.funded:
            return EscrowStatus.CANCELLED if self.cancelled else EscrowStatus.AWAITING_FUNDING
        paid_out = (self.released, self.refunded, self.dispute_withdrawn)
        if self.held:
            return EscrowStatus.PARTIALLY_SETTLED if any(paid_out) else EscrowStatus.FUNDED
        if self.released and not self.refunded and not self.dispute_withdrawn:
            return EscrowStatus.RELEASED
        if self.refunded and not self.released and not self.dispute_withdrawn:
            return EscrowStatus.REFUNDED
        return EscrowStatus.SETTLED

    @property
    def is_open(self) -> bool:
        """True while the escrow awaits funding or holds money (blocks a second escrow)."""
        if self.cancelled and not self.funded:
            return False
        return not self.funded or bool(self.held)
