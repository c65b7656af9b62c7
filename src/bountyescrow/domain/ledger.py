"""The double-entry ledger: balanced journal entries over named accounts.

Sign convention: every entry's postings sum to zero per currency. An account's balance is the
sum of its postings, so `escrow:<id>` is positive while money is held and `payee:<id>` is what
that payee has received. `gateway:<currency>` is the counterpart of money entering and leaving
through the payment provider (negative: money came in); `platform:shortfall` is negative by what
the platform paid out of its own money (disputes or outside refunds beyond what was held).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import attrs

from bountyescrow.domain.money import Money

PLATFORM_FEES = "platform:fees"
PLATFORM_STRIPE_FEES = "platform:stripe_fees"
PLATFORM_SHORTFALL = "platform:shortfall"


def gateway_account(currency: str) -> str:
    """The account for money at the payment provider in `currency`."""
    return f"gateway:{currency}"


def escrow_account(escrow_id: str) -> str:
    """The account holding one escrow's money."""
    return f"escrow:{escrow_id}"


def payee_account(payee_id: str) -> str:
    """The account of what one payee has received."""
    return f"payee:{payee_id}"


@attrs.frozen
class Posting:
    """One line of a journal entry: `amount` credited to `account` (negative: debited)."""

    account: str
    amount: Money


def _check_balanced(
    instance: JournalEntry,
    attribute: attrs.Attribute[tuple[Posting, ...]],
    value: tuple[Posting, ...],
) -> None:
    totals: dict[str, int] = defaultdict(int)
    for posting in value:
        totals[posting.amount.currency] += posting.amount.amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise ValueError(f"journal entry does not balance: {unbalanced}")


@attrs.frozen
class JournalEntry:
    """A balanced set of postings recording one money effect.

    `ref` names what caused it (a gateway object id, or an operation id); the store keeps at
    most one entry per (`kind`, `ref`), so a refund reported by four events is booked once.
    """

    escrow_id: str
    kind: str
    ref: str
    postings: tuple[Posting, ...] = attrs.field(validator=_check_balanced)
    operation_id: str | None = None
    created_at: datetime | None = None
    seq: int | None = None

    @classmethod
    def of(
        cls,
        escrow_id: str,
        kind: str,
        ref: str,
        *postings: tuple[str, Money],
        operation_id: str | None = None,
    ) -> JournalEntry:
        """Build an entry from (account, amount) pairs, dropping zero amounts."""
        return cls(
            escrow_id=escrow_id,
            kind=kind,
            ref=ref,
            postings=tuple(Posting(a, m) for a, m in postings if m.amount),
            operation_id=operation_id,
        )


def balances(entries: Iterable[JournalEntry]) -> dict[tuple[str, str], int]:
    """Sum postings per (account, currency)."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            totals[(posting.account, posting.amount.currency)] += posting.amount.amount
    return dict(totals)
