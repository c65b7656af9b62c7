"""The money invariants of DESIGN §5, checked over one escrow's records.

`violations` returns human-readable problems; an empty list means I1-I4 hold.
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
    if e.funded != total:
        problems.append(
            f"I1 {e.id}: funded {e.funded} != held + released + refunded + withdrawn {total}"
        )
    # I2
    if e.held.amount < 0:
        problems.append(f"I2 {e.id}: held is negative ({e.held})")
    reserved = sum((op.reserves.amount for op in operations), 0)
    if reserved != e.reserved.amount:
        problems.append(f"I2 {e.id}: open operations reserve {reserved}, escrow says {e.reserved}")
    if e.reserved > e.held:
        problems.append(f"I2 {e.id}: reserved {e.reserved} exceeds held {e.held}")
    # I3
    for entry in entries:
        sums = Counter[str]()
        for posting in entry.postings:
            sums[posting.amount.currency] += posting.amount.amount
        if any(sums.values()):
            problems.append(f"I3 {e.id}: entry {entry.kind}/{entry.ref} does not balance")
    held_in_ledger = ledger.balances(entries).get((ledger.escrow_account(e.id), e.currency), 0)
    if held_in_ledger != e.held.amount:
        problems.append(f"I3 {e.id}: ledger holds {held_in_ledger}, escrow says {e.held.amount}")
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
                if entry.operation_id == op.id and entry.kind not in ("refund_failed",)
            )
            if n != 1:
                problems.append(f"I4 {e.id}: succeeded {op.kind.value} {op.id} has {n} entries")
    return problems
