"""Recovery (DESIGN §7): re-drive what was left pending, and the backstops of lost webhooks.

`recover()` claims due operations with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so many
instances may run it at once) and resends each stored request unchanged; it polls objects whose
outcome is awaited, asks the gateway again about payees that releases wait for, and sends
waiting releases whose payee became ready while nobody sent them.

Each pass also looks at what is still pending: the age of the oldest operation goes into the
report and the metrics, and an operation pending longer than `pending_alert_after` raises
``operation_pending_too_long``, once per multiple of the threshold (at 1 h, 2 h, 3 h... by
default) per process.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import attrs

from bountyescrow import _metrics
from bountyescrow._alerts import alert
from bountyescrow.domain.gateway_objects import GatewayObject
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.errors import (
    GatewayAuthenticationError,
    GatewayError,
    GatewayUnavailableError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._applier import Applied, EventApplier
from bountyescrow.service._context import ServiceContext, log
from bountyescrow.service._driver import REPLAYED, OperationDriver, Recorded
from bountyescrow.service._gateway_alerts import credentials_refused

#: The longest wait between two polls of an object whose outcome is awaited.
_MAX_POLL_WAIT = timedelta(days=1)
#: How many of the oldest pending operations one pass looks at for the too-long alert.
_PENDING_ALERTS_PER_PASS = 100


@attrs.frozen
class RecoveryReport:
    """What one `recover()` pass did.

    Attributes:
        claimed: operations the pass claimed.
        completed: operations it finished (succeeded, failed, cancelled, sent on).
        still_pending: claimed operations still pending with nothing wrong: their outcome is
            awaited (a payment the payer has yet to make) or they were parked.
        errors: what went wrong: calls the gateway did not answer or refused our key for,
            payee re-checks and polls that failed for those reasons, and unexpected errors.
        oldest_pending_age: how long the oldest operation pending on the library or the
            gateway has been pending (None when none is); fundings waiting for the payer
            and releases waiting for a payee do not count.
    """

    claimed: int
    completed: int
    still_pending: int
    errors: int
    oldest_pending_age: timedelta | None = None


def _matters(error: BaseException | None) -> bool:
    """Whether a gateway error is one a pass reports: the gateway could not be reached
    (timeouts, connection failures, 5xx, rate limits) or refused our key.

    A replayed server error is not: the gateway answered, with the answer it keeps for the
    key, and the operation waits for the key window as it should. Refusals are outcomes (a
    declined payment), and an idempotency mismatch has its own alert.
    """
    if isinstance(error, GatewayUnavailableError):
        return not error.replayed
    return isinstance(error, GatewayAuthenticationError)


class Recovery:
    """Finishes operations left pending, for `EscrowService.recover`."""

    def __init__(self, ctx: ServiceContext, driver: OperationDriver, applier: EventApplier) -> None:
        self.ctx = ctx
        self.driver = driver
        self.applier = applier
        #: Per operation pending too long: the threshold multiple last alerted (this process).
        self._alerted: dict[str, int] = {}
        self._alerted_lock = threading.Lock()

    def recover(self, *, limit: int = 100) -> RecoveryReport:
        """Re-drive operations left pending: unknown outcomes, crashes, awaited results.

        See `EscrowService.recover`.
        """
        now = self.ctx.now()
        claimed = self.ctx.tx(
            lambda uow: uow.operations.claim_due(
                now=now, lease_until=now + self.ctx.lease, limit=limit
            )
        )
        completed = pending = errors = 0
        try:
            errors += self._recheck_waiting_payees(now)
        except Exception:
            errors += 1
            log.exception("re-checking payees that releases wait for failed")
        # The backstop for releases whose payee became ready while nobody sent them (the
        # process died between recording the readiness and sending).
        for op_id in self.ctx.read(self._ready_waiting_releases):
            try:
                completed += self.driver.send_ready_release(op_id)
            except Exception:
                errors += 1
                log.exception("sending waiting release %s failed", op_id)
        for op in claimed:
            try:
                recorded = self._recover_one(op, now)
            except Exception:
                errors += 1
                log.exception(
                    "recovery of operation %s failed",
                    op.id,
                    extra={"operation_id": op.id, "escrow_id": op.escrow_id},
                )
                continue
            if _matters(recorded.error):
                errors += 1
            elif recorded.operation.status is OperationStatus.PENDING:
                pending += 1
            else:
                completed += 1
        try:
            oldest_age = self._look_at_pending(self.ctx.now())
        except Exception:
            errors += 1
            oldest_age = None
            log.exception("looking at pending operations failed")
        _metrics.recovery_run(errors=errors)
        return RecoveryReport(
            claimed=len(claimed),
            completed=completed,
            still_pending=pending,
            errors=errors,
            oldest_pending_age=oldest_age,
        )

    def _look_at_pending(self, now: datetime) -> timedelta | None:
        """Measure what is still pending; alert on what has been pending too long.

        Returns the age of the oldest pending operation. An operation pending longer than
        `pending_alert_after` is alerted at most once per multiple of it (per process): at
        1 h, then 2 h, 3 h... with the default.
        """
        threshold = self.ctx.settings.pending_alert_after

        def read(uow: UnitOfWork) -> tuple[int, list[Operation]]:
            return (
                uow.operations.count_pending(),
                uow.operations.oldest_pending(limit=_PENDING_ALERTS_PER_PASS),
            )

        count, oldest = self.ctx.read(read)
        first = oldest[0].created_at if oldest else None
        _metrics.pending_seen(self.ctx.namespace, count, first, self.ctx.now)
        due: list[tuple[Operation, timedelta]] = []
        with self._alerted_lock:
            seen = {op.id for op in oldest}
            for op_id in [i for i in self._alerted if i not in seen]:
                del self._alerted[op_id]  # settled (or no longer among the oldest)
            for op in oldest:
                age = now - op.created_at
                multiple = int(age / threshold)
                if multiple < 1:
                    break  # oldest first: the rest are younger
                if self._alerted.get(op.id, 0) < multiple:
                    self._alerted[op.id] = multiple
                    due.append((op, age))
        for op, age in due:
            alert(
                "operation_pending_too_long",
                "%s %s of escrow %s has been pending for %s (longer than %s; last error: %s); "
                "see docs/operations.md, Operations pending too long",
                op.kind.value,
                op.id,
                op.escrow_id,
                _duration(age),
                _duration(threshold),
                op.error or "none",
                escrow_id=op.escrow_id,
                operation_id=op.id,
                operation_kind=op.kind.value,
                pending_seconds=int(age.total_seconds()),
            )
        return None if first is None else max(now - first, timedelta(0))

    @staticmethod
    def _ready_waiting_releases(uow: UnitOfWork) -> list[str]:
        # Only releases whose payee is ready: thousands still waiting must not starve them.
        return [op.id for op in uow.operations.awaiting_payee(ready=True, limit=500)]

    def _recheck_waiting_payees(self, now: datetime, *, limit: int = 20) -> int:
        """Ask the gateway again about payees that releases wait for; return the errors that
        matter (the gateway unreachable or refusing our key).

        A transfer refused with "destination not ready" marks the payee not ready, but the
        account may be fine (a passing restriction), and then no `account.updated` ever comes
        to say so: without this, the release would wait forever. Each payee is asked at most
        once per `poll_interval`.
        """
        due = now - self.ctx.settings.poll_interval
        waiting = self.ctx.read(lambda uow: uow.payees.waited_for(updated_before=due, limit=limit))
        errors = 0
        for payee in waiting:
            account: Any = None
            try:
                account = self.ctx.gateway.get_account(payee.account_ref)
            except GatewayError as exc:
                errors += _matters(exc)
                credentials_refused(exc, f"re-checking payee {payee.id}", payee_id=payee.id)
                log.warning("re-checking payee %s failed: %s", payee.id, exc)

            def work(uow: UnitOfWork, payee: Payee = payee, account: Any = account) -> Applied:
                # Asked (or tried): its turn ends either way, so the others get theirs.
                applied = Applied() if account is None else self.applier.apply_object(uow, account)
                current = uow.payees.get(payee.id, for_update=True)
                if current is not None and not current.ready:
                    uow.payees.save(attrs.evolve(current, updated_at=now))
                return applied

            applied = self.ctx.tx(work)
            self.driver.after_commit(applied)
        return errors

    def _recover_one(self, op: Operation, now: datetime) -> Recorded:
        if op.gateway_ref is not None:
            return self._poll(op)
        if op.sent_at is None:
            # This key generation never went out (a refusal moved the operation on to it): the
            # key is fresh, but an earlier generation's call may have been slower than its
            # refusal's answer, so look before sending; and nothing new leaves a frozen escrow.
            if op.generation > 0:
                found = self.driver.lookup(op)
                if found is not None:
                    return self.driver.record(op, found, None)
            sending, sent = self.ctx.tx(lambda uow: self._sending(uow, op, now))
            return self.driver.drive_leased(sending) if sent else Recorded(sending)
        # The gateway keeps a key for 24 h from its first use: measure from this generation's
        # first send, not from when the operation was created (it may have waited for days).
        age = now - op.sent_at
        window = self.ctx.settings.gateway_key_window
        if age < window and op.gateway_status != REPLAYED:
            return self.driver.drive_leased(op)
        found = self.driver.lookup(op)
        if found is not None:
            return self.driver.record(op, found, None)
        if age >= window:

            def next_generation(uow: UnitOfWork) -> tuple[Operation, bool]:
                renewed, sent = self._sending(uow, op, now)
                if not sent:
                    return renewed, False  # frozen: parked
                renewed = attrs.evolve(
                    renewed, generation=renewed.generation + 1, gateway_status=None
                )
                uow.operations.save(renewed)
                return renewed, True

            renewed, sent = self.ctx.tx(next_generation)
            return self.driver.drive_leased(renewed) if sent else Recorded(renewed)
        # A replayed error inside the key window: the same key would replay it again.
        wait_until = op.sent_at + window

        def wait(uow: UnitOfWork) -> Operation:
            current = uow.operations.get(op.id)
            assert current is not None
            return self.driver.finish(uow, current, None, next_attempt_at=wait_until)

        return Recorded(self.ctx.tx(wait))

    def _sending(self, uow: UnitOfWork, op: Operation, now: datetime) -> tuple[Operation, bool]:
        """Note that `op` goes out now under a key nothing was sent with (its window starts).

        Nothing new leaves a frozen escrow: the operation is parked instead (lease ended,
        looked at again after `poll_interval`), and False says it is not to be sent.
        """
        escrow = self.applier.lock_escrow(uow, op.escrow_id)
        current = uow.operations.get(op.id)
        assert current is not None
        if current.status is not OperationStatus.PENDING:
            return current, False  # settled meanwhile (a withdrawal cut it, a webhook...)
        if escrow.frozen and current.kind is OperationKind.RELEASE:
            parked = self.driver.finish(
                uow, current, None, next_attempt_at=now + self.ctx.settings.poll_interval
            )
            return parked, False
        sent = attrs.evolve(current, sent_at=now)
        uow.operations.save(sent)
        return sent, True

    def _poll(self, op: Operation) -> Recorded:
        """Ask the gateway how an awaited object stands (a lost webhook's backstop)."""
        assert op.gateway_ref is not None
        obj: GatewayObject | None = None
        error: GatewayError | None = None
        try:
            if op.kind is OperationKind.FUNDING:
                obj = self.ctx.gateway.get_payment(op.gateway_ref)
            elif op.kind is OperationKind.REFUND:
                obj = self.ctx.gateway.get_refund(op.gateway_ref)
        except GatewayError as exc:
            error = exc
            credentials_refused(
                exc, f"polling {op.kind.value} {op.id}", escrow_id=op.escrow_id, operation_id=op.id
            )
            log.warning("polling %s failed: %s", op.id, exc)

        def work(uow: UnitOfWork) -> tuple[Operation, Applied]:
            applied = Applied() if obj is None else self.applier.apply_object(uow, obj)
            current = uow.operations.get(op.id)
            assert current is not None
            changes: dict[str, Any] = {}
            if current.status is OperationStatus.PENDING:
                # Each poll waits twice as long as the last (up to a day), so a payment the
                # poster abandoned costs a few requests, not one every interval forever.
                polls = current.attempts + 1
                wait = min(
                    self.ctx.settings.poll_interval * 2 ** min(polls - 1, 10), _MAX_POLL_WAIT
                )
                changes.update(attempts=polls, next_attempt_at=self.ctx.now() + wait)
            return self.driver.finish(uow, current, None, **changes), applied

        result, applied = self.ctx.tx(work)
        self.driver.after_commit(applied)
        return Recorded(result, error=error)


def _duration(value: timedelta) -> str:
    """A duration for a message: ``2 h 5 min``, ``45 min``, ``30 s``."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"
    return f"{rest // 60} min" if rest >= 60 else f"{rest} s"
