"""What `EscrowService.reconcile` returns: a `ReconciliationReport` of typed `Discrepancy`
values (the kinds are `DiscrepancyKind`), each saying what the books say, what the gateway says
and what to do, with the runbook section about its kind."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

#: Where each kind's section of the runbook is (``RUNBOOK#<kind>``).
RUNBOOK: Final = "docs/operations.md"


class DiscrepancyKind(enum.StrEnum):
    """What kind of disagreement between the books and the gateway a `Discrepancy` is."""

    #: The gateway's payment succeeded; the books still await funding (or never booked it).
    FUNDING_MISSED = "funding_missed"
    #: A refund's outcome (succeeded, failed, or a refund made outside) is not in the books.
    REFUND_OUTCOME_MISSED = "refund_outcome_missed"
    #: A reversal of a booked transfer is not in the books.
    REVERSAL_MISSED = "reversal_missed"
    #: A dispute, or its withdrawal, reinstatement or closing, is not in the books.
    DISPUTE_MISSED = "dispute_missed"
    #: An object naming this deployment (or in an escrow's transfer group) that the books
    #: never booked: a second transfer for one operation, a transfer made outside.
    UNBOOKED_OBJECT = "unbooked_object"
    #: The books name an object the gateway does not have.
    MISSING_OBJECT = "missing_object"
    #: The books and the gateway disagree on an amount.
    AMOUNT_MISMATCH = "amount_mismatch"
    #: The books and the gateway disagree on whether money moved.
    STATUS_MISMATCH = "status_mismatch"
    #: The platform balance (available + pending) is below what the escrows hold.
    RESERVE_BREACH = "reserve_breach"


@attrs.frozen
class Discrepancy:
    """One disagreement between the books and the gateway.

    Attributes:
        kind: what kind of disagreement (`DiscrepancyKind`).
        escrow_id, operation_id: where the books are concerned, when known.
        gateway_ref: the gateway object (``pi_...``, ``tr_...``, ``re_...``, ``trr_...``,
            ``dp_...``), or the currency of a reserve breach.
        ours: what the books say.
        theirs: what the gateway says.
        action: what to do about it; `runbook` is the section of the runbook that says more.
        repairable: ``reconcile(repair=True)`` adopts the gateway's truth for it.
        repaired: this run adopted it (the books now say what the gateway says).
    """

    kind: DiscrepancyKind
    escrow_id: str | None
    operation_id: str | None
    gateway_ref: str | None
    ours: str
    theirs: str
    action: str
    repairable: bool = False
    repaired: bool = False

    @property
    def runbook(self) -> str:
        """The runbook section about this kind, e.g. ``docs/operations.md#funding_missed``."""
        return f"{RUNBOOK}#{self.kind.value}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, `runbook` included."""
        return {
            "kind": self.kind.value,
            "escrow_id": self.escrow_id,
            "operation_id": self.operation_id,
            "gateway_ref": self.gateway_ref,
            "ours": self.ours,
            "theirs": self.theirs,
            "action": self.action,
            "runbook": self.runbook,
            "repairable": self.repairable,
            "repaired": self.repaired,
        }


@attrs.frozen
class ReconciliationReport:
    """What one `reconcile()` run found (and, with ``repair=True``, adopted).

    Attributes:
        discrepancies: every disagreement found, repaired ones included (`Discrepancy.repaired`).
        escrows_checked: escrows whose books were walked.
        objects_read: gateway objects read (listed or fetched; reversals inside transfers and
            the balance not counted).
        duration: how long the run took.
        errors: what could not be checked (an object the gateway would not show, a repair
            that failed); the run went on without it.
        since, until: the window compared; None when open, both None for escrow ids.
    """

    discrepancies: tuple[Discrepancy, ...]
    escrows_checked: int
    objects_read: int
    duration: timedelta
    errors: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def unresolved(self) -> tuple[Discrepancy, ...]:
        """The discrepancies this run did not repair: a person must look at them."""
        return tuple(d for d in self.discrepancies if not d.repaired)

    @property
    def repaired(self) -> tuple[Discrepancy, ...]:
        """The discrepancies this run repaired."""
        return tuple(d for d in self.discrepancies if d.repaired)

    @property
    def clean(self) -> bool:
        """True when nothing was found and nothing failed."""
        return not self.discrepancies and not self.errors

    def counts(self) -> dict[str, int]:
        """How many discrepancies of each kind were found, by kind value (kinds found only)."""
        counts: dict[str, int] = {}
        for discrepancy in self.discrepancies:
            counts[discrepancy.kind.value] = counts.get(discrepancy.kind.value, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the summary, then every discrepancy and error."""
        return {
            "clean": self.clean,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "escrows_checked": self.escrows_checked,
            "objects_read": self.objects_read,
            "duration_seconds": round(self.duration.total_seconds(), 3),
            "counts": self.counts(),
            "repaired": len(self.repaired),
            "unresolved": len(self.unresolved),
            "discrepancies": [d.to_dict() for d in self.discrepancies],
            "errors": list(self.errors),
        }
