"""The service context: ports, settings, transactions, persistence, shared by every part."""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.operation import Operation
from bountyescrow.domain.records import AuditRecord
from bountyescrow.domain.transitions import Outcome
from bountyescrow.errors import ConfigurationError, PermissionDeniedError, StorageError
from bountyescrow.ports.clock import Clock
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.ports.policy import Actor, AuthorizationPolicy
from bountyescrow.ports.store import EscrowStore, UnitOfWork
from bountyescrow.service._settings import EscrowSettings

T = TypeVar("T")
log = logging.getLogger("bountyescrow")

EventHook = Callable[[DomainEvent], None]

#: Unique constraints whose violation means another transaction recorded the same gateway
#: object first (stores name them in `StorageError.details["constraint"]`).
RACE_CONSTRAINTS = frozenset({"operations_kind_gateway_ref", "ledger_entries_kind_ref"})


#: The longest call assumed of a gateway that does not say (`max_call_duration` is newer than
#: some third-party adapters): long, so that the lease errs on the safe side.
UNKNOWN_CALL_DURATION = timedelta(minutes=5)
#: The shortest lease: short leases only make recovery take over calls that are merely slow.
MIN_LEASE = timedelta(seconds=60)


def lease_for(settings: EscrowSettings, gateway: PaymentGateway) -> timedelta:
    """The lease operations are driven under: it must outlast any one gateway call.

    Raises:
        ConfigurationError: `settings.lease` is not longer than the gateway's longest call.
    """
    longest = getattr(gateway, "max_call_duration", None)
    if not isinstance(longest, timedelta):
        longest = UNKNOWN_CALL_DURATION
    if settings.lease is None:
        return max(MIN_LEASE, 2 * longest)
    if settings.lease <= longest:
        raise ConfigurationError(
            f"EscrowSettings.lease ({settings.lease}) must be longer than the gateway's longest "
            f"call ({longest}: its timeout times its retries plus back-off); otherwise "
            "recover() can resend an operation whose first call is still in flight. Raise the "
            "lease, lower the gateway's timeout or retries, or leave lease unset."
        )
    return settings.lease


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as ``esc_3kTMd9...``."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def stored_escrow(before: Escrow, after: Escrow) -> Escrow:
    """`after` as the store holds it once `_persist` wrote it over `before`.

    Saving bumps `version` (`before` was read, locked, in the same unit of work), so callers
    that go on from the written escrow, or return it, carry the stored version.
    """
    return after if after == before else attrs.evolve(after, version=before.version + 1)


def escrow_view(escrow: Escrow) -> dict[str, Any]:
    """The audit trail's picture of an escrow's money and status."""
    return {
        "status": escrow.status.value,
        "funded": escrow.funded.amount,
        "held": escrow.held.amount,
        "reserved": escrow.reserved.amount,
        "released": escrow.released.amount,
        "refunded": escrow.refunded.amount,
        "dispute_withdrawn": escrow.dispute_withdrawn.amount,
        "currency": escrow.currency,
    }


@attrs.frozen
class Denied:
    error: PermissionDeniedError


class ServiceContext:
    """What every part of the service shares: the ports, settings, lease and event hooks.

    Every collaborator of `EscrowService` takes it in its constructor; it holds no state of
    its own beyond what it was built with.
    """

    def __init__(
        self,
        *,
        store: EscrowStore,
        gateway: PaymentGateway,
        policy: AuthorizationPolicy,
        clock: Clock,
        namespace: str,
        settings: EscrowSettings,
        hooks: Sequence[EventHook],
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.policy = policy
        self.clock = clock
        self.namespace = namespace
        self.settings = settings
        self.hooks = tuple(hooks)
        self.lease = lease_for(settings, gateway)

    # --- transactions -------------------------------------------------------------------------

    def tx(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` in one unit of work, committing if it returns.

        A transient storage failure (deadlock, serialization failure, locked database) rolls
        back and reruns the whole unit of work, with jitter, a few times.
        """
        attempt = 0
        while True:
            try:
                with self.store.unit_of_work() as uow:
                    result = work(uow)
                    uow.commit()
                    return result
            except StorageError as exc:
                attempt += 1
                # A lost race for a unique gateway object (a webhook and the call's own record
                # step booking the same transfer) is settled by rerunning: the rerun sees the
                # winner's row and does nothing.
                lost_race = exc.details.get("constraint") in RACE_CONSTRAINTS
                transient = exc.details.get("transient") or lost_race
                if not transient or attempt > self.settings.storage_retries:
                    raise
                log.warning("transient storage error, retrying (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.02 * 2**attempt))

    def read(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` in a unit of work that is never committed (reads only)."""
        with self.store.unit_of_work() as uow:
            return work(uow)

    def persist(
        self,
        uow: UnitOfWork,
        outcome: Outcome,
        *,
        before: Escrow | None,
        action: str,
        actor_id: str,
        correlation_id: str | None = None,
        new_operations: Iterable[str] = (),
        new_escrow: bool = False,
    ) -> list[DomainEvent]:
        """Write an outcome: escrow, operations, disputes, entries, events and one audit line.

        `new_operations` are the ids of the operations the outcome creates (the caller chose
        or minted them); every other operation of the outcome exists and is updated. A wrong
        guess is refused by the store (a duplicate id, or an update of nothing), never lost.
        """
        now = self.clock.now()
        if new_escrow:
            uow.escrows.add(outcome.escrow)
        elif before is None or outcome.escrow != before:
            uow.escrows.save(outcome.escrow)
        fresh = set(new_operations)
        for op in outcome.operations:
            if op.id in fresh:
                uow.operations.add(op)
            else:
                uow.operations.save(op)
        for dispute in outcome.disputes:
            uow.disputes.save(dispute)
        for entry in outcome.entries:
            uow.ledger.add(attrs.evolve(entry, created_at=now))
        events = [uow.events.add(attrs.evolve(e, created_at=now)) for e in outcome.events]
        if outcome.changed or new_escrow or before != outcome.escrow:
            op_id = outcome.operations[0].id if outcome.operations else None
            uow.audit.add(
                AuditRecord(
                    action=action,
                    actor_id=actor_id,
                    escrow_id=outcome.escrow.id,
                    operation_id=op_id,
                    created_at=now,
                    before=escrow_view(before) if before else {},
                    after=escrow_view(outcome.escrow),
                    correlation_id=correlation_id,
                )
            )
        return events

    def deny(
        self,
        uow: UnitOfWork,
        actor: Actor,
        action: str,
        escrow_id: str | None,
        reason: str,
        correlation_id: str | None,
    ) -> Denied:
        uow.audit.add(
            AuditRecord(
                action=action,
                actor_id=actor.id,
                escrow_id=escrow_id,
                created_at=self.now(),
                allowed=False,
                detail=reason,
                correlation_id=correlation_id,
            )
        )
        log.warning(
            "denied %s by %s: %s",
            action,
            actor.id,
            reason,
            extra={"escrow_id": escrow_id, "actor_id": actor.id},
        )
        return Denied(PermissionDeniedError(f"{actor.id} may not {action}: {reason}"))

    def publish(self, events: Iterable[DomainEvent]) -> None:
        """Give committed events to the post-commit hooks (the outbox is the durable copy)."""
        for event in events:
            for hook in self.hooks:
                try:
                    hook(event)
                except Exception:  # a host hook must not undo a committed money change
                    log.exception("event hook failed for %s", event.type)

    def gateway_key(self, op: Operation) -> str:
        """The idempotency key sent to the gateway for the operation's current generation."""
        return f"bountyescrow:{self.namespace}:{op.id}:{op.generation}"

    def now(self) -> datetime:
        """The clock's time."""
        return self.clock.now()
