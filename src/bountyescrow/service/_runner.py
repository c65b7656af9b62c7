"""Step 1 of every command: validate, authorize, check idempotency, record the intent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.operation import Operation, OperationStatus
from bountyescrow.domain.records import (
    IdempotencyRecord,
)
from bountyescrow.domain.transitions import Outcome
from bountyescrow.errors import (
    BountyEscrowError,
    EscrowNotFoundError,
    StorageError,
)
from bountyescrow.ports.policy import Actor
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service import _idempotency as idem
from bountyescrow.service._context import Denied, ServiceContext, new_id
from bountyescrow.service._driver import REPLAYED, OperationDriver
from bountyescrow.service._reads import Reads

Decide = Callable[[UnitOfWork, Escrow, datetime, str], Outcome]


def _sendable(op: Operation) -> bool:
    """A pending operation with a request the gateway has not answered yet."""
    return op.status is OperationStatus.PENDING and op.request is not None and not op.gateway_ref


@attrs.frozen
class Started:
    """What step 1 of a call committed, or found for a replayed idempotency key."""

    #: What the call produced: an operation id (an escrow id for `open_escrow`).
    ref: str
    new: bool
    #: A new call's operation and escrow as step 1 committed them (what step 2 sends).
    operation: Operation | None = None
    escrow: Escrow | None = None
    #: The call's idempotency record, whose lease step 3 clears.
    key: IdempotencyRecord | None = None


class CommandRunner:
    """Authorization, idempotency and the step-1 transaction of commands, then their sending."""

    def __init__(self, ctx: ServiceContext, driver: OperationDriver, reads: Reads) -> None:
        self.ctx = ctx
        self.driver = driver
        self.reads = reads

    # --- the command runner -------------------------------------------------------------------

    def run(
        self,
        *,
        action: str,
        actor: Actor,
        escrow_id: str,
        params: Mapping[str, Any],
        decide: Decide,
        idempotency_key: str | None,
        correlation_id: str | None,
    ) -> Started:
        """Step 1 of intent, call, record for an operation on an existing escrow.

        Replays an earlier call with the same key.
        """
        now = self.ctx.now()
        print_ = idem.fingerprint(action, {"escrow_id": escrow_id, **params})
        op_id = new_id("op")
        committed: list[DomainEvent] = []

        def work(uow: UnitOfWork) -> Started | Denied | BountyEscrowError:
            replay = self.replayed(uow, actor, idempotency_key, action, print_, now)
            if replay is not None:
                return replay
            escrow = uow.escrows.get(escrow_id, for_update=True)
            if escrow is None:
                raise EscrowNotFoundError(f"no escrow with id {escrow_id!r}")
            decision = self.ctx.policy.decide(actor, action, escrow, {**params, "now": now})
            if not decision.allowed:
                return self.ctx.deny(uow, actor, action, escrow_id, decision.reason, correlation_id)
            try:
                outcome = decide(uow, escrow, now, op_id)
            except idem.STORED_ERRORS as exc:
                return self.refused(uow, exc, actor, idempotency_key, action, print_, now)
            op = next(o for o in outcome.operations if o.id == op_id)
            sending = op.status is OperationStatus.PENDING and op.request is not None
            # Only an operation about to be sent is leased (and its key with it).
            lease = now + self.ctx.lease if sending else None
            op = attrs.evolve(
                op,
                claimed_until=lease,
                sent_at=now if sending else None,
                correlation_id=correlation_id,
            )
            outcome = attrs.evolve(
                outcome,
                operations=tuple(op if o.id == op_id else o for o in outcome.operations),
            )
            committed[:] = self.ctx.persist(
                uow,
                outcome,
                before=escrow,
                action=action,
                actor_id=actor.id,
                correlation_id=correlation_id,
                new_operations=[op_id],
            )
            key = self.started_key(
                uow,
                actor,
                idempotency_key,
                action,
                print_,
                now,
                kind="operation",
                ref=op_id,
                lease=lease,
            )
            return Started(op_id, new=True, operation=op, key=key)

        started = self.step1(self.ctx.tx(work))
        self.ctx.publish(committed)
        return started

    def key_replays(
        self,
        actor: Actor,
        key: str,
        action: str,
        escrow_id: str,
        params: Mapping[str, Any],
    ) -> bool:
        """Whether `_run` would replay an earlier call with this key (checked, not claimed).

        Raises what `_run` would raise for the key (a conflict, a call still in progress, a
        stored refusal) before a composite command has any effect of its own.
        """
        now = self.ctx.now()
        print_ = idem.fingerprint(action, {"escrow_id": escrow_id, **params})
        return self.ctx.read(
            lambda uow: self.replayed(uow, actor, key, action, print_, now) is not None
        )

    def replayed(
        self,
        uow: UnitOfWork,
        actor: Actor,
        key: str | None,
        action: str,
        print_: str,
        now: datetime,
    ) -> Started | None:
        """The earlier call with this key, if there is one to replay (raises on a conflict)."""
        if key is None:
            return None
        record = idem.existing(
            uow, actor_id=actor.id, key=key, action=action, print_=print_, now=now
        )
        if record is None or record.result_ref is None:
            return None
        return Started(record.result_ref, new=False, key=record)

    def refused(
        self,
        uow: UnitOfWork,
        exc: BountyEscrowError,
        actor: Actor,
        key: str | None,
        action: str,
        print_: str,
        now: datetime,
    ) -> BountyEscrowError:
        """A definitive refusal: stored under the key (so a retry gets it again), or raised."""
        if key is None:
            raise exc
        uow.idempotency.save(
            idem.store_error(self.idem_record(actor, key, action, print_, now), exc)
        )
        return exc

    def started_key(
        self,
        uow: UnitOfWork,
        actor: Actor,
        key: str | None,
        action: str,
        print_: str,
        now: datetime,
        *,
        kind: str,
        ref: str,
        lease: datetime | None,
    ) -> IdempotencyRecord | None:
        """Record a new call under its key, leased while the call runs."""
        if key is None:
            return None
        record = attrs.evolve(
            self.idem_record(actor, key, action, print_, now),
            result_kind=kind,
            result_ref=ref,
            locked_until=lease,
        )
        uow.idempotency.save(record)
        return record

    @staticmethod
    def step1(result: Started | Denied | BountyEscrowError) -> Started:
        """Raise what step 1 refused (after its commit kept the audit line or stored error)."""
        if isinstance(result, Denied):
            raise result.error
        if isinstance(result, BountyEscrowError):
            raise result
        return result

    def idem_record(
        self, actor: Actor, key: str, action: str, print_: str, now: datetime
    ) -> IdempotencyRecord:
        return IdempotencyRecord(
            actor_id=actor.id,
            key=key,
            action=action,
            fingerprint=print_,
            created_at=now,
            expires_at=now + self.ctx.settings.idempotency_ttl,
        )

    def send_or_resume(self, started: Started) -> Operation:
        try:
            return self._send_or_resume_recorded(started)
        except StorageError as exc:
            # Step 1 committed: the operation exists and recover() will finish it. A retryable
            # error here would invite a retry without the key, and a second operation.
            op_id = started.ref
            error = StorageError(
                f"operation {op_id} was recorded but the database failed afterwards: {exc}; "
                "recover() will finish it. Retry only with the same idempotency key.",
                operation_id=op_id,
            )
            error.retryable = False
            raise error from exc

    def _resendable(self, op: Operation) -> bool:
        """Whether a host's retry may resend `op`'s stored request under its key right now.

        Only a first send, or a resend inside the gateway's key window that is not backing off
        and follows no replayed error: anything else (a key the gateway may have forgotten, a
        generation that needs a look-up first, a back-off after a refusal) is recover()'s, which
        looks the object up before it sends again.
        """
        if op.sent_at is None:
            return op.generation == 0
        now = self.ctx.now()
        if op.next_attempt_at is not None and op.next_attempt_at > now:
            return False
        if op.gateway_status == REPLAYED:
            return False
        return now - op.sent_at < self.ctx.settings.gateway_key_window

    def _send_or_resume_recorded(self, started: Started) -> Operation:
        if started.new:
            op = started.operation
            assert op is not None
            if _sendable(op):
                return self.driver.drive_leased(op, key=started.key).operation
            # Step 1 settled it (a cancel with nothing to call) or parked it (a release
            # waiting for its payee); either way it leased neither the operation nor the key.
            return op
        # A replayed key: the first call's operation as it is now; send it if nobody does.
        op = self.reads.get_operation(started.ref)
        if not _sendable(op) or not self._resendable(op):
            return op
        claimed = self.driver.claim_operation(op.id)
        if claimed is None:
            return op
        return self.driver.drive_leased(claimed, key=started.key).operation
