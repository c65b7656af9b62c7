"""Steps 2 and 3 of intent, call, record (DESIGN §7), and recovery.

`drive` sends an operation's stored request with its stored key, then records the answer in
one short transaction. No transaction is open during the gateway call. An unknown outcome
leaves the operation pending with its lease cleared; `recover()` picks it up later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from bountyescrow.domain import transitions as tr
from bountyescrow.domain.gateway_objects import (
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    GatewayObject,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayAuthenticationError,
    GatewayError,
    GatewayRejectedError,
    IdempotencyMismatchError,
    PaymentAlreadySettledError,
    StorageError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._applier import Applied, EventApplier
from bountyescrow.service._core import log

#: The longest wait between two polls of an object whose outcome is awaited.
_MAX_POLL_WAIT = timedelta(days=1)

#: `gateway_status` of a pending operation whose last answer was a replayed server error.
REPLAYED = "replayed_error"
UNKNOWN = "unknown"


@attrs.frozen
class RecoveryReport:
    """What one `recover()` pass did."""

    claimed: int
    completed: int
    still_pending: int
    errors: int


class OperationDriver(EventApplier):
    """Sends operations to the gateway and records what it answered."""

    # --- the call -------------------------------------------------------------------------

    def _call(self, op: Operation) -> GatewayObject:
        key = self.gateway_key(op)
        request = op.request
        if isinstance(request, CreatePayment):
            return self.gateway.create_payment(request, idempotency_key=key)
        if isinstance(request, CancelPayment):
            return self.gateway.cancel_payment(request, idempotency_key=key)
        if isinstance(request, CreateTransfer):
            return self.gateway.create_transfer(request, idempotency_key=key)
        if isinstance(request, CreateRefund):
            return self.gateway.create_refund(request, idempotency_key=key)
        if isinstance(request, CreateReversal):
            return self.gateway.create_reversal(request, idempotency_key=key)
        raise AssertionError(f"operation {op.id} has no request to send")

    def _lookup(self, op: Operation) -> GatewayObject | None:
        """Find the object an earlier attempt may have made (list endpoints, by metadata)."""
        request = op.request
        if isinstance(request, CreateTransfer):
            return self.gateway.find_transfer(
                transfer_group=request.transfer_group, operation_id=op.id
            )
        if isinstance(request, CreateRefund):
            return self.gateway.find_refund(payment_ref=request.payment_ref, operation_id=op.id)
        if isinstance(request, CreateReversal):
            return self.gateway.find_reversal(transfer_ref=request.transfer_ref, operation_id=op.id)
        return None

    # --- driving ----------------------------------------------------------------------------

    def claim(self, op_id: str) -> bool:
        """Lease a pending operation to this caller; False if someone else holds it."""
        now = self.now()

        def work(uow: UnitOfWork) -> bool:
            op = uow.operations.get(op_id, for_update=True)
            if op is None or op.status is not OperationStatus.PENDING:
                return False
            if op.claimed_until is not None and op.claimed_until > now:
                return False
            uow.operations.save(attrs.evolve(op, claimed_until=now + self.settings.lease))
            return True

        return self._tx(work)

    def drive(
        self,
        op_id: str,
        *,
        lookup_first: bool = False,
        idem: tuple[str, str] | None = None,
        on_result: Callable[[GatewayObject], None] | None = None,
    ) -> Operation:
        """Send a claimed pending operation and record the answer. Returns the operation.

        `on_result` sees the gateway's answer (the caller that needs a client secret).
        """
        op = self._read(lambda uow: uow.operations.get(op_id))
        assert op is not None
        if op.status is OperationStatus.PENDING and op.kind is OperationKind.FUNDING:
            escrow = self._read(lambda uow: uow.escrows.get(op.escrow_id))
            if escrow is not None and escrow.cancelled:
                return self._record(op_id, None, idem, cancelled=True)
        if op.status is not OperationStatus.PENDING or op.request is None:
            return self._record(op_id, None, idem)
        try:
            found = self._lookup(op) if lookup_first else None
            result = found if found is not None else self._call(op)
        except GatewayError as exc:
            error = exc
            return self._recorded(op, lambda: self._record_error(op_id, error, idem))
        if on_result is not None:
            on_result(result)
        return self._recorded(op, lambda: self._record(op_id, result, idem))

    def _recorded(self, op: Operation, record: Callable[[], Operation]) -> Operation:
        """Run step 3; if the database fails, the call happened: the operation stays pending.

        Raising here would invite the host to retry a call whose money may have moved, so the
        operation is returned as it stood before the call; its lease runs out and `recover()`
        finishes it (DESIGN §7: a lost database after step 1 is an unknown outcome).
        """
        try:
            return record()
        except StorageError as exc:
            log.error(
                "recording the gateway's answer for operation %s failed; it stays pending "
                "for recover(): %s",
                op.id,
                exc,
                extra={"operation_id": op.id, "escrow_id": op.escrow_id},
            )
            return op

    def _finish(
        self, uow: UnitOfWork, op_id: str, idem: tuple[str, str] | None, **changes: Any
    ) -> Operation:
        op = uow.operations.get(op_id)
        assert op is not None
        if changes or op.claimed_until is not None:
            op = attrs.evolve(op, claimed_until=None, **changes)
            uow.operations.save(op)
        if idem is not None:
            record = uow.idempotency.get(*idem, for_update=True)
            if record is not None and record.locked_until is not None:
                uow.idempotency.save(attrs.evolve(record, locked_until=None))
        return op

    def _record(
        self,
        op_id: str,
        result: GatewayObject | None,
        idem: tuple[str, str] | None,
        *,
        cancelled: bool = False,
    ) -> Operation:
        now = self.now()
        applied = Applied()

        def work(uow: UnitOfWork) -> Operation:
            op = uow.operations.get(op_id)
            assert op is not None
            escrow = self._lock_escrow(uow, op.escrow_id)
            op = uow.operations.get(op_id)  # re-read under the escrow lock
            assert op is not None
            if cancelled and op.status.open:
                outcome = tr.fail_operation(
                    escrow, op, "escrow cancelled", now=now, status=OperationStatus.CANCELLED
                )
                self._apply_outcome(uow, applied, escrow, outcome, "funding_cancelled")
            elif result is not None and op.status.open:
                self._record_result(uow, escrow, op, result, applied)
            op = uow.operations.get(op_id)
            assert op is not None
            changes: dict[str, Any] = {}
            if op.status is OperationStatus.PENDING and op.gateway_ref is not None:
                # Called successfully, outcome awaited (payment, pending refund): poll later.
                changes["next_attempt_at"] = now + self.settings.poll_interval
            return self._finish(uow, op_id, idem, **changes)

        op = self._tx(work)
        self._after(applied)
        return op

    def _record_result(
        self, uow: UnitOfWork, escrow: Any, op: Operation, result: GatewayObject, applied: Applied
    ) -> None:
        now = self.now()
        if op.kind is OperationKind.FUNDING and isinstance(result, PaymentSnapshot):
            escrow = self._apply_outcome(
                uow,
                applied,
                escrow,
                tr.record_payment_created(escrow, op, result, now=now),
                "payment_created",
                on_behalf_of=op,
            )
            if result.status in ("succeeded", "processing", "canceled"):
                self._payment(uow, result, applied)
        elif op.kind is OperationKind.CANCEL and isinstance(result, PaymentSnapshot):
            funding = uow.operations.by_gateway_ref(OperationKind.FUNDING, result.ref)
            self._apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_cancel(escrow, op, funding, now=now),
                "cancelled",
                on_behalf_of=op,
            )
        elif op.kind is OperationKind.RELEASE and isinstance(result, TransferSnapshot):
            self._apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_release(escrow, op, result, now=now),
                "released",
                on_behalf_of=op,
            )
        elif op.kind is OperationKind.REFUND and isinstance(result, RefundSnapshot):
            self._apply_outcome(
                uow,
                applied,
                escrow,
                tr.apply_refund(escrow, op, result, now=now),
                f"refund_{result.status}",
                on_behalf_of=op,
            )
        elif op.kind is OperationKind.REVERSAL and isinstance(result, ReversalSnapshot):
            release = uow.operations.get(op.target_id or "")
            assert release is not None
            self._apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_reversal(escrow, op, release, result, now=now),
                "reversed",
                on_behalf_of=op,
            )
        else:
            raise AssertionError(f"{type(result).__name__} is not an answer for a {op.kind.value}")

    def _record_error(
        self, op_id: str, exc: GatewayError, idem: tuple[str, str] | None
    ) -> Operation:
        now = self.now()
        applied = Applied()
        settled: PaymentSnapshot | None = None
        if isinstance(exc, PaymentAlreadySettledError):
            op = self._read(lambda uow: uow.operations.get(op_id))
            assert op is not None
            assert isinstance(op.request, CancelPayment)
            settled = self.gateway.get_payment(op.request.payment_ref)

        def work(uow: UnitOfWork) -> Operation:
            op = uow.operations.get(op_id)
            assert op is not None
            escrow = self._lock_escrow(uow, op.escrow_id)
            op = uow.operations.get(op_id)
            assert op is not None
            if not op.status.open:
                return self._finish(uow, op_id, idem)
            if exc.outcome_unknown or isinstance(exc, GatewayAuthenticationError):
                if isinstance(exc, IdempotencyMismatchError):
                    log.error(
                        "ALERT: gateway idempotency mismatch for operation %s (a bug); "
                        "it stays pending",
                        op.id,
                        extra={"escrow_id": op.escrow_id},
                    )
                attempts = op.attempts + 1
                return self._finish(
                    uow,
                    op_id,
                    idem,
                    attempts=attempts,
                    next_attempt_at=now + self._backoff(attempts, exc),
                    gateway_status=REPLAYED if exc.replayed else UNKNOWN,
                    error=str(exc),
                )
            if isinstance(exc, DestinationNotReadyError) and op.kind is OperationKind.RELEASE:
                if op.payee_id is not None:
                    payee = uow.payees.get(op.payee_id)
                    if payee is not None and payee.ready:
                        uow.payees.save(attrs.evolve(payee, ready=False, updated_at=now))
                outcome = tr.wait_for_payee(escrow, op, str(exc), now=now)
                self._apply_outcome(uow, applied, escrow, outcome, "release_waiting")
                return self._finish(uow, op_id, idem)
            if settled is not None:
                escrow = self._apply_outcome(
                    uow,
                    applied,
                    escrow,
                    tr.fail_operation(
                        escrow, op, "the payment already succeeded or is processing", now=now
                    ),
                    "cancel_refused",
                )
                self._payment(uow, settled, applied)
                return self._finish(uow, op_id, idem)
            assert isinstance(exc, GatewayRejectedError)
            outcome = tr.fail_operation(escrow, op, str(exc), now=now)
            if op.kind is OperationKind.FUNDING:
                outcome = attrs.evolve(
                    outcome,
                    escrow=attrs.evolve(
                        outcome.escrow,
                        cancelled=True,
                        payment_status="failed",
                        last_payment_error=str(exc),
                    ),
                )
            self._apply_outcome(uow, applied, escrow, outcome, f"{op.kind.value}_failed")
            return self._finish(uow, op_id, idem)

        op = self._tx(work)
        self._after(applied)
        log.info(
            "operation %s: gateway said %s",
            op_id,
            type(exc).__name__,
            extra={"operation_id": op_id, "status": op.status.value},
        )
        return op

    def _backoff(self, attempts: int, exc: GatewayError) -> timedelta:
        if isinstance(exc, IdempotencyMismatchError | GatewayAuthenticationError):
            return timedelta(hours=1)
        return min(timedelta(seconds=15 * 2 ** min(attempts, 10)), timedelta(hours=1))

    def _after(self, applied: Applied) -> None:
        """After a commit: publish events, send what became due, wake waiting releases."""
        self._publish(applied.events)
        for op_id in applied.ready_releases:
            self._send_ready_release(op_id)
        for op_id in applied.drive:
            if self.claim(op_id):
                self.drive(op_id)

    def _send_ready_release(self, op_id: str) -> None:
        now = self.now()
        applied = Applied()

        def work(uow: UnitOfWork) -> bool:
            op = uow.operations.get(op_id)
            if op is None or op.status is not OperationStatus.AWAITING_PAYEE or op.payee_id is None:
                return False
            escrow = self._lock_escrow(uow, op.escrow_id)
            payee = uow.payees.get(op.payee_id)
            if payee is None or not payee.ready:
                return False
            outcome = tr.payee_ready(escrow, op, payee, now=now)
            outcome = attrs.evolve(
                outcome,
                operations=tuple(
                    attrs.evolve(o, claimed_until=now + self.settings.lease)
                    for o in outcome.operations
                ),
            )
            self._apply_outcome(uow, applied, escrow, outcome, "payee_ready")
            return True

        if self._tx(work):
            self._publish(applied.events)
            self.drive(op_id)

    # --- recovery ---------------------------------------------------------------------------

    def recover(self, *, limit: int = 100) -> RecoveryReport:
        """Re-drive operations left pending: unknown outcomes, crashes, awaited results.

        Claims due operations with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so many
        instances may run it at once) and resends each stored request unchanged. After a
        replayed server error, or once the gateway may have forgotten the key, it first looks
        the object up; only if it is absent and the key window has passed does it send a new
        key generation.
        """
        now = self.now()
        claimed = self._tx(
            lambda uow: uow.operations.claim_due(
                now=now, lease_until=now + self.settings.lease, limit=limit
            )
        )
        completed = pending = errors = 0
        # The backstop for releases whose payee became ready while nobody sent them (the
        # process died between recording the readiness and sending).
        for op_id in self._read(self._ready_waiting_releases):
            try:
                self._send_ready_release(op_id)
                completed += 1
            except Exception:
                errors += 1
                log.exception("sending waiting release %s failed", op_id)
        for op in claimed:
            try:
                result = self._recover_one(op, now)
            except Exception:
                errors += 1
                log.exception(
                    "recovery of operation %s failed",
                    op.id,
                    extra={"operation_id": op.id, "escrow_id": op.escrow_id},
                )
                continue
            if result.status is OperationStatus.PENDING:
                pending += 1
            else:
                completed += 1
        return RecoveryReport(
            claimed=len(claimed), completed=completed, still_pending=pending, errors=errors
        )

    @staticmethod
    def _ready_waiting_releases(uow: UnitOfWork) -> list[str]:
        ready: dict[str, bool] = {}
        found: list[str] = []
        for op in uow.operations.awaiting_payee(limit=500):
            payee_id = op.payee_id or ""
            if payee_id not in ready:
                payee = uow.payees.get(payee_id)
                ready[payee_id] = payee is not None and payee.ready
            if ready[payee_id]:
                found.append(op.id)
        return found

    def _recover_one(self, op: Operation, now: datetime) -> Operation:
        if op.gateway_ref is not None:
            return self._poll(op)
        age = now - op.created_at
        window = self.settings.gateway_key_window
        if age < window and op.gateway_status != REPLAYED:
            return self.drive(op.id)
        found = self._lookup(op)
        if found is not None:
            return self._record(op.id, found, None)
        if age >= window:

            def next_generation(uow: UnitOfWork) -> None:
                current = uow.operations.get(op.id, for_update=True)
                assert current is not None
                uow.operations.save(
                    attrs.evolve(current, generation=current.generation + 1, gateway_status=None)
                )

            self._tx(next_generation)
            return self.drive(op.id)
        # A replayed error inside the key window: the same key would replay it again.
        wait_until = op.created_at + window
        return self._tx(lambda uow: self._finish(uow, op.id, None, next_attempt_at=wait_until))

    def _poll(self, op: Operation) -> Operation:
        """Ask the gateway how an awaited object stands (a lost webhook's backstop)."""
        assert op.gateway_ref is not None
        obj: GatewayObject | None = None
        try:
            if op.kind is OperationKind.FUNDING:
                obj = self.gateway.get_payment(op.gateway_ref)
            elif op.kind is OperationKind.REFUND:
                obj = self.gateway.get_refund(op.gateway_ref)
        except GatewayError as exc:
            log.warning("polling %s failed: %s", op.id, exc)
        applied = Applied()

        def work(uow: UnitOfWork) -> Operation:
            if obj is not None:
                applied_now = self.apply_object(uow, obj)
                applied.events += applied_now.events
                applied.drive += applied_now.drive
            current = uow.operations.get(op.id)
            assert current is not None
            changes: dict[str, Any] = {}
            if current.status is OperationStatus.PENDING:
                # Each poll waits twice as long as the last (up to a day), so a payment the
                # poster abandoned costs a few requests, not one every interval forever.
                polls = current.attempts + 1
                wait = min(self.settings.poll_interval * 2 ** min(polls - 1, 10), _MAX_POLL_WAIT)
                changes.update(attempts=polls, next_attempt_at=self.now() + wait)
            return self._finish(uow, op.id, None, **changes)

        result = self._tx(work)
        self._after(applied)
        return result
