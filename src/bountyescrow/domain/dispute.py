"""Disputes (chargebacks and inquiries) on an escrow's payment."""

from __future__ import annotations

from datetime import datetime

import attrs

from bountyescrow.domain.money import Money

#: Stripe dispute statuses after which the dispute no longer freezes the escrow.
CLOSED_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})


@attrs.frozen
class Dispute:
    """One dispute, keyed by the gateway's id.

    `from_held` and `from_shortfall` record where withdrawn money was taken from, so a
    reinstatement gives back exactly what was taken.
    """

    id: str
    escrow_id: str
    amount: Money
    status: str
    reason: str | None
    withdrawn: Money
    reinstated: Money
    from_held: Money
    from_shortfall: Money
    created_at: datetime
    updated_at: datetime
    #: Whether the disputed charge may still be refunded (an inquiry allows it, a chargeback
    #: usually does not).
    charge_refundable: bool = True

    @property
    def open(self) -> bool:
        """True while the dispute freezes its escrow."""
        return self.status not in CLOSED_STATUSES

    @property
    def is_inquiry(self) -> bool:
        """True for inquiries (``warning_*``), which take no money."""
        return self.status.startswith("warning_")
