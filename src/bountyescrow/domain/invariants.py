"""The money invariants of DESIGN §5, checked over one escrow's records.

`violations` returns human-readable problems; an empty list means they all hold:

- I1 ``funded + shortfall == held + released + refunded + dispute_withdrawn``: `refunded`
  and `dispute_withdrawn` count all the money that left at the gateway, and `shortfall` is
  the escrow's debt, what left beyond what `held` could cover.
- I2 ``held >= 0``; open operations reserve exactly `reserved`, never more than `held`;
  while there is debt (``shortfall > 0``) nothing is available (``available == 0``): every
  available cent pays the debt first.
- I3 every entry balances; the ledger's ``escrow:<id>`` equals `held` and
  ``platform:shortfall`` equals minus the debt.
- I4 one gateway object per operation, one ledger effect per gateway object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bountyescrow.domain import ledger
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus

#: Kinds whose succeeded operations moved money at the gateway and carry its object id.
MOVING_KINDS = frozenset(
    {
        OperationKind.RELEASE,
        OperationKind.REFUND,
        OperationKind.REVERSAL,
        OperationKind.EXTERNAL_REFUND,
        OperationKind.EXTERNAL_REVERSAL,
        OperationKind.FUNDING,
    }
)


def violations(
    escrow: Escrow, operations: Sequence[Operation], entries: Sequence[JournalEntry]
) -> list[str]:
    """Check I1-I4 for one escrow and return what is wrong."""
    problems: list[str] = []
    e = escrow
    amounts = (
        e.funded,
        e.held,
        e.reserved,
        e.released,
        e.refunded,
        e.fees,
        e.dispute_withdrawn,
        e.shortfall,
    )
    if any(m.currency != e.currency for m in amounts):
        problems.append(f"{e.id}: amounts in more than one currency")
        return problems
    # I1
    total = e.held + e.released + e.refunded + e.dispute_withdrawn
    if e.funded + e.shortfall != total:
        problems.append(
            f"I1 {e.id}: funded + shortfall {e.funded + e.shortfall} != held + released + "
            f"refunded + withdrawn {total}"
        )
    # I2
    if e.held.amount < 0:
        problems.append(f"I2 {e.id}: held is negative ({e.held})")
    reserved = sum((op.reserves.amount for op in operations), 0)
    if reserved != e.reserved.amount:
        problems.append(f"I2 {e.id}: open operations reserve {reserved}, escrow says {e.reserved}")
    if e.reserved > e.held:
        problems.append(f"I2 {e.id}: reserved {e.reserved} exceeds held {e.held}")
    if e.shortfall.amount < 0:
        problems.append(f"I2 {e.id}: shortfall is negative ({e.shortfall})")
    if e.shortfall.is_positive and e.available.is_positive:
        problems.append(
            f"I2 {e.id}: {e.available} is available while the escrow owes {e.shortfall}"
        )
    # I3
    for entry in entries:
        sums = Counter[str]()
        for posting in entry.postings:
            sums[posting.amount.currency] += posting.amount.amount
        if any(sums.values()):
            problems.append(f"I3 {e.id}: entry {entry.kind}/{entry.ref} does not balance")
    totals = ledger.balances(entries)
    held_in_ledger = totals.get((ledger.escrow_account(e.id), e.currency), 0)
    if held_in_ledger != e.held.amount:
        problems.append(f"I3 {e.id}: ledger holds {held_in_ledger}, escrow says {e.held.amount}")
    debt_in_ledger = -totals.get((ledger.PLATFORM_SHORTFALL, e.currency), 0)
    if debt_in_ledger != e.shortfall.amount:
        problems.append(
            f"I3 {e.id}: ledger says the escrow owes {debt_in_ledger}, escrow says "
            f"{e.shortfall.amount}"
        )
    # I4
    refs = Counter(
        (op.kind, op.gateway_ref)
        for op in operations
        if op.gateway_ref and op.kind in MOVING_KINDS and op.kind is not OperationKind.FUNDING
    )
    problems.extend(
        f"I4 {e.id}: {kind.value} {ref} recorded by {n} operations"
        for (kind, ref), n in refs.items()
        if n > 1
    )
    booked = Counter((entry.kind, entry.ref) for entry in entries)
    problems.extend(
        f"I4 {e.id}: {kind} {ref} booked {n} times" for (kind, ref), n in booked.items() if n > 1
    )
    for op in operations:
        if op.status is OperationStatus.SUCCEEDED and op.kind in MOVING_KINDS:
            n = sum(
                1
                for entry in entries
                if entry.operation_id == op.id and entry.kind != "refund_failed"
            )
            if n != 1:
                problems.append(f"I4 {e.id}: succeeded {op.kind.value} {op.id} has {n} entries")
    return problems
