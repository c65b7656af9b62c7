"""Gateway events in: `apply_event` and the webhook event log.

Before anything is fetched or applied, `apply_event` decides whether the event is about this
deployment at all, from the object's own ids and metadata: a Stripe account is often shared
(several deployments, other projects of the same company, Connect accounts the platform never
made), and an object that is not ours can neither be re-fetched (Stripe answers
``resource_missing``) nor waited for (it will never be committed here). Such events are
answered ``ignored`` and leave no trace but a log line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bountyescrow._alerts import alert
from bountyescrow.domain import transitions as tr
from bountyescrow.domain.gateway_objects import (
    META_NAMESPACE,
    AccountSnapshot,
    DisputeSnapshot,
    FraudWarningSnapshot,
    GatewayEvent,
    GatewayObject,
    PaymentSnapshot,
    PayoutSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.operation import OperationKind
from bountyescrow.domain.records import (
    WebhookEventRecord,
    WebhookStatus,
)
from bountyescrow.errors import (
    EventNotReadyError,
    GatewayAuthenticationError,
    GatewayRejectedError,
    WebhookPayloadError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._applier import EventApplier
from bountyescrow.service._context import ServiceContext, log
from bountyescrow.service._driver import OperationDriver
from bountyescrow.service._gateway_alerts import credentials_refused

_REFUND_KINDS = (OperationKind.REFUND, OperationKind.EXTERNAL_REFUND)
#: The objects that carry the metadata the library writes.
_WITH_METADATA = (
    PaymentSnapshot,
    TransferSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    AccountSnapshot,
)


class EventIntake:
    """Applies gateway events once each, recording them in the event log."""

    def __init__(self, ctx: ServiceContext, applier: EventApplier, driver: OperationDriver) -> None:
        self.ctx = ctx
        self.applier = applier
        self.driver = driver

    # --- relevance ----------------------------------------------------------------------------

    def _other_namespace(self, obj: GatewayObject) -> str | None:
        """The namespace the object's metadata names, when it is another deployment's.

        Objects made before the namespace was written into metadata have none: they are
        judged by their ids like any other object.
        """
        if not isinstance(obj, _WITH_METADATA):
            return None
        namespace = obj.metadata.get(META_NAMESPACE)
        return namespace if namespace is not None and namespace != self.ctx.namespace else None

    @staticmethod
    def _claimed(obj: GatewayObject) -> bool:
        """Whether the object's metadata names an escrow or operation (ours: the namespace,
        when there is one, was checked first)."""
        if isinstance(obj, PaymentSnapshot | TransferSnapshot | RefundSnapshot | ReversalSnapshot):
            escrow_id, op_id = tr.metadata_of(obj.metadata)
            return escrow_id is not None or op_id is not None
        return False

    @staticmethod
    def _known(uow: UnitOfWork, obj: GatewayObject) -> bool:
        """Whether the store knows the object, or the payment, transfer or payee it is about.

        These are the look-ups the event applier resolves the object with, so an object this
        says is not known would have changed nothing.
        """
        ops = uow.operations

        def paid(payment_ref: str | None) -> bool:
            if payment_ref is None:
                return False
            return ops.by_gateway_ref(OperationKind.FUNDING, payment_ref) is not None

        if isinstance(obj, PaymentSnapshot):
            return paid(obj.ref)
        if isinstance(obj, TransferSnapshot):
            return ops.by_gateway_ref(OperationKind.RELEASE, obj.ref) is not None
        if isinstance(obj, ReversalSnapshot):
            return ops.by_gateway_ref(OperationKind.RELEASE, obj.transfer_ref) is not None
        if isinstance(obj, RefundSnapshot):
            return paid(obj.payment_ref) or any(
                ops.by_gateway_ref(kind, obj.ref) is not None for kind in _REFUND_KINDS
            )
        if isinstance(obj, DisputeSnapshot):
            return paid(obj.payment_ref) or uow.disputes.get(obj.ref) is not None
        if isinstance(obj, FraudWarningSnapshot):
            return paid(obj.payment_ref)
        if isinstance(obj, AccountSnapshot):
            return uow.payees.by_account(obj.ref) is not None
        if isinstance(obj, PayoutSnapshot):
            return uow.payees.by_account(obj.account_ref) is not None
        return False  # pragma: no cover - every kind of object is listed above

    def _ignore(self, event: GatewayEvent, reason: str, detail: object = None) -> WebhookStatus:
        """Answer an event that is not about this deployment: logged, nothing written."""
        log.info(
            "gateway event %s (%s) ignored: %s%s",
            event.id,
            event.type,
            reason,
            f" ({detail})" if detail is not None else "",
            extra={"event_id": event.id, "event_type": event.type, "ignored": reason},
        )
        return WebhookStatus.IGNORED

    # --- fetching -----------------------------------------------------------------------------

    @staticmethod
    def _refetched(obj: GatewayObject, *, signed: bool) -> bool:
        """Whether `_refetch` asks the gateway for the object's current state."""
        if isinstance(obj, AccountSnapshot):
            return not obj.deauthorized
        if isinstance(obj, PaymentSnapshot | TransferSnapshot | ReversalSnapshot):
            # Payments fund and cancel escrows, transfers complete releases and bring
            # reversals: only a signed snapshot is trusted as it is.
            return not signed
        return isinstance(obj, RefundSnapshot | DisputeSnapshot)

    def _refetch(self, obj: GatewayObject, *, signed: bool) -> GatewayObject:
        # Refunds, disputes and accounts change after the event was sent: apply their
        # current state. Payments and transfers are applied from the signed snapshot; from
        # anything else (an unsigned event) they are confirmed with the gateway first. A
        # fraud warning is applied as it is: it only freezes, which moves no money.
        if not self._refetched(obj, signed=signed):
            return obj
        gateway = self.ctx.gateway
        if isinstance(obj, RefundSnapshot):
            return gateway.get_refund(obj.ref)
        if isinstance(obj, DisputeSnapshot):
            return gateway.get_dispute(obj.ref)
        if isinstance(obj, AccountSnapshot):
            return gateway.get_account(obj.ref)
        if isinstance(obj, PaymentSnapshot):
            return gateway.get_payment(obj.ref)
        if isinstance(obj, TransferSnapshot):
            return gateway.get_transfer(obj.ref)
        if isinstance(obj, ReversalSnapshot):
            return gateway.get_transfer(obj.transfer_ref)
        return obj  # pragma: no cover - `_refetched` names the kinds above only

    # --- gateway events -----------------------------------------------------------------------

    def apply_event(self, event: GatewayEvent, *, payload: str | None = None) -> WebhookStatus:
        """Apply one gateway event; what the webhook dispatcher calls.

        See `EscrowService.apply_event`.
        """
        return self._intake(event, payload=payload, signed=False)

    def apply_signed_event(self, event: GatewayEvent, *, payload: str | None) -> WebhookStatus:
        """`apply_event` for an event whose webhook signature was just verified.

        Only `WebhookDispatcher.handle` calls this: the signed snapshot of a succeeded
        PaymentIntent is applied as it is, without asking the gateway again.
        """
        return self._intake(event, payload=payload, signed=True)

    def _intake(self, event: GatewayEvent, *, payload: str | None, signed: bool) -> WebhookStatus:
        if event.livemode != self.ctx.gateway.livemode:
            if event.account is not None:
                return self._ignore(event, "other_mode_connect_event", event.account)
            raise WebhookPayloadError(
                f"event {event.id} is {'live' if event.livemode else 'test'} mode but the "
                f"gateway is {'live' if self.ctx.gateway.livemode else 'test'} mode"
            )
        namespace = self._other_namespace(event.object)
        if namespace is not None:
            return self._ignore(event, "other_namespace", namespace)
        # Spare a duplicate the call that re-fetches a mutable object (confirming a payment
        # or a transfer again costs one call and changes nothing, so it is not worth a read
        # of its own). The locked check in `work` is what dedupes.
        spare = self._refetched(event.object, signed=signed) and not isinstance(
            event.object, PaymentSnapshot | TransferSnapshot | ReversalSnapshot
        )
        claimed = self._claimed(event.object)
        if spare or not claimed:
            # One read decides both: is it ours, and was it seen?
            def look(uow: UnitOfWork) -> tuple[WebhookEventRecord | None, bool]:
                seen = uow.webhook_events.get(event.id) if spare else None
                return seen, claimed or self._known(uow, event.object)

            seen, ours = self.ctx.read(look)
            if seen is not None and seen.status is not WebhookStatus.FAILED:
                return seen.status
            if not ours:
                return self._ignore(event, "not_ours")
        now = self.ctx.now()
        obj: GatewayObject | None = None

        def work(uow: UnitOfWork) -> Any:
            record = uow.webhook_events.get(event.id, for_update=True)
            if record is not None and record.status is not WebhookStatus.FAILED:
                return record.status
            assert obj is not None
            applied = self.applier.apply_object(uow, obj)
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

        # Set once a more specific alert was raised for this failure: one alert per cause.
        alerted = False
        try:
            try:
                obj = self._refetch(event.object, signed=signed)
            except GatewayRejectedError as exc:
                # The object is ours (decided above), so the gateway refusing it is something
                # a person must look at; the event stays failed and is retried meanwhile.
                alert(
                    "gateway_object_unavailable",
                    "the gateway refused %s of event %s (%s): %s",
                    type(event.object).__name__,
                    event.id,
                    event.type,
                    exc,
                    event_id=event.id,
                    event_type=event.type,
                    gateway_code=exc.code,
                )
                alerted = True
                raise
            except GatewayAuthenticationError as exc:
                credentials_refused(
                    exc,
                    f"fetching {type(event.object).__name__} of event {event.id}",
                    event_id=event.id,
                    event_type=event.type,
                )
                alerted = True
                raise
            namespace = self._other_namespace(obj)
            if namespace is not None:
                # What the gateway says wins over what an unsigned event claimed.
                return self._ignore(event, "other_namespace", namespace)
            result = self.ctx.tx(work)
        except EventNotReadyError as exc:
            age = (
                now - datetime.fromtimestamp(event.created, tz=now.tzinfo)
                if event.created
                else timedelta(0)
            )
            if age > self.ctx.settings.event_not_ready_window:
                self._record_event(event, WebhookStatus.IGNORED, str(exc), None)
                return WebhookStatus.IGNORED
            self._record_event(event, WebhookStatus.FAILED, str(exc), payload)
            raise
        except Exception as exc:
            if not alerted:
                alert(
                    "webhook_event_failed",
                    "gateway event %s (%s) failed: %s: %s. It is kept as failed; the gateway "
                    "delivers it again, or replay it once the cause is fixed",
                    event.id,
                    event.type,
                    type(exc).__name__,
                    exc,
                    event_id=event.id,
                    event_type=event.type,
                    error=type(exc).__name__,
                )
            self._record_event(event, WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}", payload)
            raise
        if isinstance(result, WebhookStatus):
            return result
        self.driver.after_commit(result)
        status: WebhookStatus = result.status
        return status

    def _record_event(
        self, event: GatewayEvent, status: WebhookStatus, error: str, payload: str | None
    ) -> None:
        now = self.ctx.now()

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

        self.ctx.tx(work)

    def failed_events(self, *, limit: int = 100) -> list[WebhookEventRecord]:
        """Gateway events whose processing failed, oldest first (replay them)."""
        return self.ctx.read(lambda uow: uow.webhook_events.failed(limit=limit))

    def webhook_event(self, event_id: str) -> WebhookEventRecord | None:
        """The log record of a gateway event, if it was seen."""
        return self.ctx.read(lambda uow: uow.webhook_events.get(event_id))
