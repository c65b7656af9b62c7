"""Steps 2 and 3 of intent, call, record (DESIGN §7); `_recovery` re-drives what is left.

`drive` sends an operation's stored request with its stored key, then records the answer in
one short transaction. No transaction is open during the gateway call. An unknown outcome
leaves the operation pending with its lease cleared; `recover()` picks it up later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import attrs

from bountyescrow import _metrics
from bountyescrow._alerts import alert
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.escrow import Escrow
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
from bountyescrow.domain.records import IdempotencyRecord
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayAuthenticationError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    IdempotencyKeyInUseError,
    IdempotencyMismatchError,
    PaymentAlreadySettledError,
    PlatformBalanceInsufficientError,
    StorageError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._applier import Applied, EventApplier
from bountyescrow.service._context import ServiceContext, log
from bountyescrow.service._gateway_alerts import credentials_refused

#: `gateway_status` of a pending operation whose last answer was a replayed server error.
REPLAYED = "replayed_error"
UNKNOWN = "unknown"

#: Whose idempotency lease a call's step 3 clears: the record step 1 wrote (or a replay read),
#: the (actor id, key) given to `drive(idem=...)`, or nobody's.
KeyHolder: TypeAlias = IdempotencyRecord | tuple[str, str] | None


@attrs.frozen
class Recorded:
    """How driving an operation ended."""

    operation: Operation
    #: Its escrow as step 3 committed it; None when step 3 did not run or failed, or when work
    #: after it (a surplus refunded, a release sent) may have changed the escrow since.
    escrow: Escrow | None = None
    #: The gateway's error, when the call raised one (`recover()` counts the ones that matter).
    error: GatewayError | None = None


class OperationDriver:
    """Sends operations to the gateway and records what it answered (steps 2 and 3), and
    re-drives what was left pending (`recover`)."""

    def __init__(self, ctx: ServiceContext, applier: EventApplier) -> None:
        self.ctx = ctx
        self.applier = applier

    # --- the call -------------------------------------------------------------------------

    @_metrics.timed_gateway_call
    def _call(self, op: Operation) -> GatewayObject:
        key = self.ctx.gateway_key(op)
        request = op.request
        if isinstance(request, CreatePayment):
            return self.ctx.gateway.create_payment(request, idempotency_key=key)
        if isinstance(request, CancelPayment):
            return self.ctx.gateway.cancel_payment(request, idempotency_key=key)
        if isinstance(request, CreateTransfer):
            return self.ctx.gateway.create_transfer(request, idempotency_key=key)
        if isinstance(request, CreateRefund):
            return self.ctx.gateway.create_refund(request, idempotency_key=key)
        if isinstance(request, CreateReversal):
            return self.ctx.gateway.create_reversal(request, idempotency_key=key)
        raise AssertionError(f"operation {op.id} has no request to send")

    def lookup(self, op: Operation) -> GatewayObject | None:
        """Find the object an earlier attempt may have made (list endpoints, by metadata)."""
        request = op.request
        if isinstance(request, CreateTransfer):
            return self.ctx.gateway.find_transfer(
                transfer_group=request.transfer_group, operation_id=op.id
            )
        if isinstance(request, CreateRefund):
            return self.ctx.gateway.find_refund(payment_ref=request.payment_ref, operation_id=op.id)
        if isinstance(request, CreateReversal):
            return self.ctx.gateway.find_reversal(
                transfer_ref=request.transfer_ref, operation_id=op.id
            )
        return None

    # --- driving ----------------------------------------------------------------------------

    def claim(self, op_id: str) -> bool:
        """Lease a pending operation to this caller; False if someone else holds it."""
        return self.claim_operation(op_id) is not None

    def claim_operation(self, op_id: str) -> Operation | None:
        """Lease a pending operation to this caller: the leased operation, or None."""
        now = self.ctx.now()

        def work(uow: UnitOfWork) -> Operation | None:
            op = uow.operations.get(op_id, for_update=True)
            if op is None or op.status is not OperationStatus.PENDING:
                return None
            if op.claimed_until is not None and op.claimed_until > now:
                return None
            leased = attrs.evolve(op, claimed_until=now + self.ctx.lease, sent_at=op.sent_at or now)
            uow.operations.save(leased)
            return leased

        return self.ctx.tx(work)

    def drive(
        self,
        op_id: str,
        *,
        lookup_first: bool = False,
        idem: tuple[str, str] | None = None,
        on_result: Callable[[GatewayObject], None] | None = None,
    ) -> Operation:
        """Send a claimed pending operation and record the answer. Returns the operation.

        See `EscrowService.drive`.
        """
        op = self.ctx.read(lambda uow: uow.operations.get(op_id))
        assert op is not None
        return self.drive_leased(
            op, lookup_first=lookup_first, key=idem, on_result=on_result
        ).operation

    def drive_leased(
        self,
        op: Operation,
        *,
        escrow: Escrow | None = None,
        lookup_first: bool = False,
        key: KeyHolder = None,
        on_result: Callable[[GatewayObject], None] | None = None,
    ) -> Recorded:
        """`drive` an operation this caller holds the lease of, as step 1 or the claim left it.

        Nobody else sends a leased operation, so it is not read again before the call (which
        its stored key makes safe to repeat anyway); step 3 reads it under the escrow lock.
        `escrow` is its escrow as step 1 committed it, if the caller has it.
        """
        if op.status is OperationStatus.PENDING and op.kind is OperationKind.FUNDING:
            # A funding claimed later may belong to an escrow cancelled meanwhile: not sent.
            if escrow is None:
                escrow = self.ctx.read(lambda uow: uow.escrows.get(op.escrow_id))
            if escrow is not None and escrow.cancelled:
                return self.record(op, None, key, cancelled=True)
        if op.status is not OperationStatus.PENDING or op.request is None:
            return self.record(op, None, key)
        try:
            found = self.lookup(op) if lookup_first else None
            result = found if found is not None else self._call(op)
        except GatewayError as exc:
            error = exc
            credentials_refused(
                exc, f"{op.kind.value} {op.id}", escrow_id=op.escrow_id, operation_id=op.id
            )
            return self._recorded(op, lambda: self._record_error(op, error, key))
        except Exception as exc:
            # A gateway adapter's own bug: the request may or may not have reached the
            # gateway, so the outcome is unknown. The operation stays pending (recover()
            # resends it under the same key); raising would invite a retry under a new key.
            log.exception(
                "the gateway raised %s for operation %s; it stays pending for recover()",
                type(exc).__name__,
                op.id,
                extra={"operation_id": op.id, "escrow_id": op.escrow_id},
            )
            unknown = GatewayUnavailableError(f"the gateway raised {type(exc).__name__}: {exc}")
            return self._recorded(op, lambda: self._record_error(op, unknown, key))
        if on_result is not None:
            on_result(result)
        return self._recorded(op, lambda: self.record(op, result, key))

    def _recorded(self, op: Operation, record: Callable[[], Recorded]) -> Recorded:
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
            return Recorded(op)

    def finish(self, uow: UnitOfWork, op: Operation, key: KeyHolder, **changes: Any) -> Operation:
        """End a call: its operation's lease (with `changes`), then its idempotency key's.

        `op` is the operation as it stands in this unit of work.
        """
        ended = attrs.evolve(op, claimed_until=None, **changes)
        if ended != op:
            uow.operations.save(ended)
        self._end_key_lease(uow, key)
        return ended

    def _end_key_lease(self, uow: UnitOfWork, key: KeyHolder) -> None:
        """Let a call with the same idempotency key replay the result: clear the lease."""
        if isinstance(key, IdempotencyRecord):
            if key.locked_until is None:
                return
            # The record as step 1 wrote it (or as a replay read it): only a call after it
            # expired may replace it, so while it is far from expiry it is written back as it
            # is, without reading it first.
            if key.expires_at > self.ctx.now() + self.ctx.lease:
                uow.idempotency.save(attrs.evolve(key, locked_until=None))
                return
            key = (key.actor_id, key.key)
        if key is not None:
            record = uow.idempotency.get(*key, for_update=True)
            if record is not None and record.locked_until is not None:
                uow.idempotency.save(attrs.evolve(record, locked_until=None))

    def _ending(self, op: Operation, now: datetime) -> Callable[[Operation], Operation]:
        """How step 3 leaves `op` (as read under the escrow lock), as a function of its state.

        Its lease is over; while the outcome of its call is awaited (a payment the payer has
        yet to pay, a pending refund), `recover()` polls it from `poll_interval` on. Other
        operations pass unchanged.
        """
        poll_at = now + self.ctx.settings.poll_interval

        def end(current: Operation) -> Operation:
            if current.id != op.id:
                return current
            awaited = current.status is OperationStatus.PENDING and current.gateway_ref is not None
            next_attempt_at = poll_at if awaited else op.next_attempt_at
            return attrs.evolve(current, claimed_until=None, next_attempt_at=next_attempt_at)

        return end

    def record(
        self,
        op: Operation,
        result: GatewayObject | None,
        key: KeyHolder,
        *,
        cancelled: bool = False,
    ) -> Recorded:
        """Step 3: book the gateway's answer (or the escrow's cancellation) and end the call.

        The outcome and the end of the operation's lease are one write of the operation.
        """
        now = self.ctx.now()

        def work(uow: UnitOfWork) -> tuple[Operation, Applied, Escrow]:
            escrow = self.applier.lock_escrow(uow, op.escrow_id)
            current = uow.operations.get(op.id)  # under the escrow lock: as it is now
            assert current is not None
            end = self._ending(current, now)
            applied = Applied(end_call=end)
            if cancelled and current.status.open:
                outcome = tr.fail_operation(
                    escrow, current, "escrow cancelled", now=now, status=OperationStatus.CANCELLED
                )
                self.applier.apply_outcome(uow, applied, escrow, outcome, "funding_cancelled")
            elif result is not None and current.status.open:
                self._record_result(uow, escrow, current, result, applied)
            elif result is not None and current.kind is not OperationKind.CANCEL:
                # Finished meanwhile (a webhook, recovery): a different object is money moved
                # twice, and a person must hear of it.
                self.applier.second_object(current, result.ref, type(result).__name__)
            latest = applied.written.get(op.id, current)
            ended = end(latest)
            if ended != latest:  # no outcome wrote it: its lease still to end
                uow.operations.save(ended)
            self._end_key_lease(uow, key)
            return ended, applied, applied.escrow or escrow

        ended, applied, escrow = self.ctx.tx(work)
        if op.status.open and (result is not None or cancelled):
            _metrics.operation_recorded(op.kind.value, ended.status.value)
        self.after_commit(applied)
        # Work after the commit (a refund of a surplus, a release sent) may change the escrow.
        followed = bool(applied.drive or applied.ready_releases)
        return Recorded(ended, None if followed else escrow)

    def _record_result(
        self, uow: UnitOfWork, escrow: Any, op: Operation, result: GatewayObject, applied: Applied
    ) -> None:
        now = self.ctx.now()
        if op.kind is OperationKind.FUNDING and isinstance(result, PaymentSnapshot):
            escrow = self.applier.apply_outcome(
                uow,
                applied,
                escrow,
                tr.record_payment_created(escrow, op, result, now=now),
                "payment_created",
                on_behalf_of=op,
            )
            if result.status in ("succeeded", "processing", "canceled"):
                self.applier.apply_payment(uow, result, applied)
        elif op.kind is OperationKind.CANCEL and isinstance(result, PaymentSnapshot):
            funding = uow.operations.by_gateway_ref(OperationKind.FUNDING, result.ref)
            self.applier.apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_cancel(escrow, op, funding, now=now),
                "cancelled",
                on_behalf_of=op,
            )
        elif op.kind is OperationKind.RELEASE and isinstance(result, TransferSnapshot):
            self.applier.apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_release(escrow, op, result, now=now),
                "released",
                on_behalf_of=op,
            )
        elif op.kind is OperationKind.REFUND and isinstance(result, RefundSnapshot):
            self.applier.apply_outcome(
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
            self.applier.apply_outcome(
                uow,
                applied,
                escrow,
                tr.complete_reversal(escrow, op, release, result, now=now),
                "reversed",
                on_behalf_of=op,
            )
        else:
            raise AssertionError(f"{type(result).__name__} is not an answer for a {op.kind.value}")

    def _record_error(self, op: Operation, exc: GatewayError, key: KeyHolder) -> Recorded:
        """Step 3 after the gateway refused or did not answer, then end the call."""
        now = self.ctx.now()
        settled: PaymentSnapshot | None = None
        if isinstance(exc, PaymentAlreadySettledError):
            assert isinstance(op.request, CancelPayment)
            settled = self.ctx.gateway.get_payment(op.request.payment_ref)

        def work(uow: UnitOfWork) -> tuple[Operation, Applied]:
            escrow = self.applier.lock_escrow(uow, op.escrow_id)
            current = uow.operations.get(op.id)  # under the escrow lock: as it is now
            assert current is not None
            applied = Applied()
            if current.generation != op.generation or current.claimed_until != op.claimed_until:
                # This call outlived its lease and another caller took the operation over (a
                # new lease, maybe a new key generation, maybe an object already): the error
                # says nothing about that caller's call, which may be in flight or may have
                # moved the money. Failing the operation, or starting another generation,
                # could lose track of money or pay twice; the error changes nothing but this
                # call's idempotency lease, and the caller holding the operation finishes it.
                log.warning(
                    "operation %s: %s for key generation %d ignored; another caller holds the "
                    "operation (generation %d)",
                    op.id,
                    type(exc).__name__,
                    op.generation,
                    current.generation,
                    extra={"operation_id": op.id, "escrow_id": op.escrow_id},
                )
                self._end_key_lease(uow, key)
                return current, applied
            changes: dict[str, Any] = {}
            if current.status.open:
                changes = self._apply_error(uow, applied, escrow, current, exc, settled, now)
            latest = applied.written.get(op.id, current)
            return self.finish(uow, latest, key, **changes), applied

        ended, applied = self.ctx.tx(work)
        _metrics.operation_recorded(op.kind.value, ended.status.value)
        self.after_commit(applied)
        log.info(
            "operation %s: gateway said %s",
            op.id,
            type(exc).__name__,
            extra={"operation_id": op.id, "status": ended.status.value},
        )
        return Recorded(ended, error=exc)

    def _apply_error(
        self,
        uow: UnitOfWork,
        applied: Applied,
        escrow: Escrow,
        op: Operation,
        exc: GatewayError,
        settled: PaymentSnapshot | None,
        now: datetime,
    ) -> dict[str, Any]:
        """Apply a gateway error to an open operation; return the changes that end its call."""
        if isinstance(exc, PlatformBalanceInsufficientError):
            # A reserve breach: the platform balance was paid out from under the escrows.
            # Nothing moved, and the gateway replays this refusal for the key, so the next
            # attempt goes out under a new key generation once the balance is topped up.
            attempts = op.attempts + 1
            wait = self._backoff(attempts, exc)
            applied.alerts.append(
                functools.partial(
                    alert,
                    "reserve_breach",
                    "the platform balance cannot cover release %s of escrow %s (%s); it stays "
                    "pending and is retried from %s. Keep payouts manual, or capped at the balance "
                    "minus required_reserve().",
                    op.id,
                    op.escrow_id,
                    op.net,
                    f"{now + wait:%Y-%m-%d %H:%M:%S}",
                    escrow_id=op.escrow_id,
                    operation_id=op.id,
                )
            )
            return {
                "attempts": attempts,
                "next_attempt_at": now + wait,
                "generation": op.generation + 1,
                "sent_at": None,
                "gateway_status": UNKNOWN,
                "error": str(exc),
            }
        if exc.outcome_unknown or isinstance(exc, GatewayAuthenticationError):
            if isinstance(exc, IdempotencyMismatchError):
                applied.alerts.append(
                    functools.partial(
                        alert,
                        "idempotency_mismatch",
                        "the gateway saw operation %s's key with other parameters (a bug); it "
                        "stays pending",
                        op.id,
                        escrow_id=op.escrow_id,
                        operation_id=op.id,
                    )
                )
            attempts = op.attempts + 1
            return {
                "attempts": attempts,
                "next_attempt_at": now + self._backoff(attempts, exc),
                "gateway_status": REPLAYED if exc.replayed else UNKNOWN,
                "error": str(exc),
            }
        if isinstance(exc, DestinationNotReadyError) and op.kind is OperationKind.RELEASE:
            if op.payee_id is not None:
                payee = uow.payees.get(op.payee_id)
                if payee is not None and payee.ready:
                    uow.payees.save(attrs.evolve(payee, ready=False, updated_at=now))
            outcome = tr.wait_for_payee(escrow, op, str(exc), now=now)
            self.applier.apply_outcome(uow, applied, escrow, outcome, "release_waiting")
            return {}
        if settled is not None:
            escrow = self.applier.apply_outcome(
                uow,
                applied,
                escrow,
                tr.fail_operation(
                    escrow, op, "the payment already succeeded or is processing", now=now
                ),
                "cancel_refused",
            )
            self.applier.apply_payment(uow, settled, applied)
            return {}
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
        self.applier.apply_outcome(uow, applied, escrow, outcome, f"{op.kind.value}_failed")
        return {}

    def _backoff(self, attempts: int, exc: GatewayError) -> timedelta:
        if isinstance(exc, IdempotencyMismatchError | GatewayAuthenticationError):
            return timedelta(hours=1)
        if isinstance(exc, IdempotencyKeyInUseError):
            # Another request with this key is still running: it ends within one call.
            return min(timedelta(seconds=2 * 2 ** min(attempts, 5)), timedelta(minutes=1))
        if isinstance(exc, PlatformBalanceInsufficientError):
            return min(timedelta(minutes=5 * 2 ** min(attempts - 1, 5)), timedelta(hours=2))
        return min(timedelta(seconds=15 * 2 ** min(attempts, 10)), timedelta(hours=1))

    def after_commit(self, applied: Applied) -> None:
        """After a commit: raise alerts, publish events, send what became due, wake releases."""
        for raise_alert in applied.alerts:
            raise_alert()
        self.ctx.publish(applied.events)
        for op_id in applied.ready_releases:
            self.send_ready_release(op_id)
        for op_id in applied.drive:
            claimed = self.claim_operation(op_id)
            if claimed is not None:
                self.drive_leased(claimed)

    def send_ready_release(self, op_id: str) -> bool:
        now = self.ctx.now()

        def work(uow: UnitOfWork) -> tuple[Operation, Applied] | None:
            found = uow.operations.get(op_id)
            if found is None:
                return None
            escrow = self.applier.lock_escrow(uow, found.escrow_id)
            # Read again under the escrow lock: a cancel_operation that committed after the
            # first read must win, not be overwritten by a stale copy.
            op = uow.operations.get(op_id)
            if op is None or op.status is not OperationStatus.AWAITING_PAYEE or op.payee_id is None:
                return None
            if escrow.frozen:
                return None  # no money leaves a frozen escrow; sent once it unfreezes
            payee = uow.payees.get(op.payee_id)
            if payee is None or not payee.ready:
                return None
            outcome = tr.payee_ready(escrow, op, payee, now=now)
            if not outcome.operations:
                return None
            outcome = attrs.evolve(
                outcome,
                operations=tuple(
                    attrs.evolve(o, claimed_until=now + self.ctx.lease, sent_at=now)
                    for o in outcome.operations
                ),
            )
            applied = Applied()
            self.applier.apply_outcome(uow, applied, escrow, outcome, "payee_ready")
            return applied.written[op_id], applied

        ready = self.ctx.tx(work)
        if ready is None:
            return False
        leased, applied = ready
        self.ctx.publish(applied.events)
        # A generation after the first follows a refusal: look first, in case a slower call
        # under an earlier key did move the money after all.
        self.drive_leased(leased, lookup_first=leased.generation > 0)
        return True
