"""Applying what the gateway reports (webhook events, polled objects) to escrows.

Every handler runs inside the caller's unit of work, resolves the object to its escrow and
operation, and applies it by state through the pure transitions, so the same object applied
twice, or objects applied out of order, book money once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from bountyescrow._alerts import alert
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    DisputeSnapshot,
    FraudWarningSnapshot,
    GatewayObject,
    PaymentSnapshot,
    PayoutSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.domain.transitions import GATEWAY_ACTOR, Outcome
from bountyescrow.errors import EventNotReadyError
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._context import ServiceContext, log, new_id, stored_escrow


@attrs.define
class Applied:
    """What applying one gateway object did, and what must happen after commit."""

    status: WebhookStatus = WebhookStatus.IGNORED
    events: list[DomainEvent] = attrs.Factory(list)
    #: Operations to send once the transaction has committed.
    drive: list[str] = attrs.Factory(list)
    #: Releases whose payee became ready: made pending, then sent, one escrow at a time.
    ready_releases: list[str] = attrs.Factory(list)
    #: Step 3 only: how it leaves the operation whose call it records (other operations pass
    #: unchanged). Applied to every write of that operation, so that its outcome and the end
    #: of its lease are one UPDATE.
    end_call: Callable[[Operation], Operation] | None = None
    #: Operations as this unit of work last wrote them, by id.
    written: dict[str, Operation] = attrs.Factory(dict)
    #: The escrow as this unit of work last wrote it (its stored `version` included).
    escrow: Escrow | None = None
    #: Alerts to raise once the transaction has committed (a rerun or a rollback of the
    #: unit of work must not raise them twice, or for nothing).
    alerts: list[Callable[[], None]] = attrs.Factory(list)


class EventApplier:
    """Turns gateway objects into transitions inside the caller's unit of work."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def apply_outcome(
        self,
        uow: UnitOfWork,
        applied: Applied,
        before: Escrow,
        outcome: Outcome,
        action: str,
        *,
        on_behalf_of: Operation | None = None,
        new_operations: Iterable[str] = (),
    ) -> Escrow:
        """Persist an outcome and return the escrow as stored.

        `on_behalf_of` is the host call whose answer this records; `new_operations` are the
        ids of the operations the outcome creates.
        """
        if not (outcome.changed or outcome.escrow != before):
            return outcome.escrow
        if applied.end_call is not None:
            outcome = attrs.evolve(
                outcome, operations=tuple(map(applied.end_call, outcome.operations))
            )
        applied.status = WebhookStatus.PROCESSED
        applied.events += self.ctx.persist(
            uow,
            outcome,
            before=before,
            action=action,
            actor_id=on_behalf_of.actor_id if on_behalf_of else GATEWAY_ACTOR,
            correlation_id=on_behalf_of.correlation_id if on_behalf_of else None,
            new_operations=new_operations,
        )
        applied.written.update((op.id, op) for op in outcome.operations)
        applied.escrow = stored_escrow(before, outcome.escrow)
        applied.drive += [
            op.id
            for op in outcome.operations
            if op.status is OperationStatus.PENDING
            and op.request is not None
            and op.gateway_ref is None
            and op.attempts == 0
            and op.claimed_until is None
        ]
        return applied.escrow

    def lock_escrow(self, uow: UnitOfWork, escrow_id: str) -> Escrow:
        escrow = uow.escrows.get(escrow_id, for_update=True)
        if escrow is None:
            # Our metadata names it, so the commit that creates it is still under way.
            raise EventNotReadyError(f"escrow {escrow_id} is not committed yet")
        return escrow

    def escrow_of_payment(self, uow: UnitOfWork, payment_ref: str | None) -> Escrow | None:
        if payment_ref is None:
            return None
        funding = uow.operations.by_gateway_ref(OperationKind.FUNDING, payment_ref)
        if funding is None:
            return None
        return self.lock_escrow(uow, funding.escrow_id)

    def apply_object(self, uow: UnitOfWork, obj: GatewayObject) -> Applied:
        """Apply one gateway object inside `uow`."""
        applied = Applied()
        if isinstance(obj, PaymentSnapshot):
            self.apply_payment(uow, obj, applied)
        elif isinstance(obj, TransferSnapshot):
            self._transfer(uow, obj, applied)
        elif isinstance(obj, RefundSnapshot):
            self._refund(uow, obj, applied)
        elif isinstance(obj, DisputeSnapshot):
            self._dispute(uow, obj, applied)
        elif isinstance(obj, AccountSnapshot):
            self._account(uow, obj, applied)
        elif isinstance(obj, FraudWarningSnapshot):
            escrow = self.escrow_of_payment(uow, obj.payment_ref)
            if escrow is not None:
                self.apply_outcome(
                    uow, applied, escrow, tr.apply_fraud_warning(escrow, obj.ref), "fraud_warning"
                )
        elif isinstance(obj, PayoutSnapshot):
            self._payout(uow, obj, applied)
        elif isinstance(obj, ReversalSnapshot):
            release = uow.operations.by_gateway_ref(OperationKind.RELEASE, obj.transfer_ref)
            if release is not None:
                escrow = self.lock_escrow(uow, release.escrow_id)
                self._reversal(uow, escrow, release, obj, applied)
        return applied

    def second_object(self, op: Operation, ref: str, what: str) -> bool:
        """True (and an alert) when `ref` is another gateway object for an operation that
        already has one: money may have moved twice, and a person must look at it. The
        second object is never booked."""
        if op.gateway_ref is None or op.gateway_ref == ref:
            return False
        if op.kind is OperationKind.FUNDING:
            return False
        alert(
            "second_gateway_object",
            "%s %s names operation %s of escrow %s, which is %s with %s %s",
            what,
            ref,
            op.id,
            op.escrow_id,
            op.status.value,
            what,
            op.gateway_ref,
            escrow_id=op.escrow_id,
            operation_id=op.id,
            gateway_ref=op.gateway_ref,
            other_gateway_ref=ref,
        )
        return True

    # --- handlers -----------------------------------------------------------------------------

    def apply_payment(self, uow: UnitOfWork, payment: PaymentSnapshot, applied: Applied) -> None:
        escrow_id, op_id = tr.metadata_of(payment.metadata)
        if escrow_id is None:
            return
        escrow = self.lock_escrow(uow, escrow_id)
        funding = uow.operations.by_gateway_ref(OperationKind.FUNDING, payment.ref)
        if funding is None and op_id is not None:
            candidate = uow.operations.get(op_id)
            if (
                candidate is not None
                and candidate.kind is OperationKind.FUNDING
                and candidate.gateway_ref is None
                and escrow.payment_ref is None
            ):
                # The webhook overtook the call's own record step: record it here.
                escrow = self.apply_outcome(
                    uow,
                    applied,
                    escrow,
                    tr.record_payment_created(escrow, candidate, payment, now=self.ctx.now()),
                    "payment_created",
                )
                funding = uow.operations.get(op_id)
        minted: list[str] = []

        def mint() -> str:
            minted.append(new_id("op"))
            return minted[-1]

        outcome = tr.apply_payment(
            escrow, funding, payment, now=self.ctx.now(), new_id=mint, namespace=self.ctx.namespace
        )
        self.apply_outcome(
            uow, applied, escrow, outcome, f"payment_{payment.status}", new_operations=minted
        )

    def _transfer(self, uow: UnitOfWork, transfer: TransferSnapshot, applied: Applied) -> None:
        escrow_id, op_id = tr.metadata_of(transfer.metadata)
        release = uow.operations.by_gateway_ref(OperationKind.RELEASE, transfer.ref)
        if release is None and op_id is not None:
            release = uow.operations.get(op_id)
            if release is None and escrow_id is not None:
                raise EventNotReadyError(f"operation {op_id} is not committed yet")
        if release is None or release.kind is not OperationKind.RELEASE:
            return  # a transfer the library did not make
        escrow = self.lock_escrow(uow, release.escrow_id)
        # Re-read under the escrow lock: the call's own record step (or recover) may have
        # completed the release since the first read.
        release = uow.operations.get(release.id) or release
        if self.second_object(release, transfer.ref, "transfer"):
            return
        if release.status in (OperationStatus.FAILED, OperationStatus.CANCELLED):
            # A transfer exists, so money moved for a release the books say never sent any.
            alert(
                "gateway_object_for_closed_operation",
                "transfer %s names release %s of escrow %s, which is %s",
                transfer.ref,
                release.id,
                release.escrow_id,
                release.status.value,
                escrow_id=release.escrow_id,
                operation_id=release.id,
                other_gateway_ref=transfer.ref,
            )
            return
        if release.status.open:
            escrow = self.apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_release(escrow, release, transfer, now=self.ctx.now()),
                "release_confirmed",
            )
        for reversal in transfer.reversals:
            release = uow.operations.get(release.id) or release
            escrow = self._reversal(uow, escrow, release, reversal, applied)

    def _reversal(
        self,
        uow: UnitOfWork,
        escrow: Escrow,
        release: Operation,
        reversal: ReversalSnapshot,
        applied: Applied,
    ) -> Escrow:
        if release.status is not OperationStatus.SUCCEEDED:
            return escrow
        _, op_id = tr.metadata_of(reversal.metadata)
        ours = uow.operations.get(op_id) if op_id else None
        if ours is not None and ours.kind is OperationKind.REVERSAL:
            if self.second_object(ours, reversal.ref, "reversal") or not ours.status.open:
                return escrow
            outcome = tr.complete_reversal(escrow, ours, release, reversal, now=self.ctx.now())
            return self.apply_outcome(uow, applied, escrow, outcome, "reversal_confirmed")
        known = uow.operations.by_gateway_ref(
            OperationKind.REVERSAL, reversal.ref
        ) or uow.operations.by_gateway_ref(OperationKind.EXTERNAL_REVERSAL, reversal.ref)
        if known is not None:
            return escrow
        adopted = new_id("op")
        outcome = tr.adopt_external_reversal(
            escrow, release, reversal, op_id=adopted, now=self.ctx.now()
        )
        log.warning(
            "adopted a transfer reversal made outside bountyescrow",
            extra={"escrow_id": escrow.id, "gateway_ref": reversal.ref},
        )
        return self.apply_outcome(
            uow, applied, escrow, outcome, "external_reversal", new_operations=[adopted]
        )

    def _refund(self, uow: UnitOfWork, refund: RefundSnapshot, applied: Applied) -> None:
        escrow_id, op_id = tr.metadata_of(refund.metadata)
        op = uow.operations.get(op_id) if op_id else None
        if op is None and op_id is not None and escrow_id is not None:
            raise EventNotReadyError(f"operation {op_id} is not committed yet")
        op = (
            op
            or uow.operations.by_gateway_ref(OperationKind.REFUND, refund.ref)
            or uow.operations.by_gateway_ref(OperationKind.EXTERNAL_REFUND, refund.ref)
        )
        if op is None:
            target = self.escrow_of_payment(uow, refund.payment_ref)
            if target is None:
                return  # not ours
            # Another event about this outside refund may have adopted it meanwhile.
            op = uow.operations.by_gateway_ref(OperationKind.EXTERNAL_REFUND, refund.ref)
        else:
            target = self.lock_escrow(uow, op.escrow_id)
        if op is not None:
            # Re-read under the escrow lock: the call's own record step (or recover) may have
            # completed the refund since the first read.
            op = uow.operations.get(op.id) or op
            if self.second_object(op, refund.ref, "refund"):
                return
            outcome = tr.apply_refund(target, op, refund, now=self.ctx.now())
            self.apply_outcome(uow, applied, target, outcome, f"refund_{refund.status}")
            return
        if refund.status in ("failed", "canceled"):
            return  # an outside refund that never took money
        # Stripe takes a refund's money from the balance when it is created, so a pending
        # outside refund is adopted at once (as done); should it fail, the money comes back.
        adopted = new_id("op")
        outcome = tr.adopt_external_refund(
            target,
            refund,
            op_id=adopted,
            now=self.ctx.now(),
            operations=uow.operations.for_escrow(target.id),
        )
        log.warning(
            "adopted a refund made outside bountyescrow",
            extra={"escrow_id": target.id, "gateway_ref": refund.ref},
        )
        self.apply_outcome(
            uow, applied, target, outcome, "external_refund", new_operations=[adopted]
        )

    def _dispute(self, uow: UnitOfWork, dispute: DisputeSnapshot, applied: Applied) -> None:
        escrow = self.escrow_of_payment(uow, dispute.payment_ref)
        if escrow is None:
            return
        existing = uow.disputes.get(dispute.ref)
        outcome = tr.apply_dispute(
            escrow,
            existing,
            dispute,
            now=self.ctx.now(),
            operations=uow.operations.for_escrow(escrow.id),
        )
        stored = self.apply_outcome(uow, applied, escrow, outcome, f"dispute_{dispute.status}")
        if escrow.frozen and not stored.frozen:
            # Releases kept waiting while the escrow was frozen may go now (those whose
            # payee is ready; the sender checks that under the escrow lock).
            applied.ready_releases += [
                op.id
                for op in uow.operations.for_escrow(escrow.id)
                if op.kind is OperationKind.RELEASE and op.status is OperationStatus.AWAITING_PAYEE
            ]

    def _account(self, uow: UnitOfWork, account: AccountSnapshot, applied: Applied) -> None:
        payee = uow.payees.by_account(account.ref)
        if payee is None:
            return
        ready = account.ready and not account.deauthorized
        if ready == payee.ready:
            applied.status = WebhookStatus.PROCESSED
            return
        uow.payees.save(attrs.evolve(payee, ready=ready, updated_at=self.ctx.now()))
        event = DomainEvent(
            type="payee.ready" if ready else "payee.not_ready",
            escrow_id=None,
            data={"payee_id": payee.id},
            created_at=self.ctx.now(),
        )
        applied.events.append(uow.events.add(event))
        applied.status = WebhookStatus.PROCESSED
        if ready:
            applied.ready_releases += [op.id for op in uow.operations.awaiting_payee(payee.id)]

    def _payout(self, uow: UnitOfWork, payout: PayoutSnapshot, applied: Applied) -> None:
        payee = uow.payees.by_account(payout.account_ref)
        if payee is None or payout.status != "failed":
            return
        event = DomainEvent(
            type="payee.payout_failed",
            escrow_id=None,
            data={"payee_id": payee.id, "payout": payout.ref, "code": payout.failure_code},
            created_at=self.ctx.now(),
        )
        applied.events.append(uow.events.add(event))
        applied.status = WebhookStatus.PROCESSED
