"""Gateway events in: `apply_event` and the webhook event log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    DisputeSnapshot,
    GatewayEvent,
    GatewayObject,
    RefundSnapshot,
)
from bountyescrow.domain.records import (
    WebhookEventRecord,
    WebhookStatus,
)
from bountyescrow.errors import (
    EventNotReadyError,
    WebhookPayloadError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._driver import OperationDriver


class GatewayEventIntake(OperationDriver):
    """Applies gateway events once each, recording them in the event log."""

    # --- gateway events -----------------------------------------------------------------------

    @staticmethod
    def _refetched(obj: GatewayObject) -> bool:
        """Whether `_refetch` asks the gateway for the object's current state."""
        if isinstance(obj, AccountSnapshot):
            return not obj.deauthorized
        return isinstance(obj, RefundSnapshot | DisputeSnapshot)

    def _refetch(self, obj: GatewayObject) -> GatewayObject:
        # Refunds, disputes and accounts change after the event was sent: apply their
        # current state. Payments and transfers are applied from the signed snapshot.
        if isinstance(obj, RefundSnapshot):
            return self.gateway.get_refund(obj.ref)
        if isinstance(obj, DisputeSnapshot):
            return self.gateway.get_dispute(obj.ref)
        if isinstance(obj, AccountSnapshot):
            if obj.deauthorized:
                return obj  # a disconnected account can no longer be fetched
            return self.gateway.get_account(obj.ref)
        return obj

    def apply_event(self, event: GatewayEvent, *, payload: str | None = None) -> WebhookStatus:
        """Apply one gateway event; what the webhook dispatcher calls.

        Returns ``processed`` or ``ignored``. An event seen before (processed or ignored)
        changes nothing. The event id is recorded in the same transaction as its effect.
        `payload` (the raw body) is kept only if the event fails, for `replay`.

        Raises:
            EventNotReadyError: the event names an escrow whose creation has not committed yet
                (answer 500 so the gateway redelivers); after `event_not_ready_window` such an
                event is ignored.
            WebhookPayloadError: the event is from the other mode (live vs test).
        """
        if event.livemode != self.gateway.livemode:
            raise WebhookPayloadError(
                f"event {event.id} is {'live' if event.livemode else 'test'} mode but the "
                f"gateway is {'live' if self.gateway.livemode else 'test'} mode"
            )
        if self._refetched(event.object):
            # Spare a duplicate the gateway call; the locked check below is what dedupes.
            seen = self._read(lambda uow: uow.webhook_events.get(event.id))
            if seen is not None and seen.status is not WebhookStatus.FAILED:
                return seen.status
        now = self.now()
        obj: GatewayObject | None = None

        def work(uow: UnitOfWork) -> Any:
            record = uow.webhook_events.get(event.id, for_update=True)
            if record is not None and record.status is not WebhookStatus.FAILED:
                return record.status
            assert obj is not None
            applied = self.apply_object(uow, obj)
            uow.webhook_events.save(
                WebhookEventRecord(
                    id=event.id,
                    type=event.type,
                    status=applied.status,
                    received_at=record.received_at if record else now,
                    processed_at=now,
                    attempts=record.attempts + 1 if record else 1,
                )
            )
            return applied

        try:
            obj = self._refetch(event.object)
            result = self._tx(work)
        except EventNotReadyError as exc:
            age = (
                now - datetime.fromtimestamp(event.created, tz=now.tzinfo)
                if event.created
                else timedelta(0)
            )
            if age > self.settings.event_not_ready_window:
                self._record_event(event, WebhookStatus.IGNORED, str(exc), None)
                return WebhookStatus.IGNORED
            self._record_event(event, WebhookStatus.FAILED, str(exc), payload)
            raise
        except Exception as exc:
            self._record_event(event, WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}", payload)
            raise
        if isinstance(result, WebhookStatus):
            return result
        self._after(result)
        status: WebhookStatus = result.status
        return status

    def _record_event(
        self, event: GatewayEvent, status: WebhookStatus, error: str, payload: str | None
    ) -> None:
        now = self.now()

        def work(uow: UnitOfWork) -> None:
            record = uow.webhook_events.get(event.id, for_update=True)
            if record is not None and record.status is not WebhookStatus.FAILED:
                return
            uow.webhook_events.save(
                WebhookEventRecord(
                    id=event.id,
                    type=event.type,
                    status=status,
                    received_at=record.received_at if record else now,
                    processed_at=now,
                    attempts=record.attempts + 1 if record else 1,
                    error=error,
                    payload=payload if status is WebhookStatus.FAILED else None,
                )
            )

        self._tx(work)

    def failed_events(self, *, limit: int = 100) -> list[WebhookEventRecord]:
        """Gateway events whose processing failed, oldest first (replay them)."""
        return self._read(lambda uow: uow.webhook_events.failed(limit=limit))

    def webhook_event(self, event_id: str) -> WebhookEventRecord | None:
        """The log record of a gateway event, if it was seen."""
        return self._read(lambda uow: uow.webhook_events.get(event_id))
