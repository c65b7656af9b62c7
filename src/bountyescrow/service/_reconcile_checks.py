"""Reconciliation's comparisons: one gateway object against the books, in a unit of work.

Each check looks the object up the way the event applier would (by its id among the
operations, by the operation its metadata names, by its PaymentIntent), decides whether the
books agree with it, and notes each disagreement on the run, with the object to apply when
applying it as its webhook would have is all the books need (and moves no money).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import attrs

from bountyescrow.domain import transitions as tr
from bountyescrow.domain.gateway_objects import (
    META_NAMESPACE,
    DisputeSnapshot,
    GatewayObject,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._reconcile_report import Discrepancy, DiscrepancyKind

REFUNDS: Final = (OperationKind.REFUND, OperationKind.EXTERNAL_REFUND)
REVERSALS: Final = (OperationKind.REVERSAL, OperationKind.EXTERNAL_REVERSAL)
#: Refund statuses in which the money has left the platform balance.
_REFUND_OUT: Final = frozenset({"succeeded", "pending", "requires_action"})

ADOPT: Final = "reconcile --repair adopts it, as its webhook would have"
MISMATCH: Final = (
    "stop and investigate: the library books what the gateway reports, so this is a bug or a "
    "row changed by hand; do not correct rows by hand"
)
MISSING: Final = (
    "check that the API key is of the account (and mode) the books were made with; then "
    "investigate: the library never deletes gateway objects"
)
_SURPLUS: Final = (
    "a payment beyond the escrow's amount (a second payment or an overpayment): booking it "
    "refunds the surplus to the payer, so repair leaves it to a person; replay its "
    "payment_intent.succeeded event to let the library book and refund it, or refund it in "
    "the Dashboard"
)
_AFTER_CANCEL: Final = (
    "a payment succeeded for an escrow the books cancelled: replay its payment_intent.succeeded "
    "event (the library books it and refunds it at once), or refund it in the Dashboard"
)
_PHANTOM_FUNDING: Final = (
    "the books hold money the gateway never received: stop releases from this escrow and "
    "investigate"
)
_UNBOOKED_TRANSFER: Final = (
    "money left for no operation the books know (a second transfer for one operation, or one "
    "made outside the library): reverse it in the Dashboard (a full reversal leaves nothing to "
    "report), or settle it with the payee"
)
_CLOSED_RELEASE: Final = (
    "money left for a release the books say never sent any: reverse the transfer in the "
    "Dashboard (a full reversal leaves nothing to report)"
)
_SECOND: Final = (
    "money moved twice for one operation: the first object is the one booked; settle the "
    "second by hand"
)
_CLOSED_REFUND: Final = (
    "money went back to the payer for a refund the books say did not happen: the escrow shows "
    "money the gateway no longer holds; investigate before releasing from it"
)


@attrs.frozen
class At:
    """Where a discrepancy is: escrow, operation and gateway object (or currency)."""

    escrow_id: str | None
    gateway_ref: str | None
    operation_id: str | None = None


@attrs.define
class Finding:
    """A discrepancy, and the object repair applies for it (None: nothing to apply)."""

    discrepancy: Discrepancy
    adopt: GatewayObject | None = None


@attrs.define
class Run:
    """One reconciliation run: its window, what it read and what it found."""

    now: datetime
    since: datetime | None
    until: datetime | None
    findings: list[Finding] = attrs.Factory(list)
    keys: set[tuple[str, str | None, str | None]] = attrs.Factory(set)
    #: Every gateway object read, by id (reversals included).
    seen: set[str] = attrs.Factory(set)
    errors: list[str] = attrs.Factory(list)
    objects_read: int = 0
    escrows_checked: int = 0

    def add(
        self,
        kind: DiscrepancyKind,
        at: At,
        *,
        ours: str,
        theirs: str,
        action: str,
        adopt: GatewayObject | None = None,
    ) -> None:
        """Note a discrepancy (once per kind, object and operation)."""
        key = (kind.value, at.gateway_ref, at.operation_id)
        if key in self.keys:
            return
        self.keys.add(key)
        discrepancy = Discrepancy(
            kind=kind,
            escrow_id=at.escrow_id,
            operation_id=at.operation_id,
            gateway_ref=at.gateway_ref,
            ours=ours,
            theirs=theirs,
            action=action,
            repairable=adopt is not None,
        )
        self.findings.append(Finding(discrepancy, adopt))

    def in_window(self, created: datetime, *moments: datetime | None) -> bool:
        """Whether a record created at `created` and touched at `moments` is the window's."""
        if self.until is not None and created >= self.until:
            return False
        if self.since is None:
            return True
        return max([created, *(m for m in moments if m is not None)]) >= self.since

    def in_flight(self, op: Operation) -> bool:
        """A caller holds the operation's lease: its own record step may be under way."""
        return op.claimed_until is not None and op.claimed_until > self.now


def refs(obj: GatewayObject) -> list[str]:
    """The ids an object brings: its own, and a transfer's reversals'."""
    if isinstance(obj, TransferSnapshot):
        return [obj.ref, *(r.ref for r in obj.reversals)]
    return [obj.ref]


class ObjectChecks:
    """Compares one gateway object at a time with the books of this deployment."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def check(self, uow: UnitOfWork, run: Run, obj: GatewayObject) -> None:
        """Compare `obj` with the books; note what disagrees on `run`."""
        if isinstance(obj, PaymentSnapshot):
            self._payment(uow, run, obj)
        elif isinstance(obj, TransferSnapshot):
            self._transfer(uow, run, obj)
        elif isinstance(obj, RefundSnapshot):
            self._refund(uow, run, obj)
        elif isinstance(obj, DisputeSnapshot):
            self._dispute(uow, run, obj)

    def _foreign(
        self, obj: PaymentSnapshot | TransferSnapshot | RefundSnapshot | ReversalSnapshot
    ) -> bool:
        """Whether the object's metadata names another deployment."""
        namespace = obj.metadata.get(META_NAMESPACE)
        return namespace is not None and namespace != self.namespace

    # --- payments -----------------------------------------------------------------------------

    def _payment(self, uow: UnitOfWork, run: Run, payment: PaymentSnapshot) -> None:
        if self._foreign(payment):
            return
        escrow_id, op_id = tr.metadata_of(payment.metadata)
        funding = uow.operations.by_gateway_ref(OperationKind.FUNDING, payment.ref)
        named = uow.operations.get(op_id) if op_id else None
        escrow = uow.escrows.get(funding.escrow_id if funding else (escrow_id or ""))
        received = payment.amount_received if payment.amount_received else payment.amount
        paid = f"payment succeeded, {received} received"
        if escrow is None:
            if payment.status == "succeeded":
                run.add(
                    DiscrepancyKind.UNBOOKED_OBJECT,
                    At(escrow_id, payment.ref, op_id),
                    ours=f"no escrow {escrow_id}",
                    theirs=paid,
                    action="money came in for an escrow the books do not have: refund it in "
                    "the Dashboard, then find out which deployment made it",
                )
            return
        if (
            funding is None
            and named is not None
            and named.kind is OperationKind.FUNDING
            and named.gateway_ref is None
            and escrow.payment_ref is None
        ):
            funding = named  # its record step was lost: the payment is the escrow's own
        primary = funding is not None and escrow.payment_ref in (None, payment.ref)
        at = At(escrow.id, payment.ref, funding.id if funding else op_id)
        if payment.status == "succeeded":
            if funding is not None and funding.status is OperationStatus.SUCCEEDED:
                if funding.gross != received:
                    run.add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        at,
                        ours=f"funding of {funding.gross}",
                        theirs=paid,
                        action=MISMATCH,
                    )
            elif funding is not None and not funding.status.open:
                run.add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    at,
                    ours=f"funding {funding.status.value}",
                    theirs=paid,
                    action=_AFTER_CANCEL,
                )
            elif funding is None or not run.in_flight(funding):
                surplus = (
                    not primary
                    or escrow.cancelled
                    or escrow.funded.is_positive
                    or received > escrow.amount
                )
                run.add(
                    DiscrepancyKind.FUNDING_MISSED,
                    at,
                    ours=f"funded {escrow.funded}, this payment not booked"
                    if escrow.funded
                    else "awaiting funding",
                    theirs=paid,
                    action=_SURPLUS if surplus else ADOPT,
                    adopt=None if surplus else payment,
                )
        elif funding is not None and funding.status is OperationStatus.SUCCEEDED:
            run.add(
                DiscrepancyKind.STATUS_MISMATCH,
                at,
                ours=f"funded by this payment ({funding.gross})",
                theirs=f"payment {payment.status}",
                action=_PHANTOM_FUNDING,
            )
        elif (
            payment.status == "canceled"
            and funding is not None
            and primary
            and funding.status.open
            and not escrow.funded
            and not escrow.cancelled
            and not run.in_flight(funding)
        ):
            run.add(
                DiscrepancyKind.STATUS_MISMATCH,
                at,
                ours="awaiting funding",
                theirs="payment canceled",
                action=ADOPT + " (the escrow is cancelled)",
                adopt=payment,
            )

    # --- transfers and their reversals --------------------------------------------------------

    @staticmethod
    def _escrow_of_group(uow: UnitOfWork, group: str | None) -> str | None:
        if not group or not group.startswith("escrow_"):
            return None
        escrow = uow.escrows.get(group.removeprefix("escrow_"))
        return escrow.id if escrow is not None and escrow.transfer_group == group else None

    def _transfer(self, uow: UnitOfWork, run: Run, transfer: TransferSnapshot) -> None:
        if self._foreign(transfer):
            return
        escrow_id, op_id = tr.metadata_of(transfer.metadata)
        release = uow.operations.by_gateway_ref(OperationKind.RELEASE, transfer.ref)
        named = uow.operations.get(op_id) if op_id else None
        owner = release or named
        if owner is not None:
            escrow_id = owner.escrow_id
        elif escrow_id is None:
            escrow_id = self._escrow_of_group(uow, transfer.transfer_group)
            if escrow_id is None:
                return  # not ours: no metadata of ours, not in an escrow's group
        reversed_ = sum(r.amount.amount for r in transfer.reversals)
        out = Money(transfer.amount.amount - reversed_, transfer.amount.currency)
        made = f"transfer of {transfer.amount} made"
        if release is not None:
            at = At(escrow_id, transfer.ref, release.id)
            if release.status is OperationStatus.SUCCEEDED:
                if release.net != transfer.amount:
                    run.add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        at,
                        ours=f"release of {release.net} net",
                        theirs=made,
                        action=MISMATCH,
                    )
                self._reversals(uow, run, transfer, release)
            elif release.status.open:
                if not run.in_flight(release):
                    run.add(
                        DiscrepancyKind.STATUS_MISMATCH,
                        at,
                        ours=f"release {release.status.value}",
                        theirs=made,
                        action=ADOPT + " (recover() would book it too)",
                        adopt=transfer,
                    )
            elif out.is_positive:
                self._moved_for_closed(run, at, release, out)
            return
        at = At(escrow_id, transfer.ref, op_id)
        releasing = named is not None and named.kind is OperationKind.RELEASE
        if releasing and named is not None and named.gateway_ref is None and named.status.open:
            # The transfer the operation made, its answer not recorded yet.
            if run.in_flight(named):
                return
            if named.net != transfer.amount:
                run.add(
                    DiscrepancyKind.AMOUNT_MISMATCH,
                    at,
                    ours=f"release of {named.net} net, {named.status.value}",
                    theirs=made,
                    action=MISMATCH,
                )
            else:
                run.add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    at,
                    ours=f"release {named.status.value}",
                    theirs=made,
                    action=ADOPT + " (recover() would book it too)",
                    adopt=transfer,
                )
            return
        if not out.is_positive:
            return  # never booked, and reversed in full at the gateway: nothing moved
        if releasing and named is not None and named.gateway_ref is None:
            self._moved_for_closed(run, at, named, out)
            return
        if releasing and named is not None:
            ours = f"release {named.status.value} with transfer {named.gateway_ref}"
        elif named is not None:
            ours = f"{named.id} is a {named.kind.value}"
        else:
            ours = f"no operation {op_id}" if op_id else "no operation"
        run.add(
            DiscrepancyKind.UNBOOKED_OBJECT,
            at,
            ours=ours,
            theirs=f"{made} to {transfer.destination}, {out} not reversed",
            action=_UNBOOKED_TRANSFER,
        )

    @staticmethod
    def _moved_for_closed(run: Run, at: At, op: Operation, out: Money) -> None:
        run.add(
            DiscrepancyKind.STATUS_MISMATCH,
            at,
            ours=f"release {op.status.value}: no money sent",
            theirs=f"transfer made, {out} not reversed",
            action=_CLOSED_RELEASE,
        )

    def _reversals(
        self, uow: UnitOfWork, run: Run, transfer: TransferSnapshot, release: Operation
    ) -> None:
        """Each reversal of a booked transfer is booked, as the operation that made it or as
        an outside reversal."""
        for reversal in transfer.reversals:
            if self._foreign(reversal):
                continue
            _, op_id = tr.metadata_of(reversal.metadata)
            known = uow.operations.by_gateway_ref(
                OperationKind.REVERSAL, reversal.ref
            ) or uow.operations.by_gateway_ref(OperationKind.EXTERNAL_REVERSAL, reversal.ref)
            named = uow.operations.get(op_id) if op_id else None
            op = known or (named if named and named.kind is OperationKind.REVERSAL else None)
            at = At(release.escrow_id, reversal.ref, op.id if op else op_id)
            theirs = f"transfer {transfer.ref} reversed by {reversal.amount}"
            if op is None:
                run.add(
                    DiscrepancyKind.REVERSAL_MISSED,
                    at,
                    ours="no reversal booked",
                    theirs=theirs,
                    action=ADOPT,
                    adopt=transfer,
                )
            elif known is None and op.gateway_ref is not None:
                self._second(run, at, op, reversal)
            elif op.status is OperationStatus.SUCCEEDED:
                if op.kind is OperationKind.REVERSAL and op.net != reversal.amount:
                    run.add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        at,
                        ours=f"reversal of {op.net}",
                        theirs=theirs,
                        action=MISMATCH,
                    )
            elif op.status.open:
                if not run.in_flight(op):
                    run.add(
                        DiscrepancyKind.REVERSAL_MISSED,
                        at,
                        ours=f"reversal {op.status.value}",
                        theirs=theirs,
                        action=ADOPT,
                        adopt=transfer,
                    )
            else:
                run.add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    at,
                    ours=f"reversal {op.status.value}",
                    theirs=theirs,
                    action="money came back for a reversal the books say failed: investigate",
                )

    @staticmethod
    def _second(run: Run, at: At, op: Operation, obj: ReversalSnapshot | RefundSnapshot) -> None:
        run.add(
            DiscrepancyKind.UNBOOKED_OBJECT,
            at,
            ours=f"{op.kind.value} {op.status.value} with {op.gateway_ref}",
            theirs=f"a second object for the operation, of {obj.amount}",
            action=_SECOND,
        )

    # --- refunds ------------------------------------------------------------------------------

    def _refund(self, uow: UnitOfWork, run: Run, refund: RefundSnapshot) -> None:
        if self._foreign(refund):
            return
        escrow_id, op_id = tr.metadata_of(refund.metadata)
        named = uow.operations.get(op_id) if op_id else None
        op = named or next(
            (o for k in REFUNDS if (o := uow.operations.by_gateway_ref(k, refund.ref))), None
        )
        moved = refund.status in _REFUND_OUT
        theirs = f"refund {refund.status}, {refund.amount}"
        if op is None:
            funding = (
                uow.operations.by_gateway_ref(OperationKind.FUNDING, refund.payment_ref)
                if refund.payment_ref
                else None
            )
            if funding is not None and moved:
                run.add(
                    DiscrepancyKind.REFUND_OUTCOME_MISSED,
                    At(funding.escrow_id, refund.ref),
                    ours="no refund booked",
                    theirs=f"{theirs}, made outside bountyescrow",
                    action=ADOPT,
                    adopt=refund,
                )
            elif funding is None and moved and (escrow_id or op_id):
                run.add(
                    DiscrepancyKind.UNBOOKED_OBJECT,
                    At(escrow_id, refund.ref, op_id),
                    ours="no such escrow or operation",
                    theirs=theirs,
                    action="a refund names this deployment but nothing the books know: investigate",
                )
            return
        at = At(op.escrow_id, refund.ref, op.id)
        if op.kind not in REFUNDS:
            if moved:
                run.add(
                    DiscrepancyKind.UNBOOKED_OBJECT,
                    at,
                    ours=f"{op.id} is a {op.kind.value}",
                    theirs=theirs,
                    action="a refund names an operation that is no refund: investigate",
                )
            return
        if op.gateway_ref is not None and op.gateway_ref != refund.ref:
            if moved:
                self._second(run, at, op, refund)
            return
        status = op.status
        ours = f"{op.kind.value} {status.value}"
        missed = not run.in_flight(op)
        if refund.status == "succeeded":
            if status is OperationStatus.SUCCEEDED:
                if op.gross != refund.amount:
                    run.add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        at,
                        ours=f"{ours}, {op.gross}",
                        theirs=theirs,
                        action=MISMATCH,
                    )
                return
            if not status.open:
                self._refund_for_closed(run, at, ours, theirs)
                return
        elif refund.status in ("failed", "canceled"):
            missed = missed and (status is OperationStatus.SUCCEEDED or status.open)
        else:  # pending or requires_action: the money is out, the outcome not known yet
            if status is OperationStatus.SUCCEEDED and op.kind is OperationKind.REFUND:
                run.add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    at,
                    ours=ours,
                    theirs=theirs,
                    action="the books call a refund done that the gateway still has pending: "
                    "investigate",
                )
            elif not status.open and status is not OperationStatus.SUCCEEDED:
                self._refund_for_closed(run, at, ours, theirs)
            return
        if missed:
            run.add(
                DiscrepancyKind.REFUND_OUTCOME_MISSED,
                at,
                ours=ours,
                theirs=theirs,
                action=ADOPT,
                adopt=refund,
            )

    @staticmethod
    def _refund_for_closed(run: Run, at: At, ours: str, theirs: str) -> None:
        run.add(
            DiscrepancyKind.STATUS_MISMATCH, at, ours=ours, theirs=theirs, action=_CLOSED_REFUND
        )

    # --- disputes -----------------------------------------------------------------------------

    @staticmethod
    def _dispute(uow: UnitOfWork, run: Run, dispute: DisputeSnapshot) -> None:
        booked = uow.disputes.get(dispute.ref)
        funding = (
            uow.operations.by_gateway_ref(OperationKind.FUNDING, dispute.payment_ref)
            if dispute.payment_ref
            else None
        )
        escrow_id = booked.escrow_id if booked else funding.escrow_id if funding else None
        if escrow_id is None:
            return  # not a payment of ours
        at = At(escrow_id, dispute.ref)
        theirs = (
            f"dispute {dispute.status}, {dispute.funds_withdrawn} withdrawn, "
            f"{dispute.funds_reinstated} reinstated"
        )
        if booked is None:
            run.add(
                DiscrepancyKind.DISPUTE_MISSED,
                at,
                ours="no dispute booked",
                theirs=theirs,
                action=ADOPT + "; then follow the dispute steps",
                adopt=dispute,
            )
            return
        ours = (
            f"dispute {booked.status}, {booked.withdrawn} withdrawn, {booked.reinstated} reinstated"
        )
        if (
            booked.withdrawn > dispute.funds_withdrawn
            or booked.reinstated > dispute.funds_reinstated
        ):
            run.add(DiscrepancyKind.AMOUNT_MISMATCH, at, ours=ours, theirs=theirs, action=MISMATCH)
        elif (
            booked.withdrawn != dispute.funds_withdrawn
            or booked.reinstated != dispute.funds_reinstated
            or booked.status != dispute.status
        ):
            run.add(
                DiscrepancyKind.DISPUTE_MISSED,
                at,
                ours=ours,
                theirs=theirs,
                action=ADOPT,
                adopt=dispute,
            )
