"""Event and webhook emission: the queue of events Stripe would send, as `GatewayEvent`
values and as signed Stripe-shaped JSON, its delivery, and the record of the movements that
took effect.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
from collections.abc import Mapping
from typing import Any, cast

import attrs

from bountyescrow.domain.gateway_objects import GatewayEvent, GatewayObject
from bountyescrow.domain.money import Money
from bountyescrow.testing import _fake_stripe_json as sj
from bountyescrow.testing._fake_gateway._event_log import _EventLog
from bountyescrow.testing._fake_gateway._state import _metadata_op, _Queued
from bountyescrow.testing._fake_stripe_json import (
    JSON,
    DisputeRecord,
    PaymentIntentRecord,
    RefundRecord,
    ReversalRecord,
    TransferRecord,
)


@attrs.frozen
class Movement:
    """One transfer, refund or reversal that took effect at the (fake) gateway.

    Attributes:
        kind: ``"transfer"``, ``"refund"`` or ``"reversal"``.
        amount: what moved.
        operation_id: the ``bountyescrow_operation_id`` metadata of the object, or None for
            one made outside the library (`FakeGateway.refund_outside`, `reverse_outside`).
        ref: the gateway object's id (``tr_0001``, ``re_0001``, ``trr_0001``).
        status: the object's current status; a refund may be ``pending`` or ``failed``.
    """

    kind: str
    amount: Money
    operation_id: str | None
    ref: str
    status: str = "succeeded"


class _Events(_EventLog):
    """The events `FakeGateway` queues and delivers, and the movements it records."""

    # --- what happened ----------------------------------------------------------------------

    @property
    def movements(self) -> list[Movement]:
        """Every transfer, refund and reversal that took effect, oldest first."""
        with self._lock:
            result = []
            for kind, record in self._movements:
                if isinstance(record, RefundRecord):
                    status = record.status
                    amount, metadata, ref = record.amount, record.metadata, record.id
                else:
                    obj = cast("TransferRecord | ReversalRecord", record)
                    status = "succeeded"
                    amount, metadata, ref = obj.amount, obj.metadata, obj.id
                result.append(Movement(kind, amount, _metadata_op(metadata), ref, status))
            return result

    @property
    def pending_events(self) -> tuple[GatewayEvent, ...]:
        """The queued events, oldest first, as the service receives them (read-only)."""
        with self._lock:
            return tuple(item.event for item in self._queue)

    @property
    def pending_payloads(self) -> tuple[JSON, ...]:
        """The queued events as Stripe-shaped JSON (copies), oldest first."""
        with self._lock:
            return tuple(copy.deepcopy(item.payload) for item in self._queue)

    def drop_events(self) -> int:
        """Discard the queued events (Stripe gave up on them); return how many there were.

        They stay in the events list (`iter_events`), as at Stripe: a backfill finds them.
        """
        with self._lock:
            count = len(self._queue)
            self._queue.clear()
            return count

    # --- webhooks ---------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """Return a ``Stripe-Signature`` header for `body`: ``t=<unix>,v1=<hex HMAC-SHA256>``.

        Args:
            timestamp: the signing time (default: now, by the signing clock).
            secret: the endpoint secret (default: the fake's `webhook_secret`).
        """
        if timestamp is None:
            timestamp = int(self._signing_clock.now().timestamp())
        key = (secret if secret is not None else self.webhook_secret).encode()
        signed = f"{timestamp}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={digest}"

    def webhook_request(
        self, payload: Mapping[str, Any], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Serialise and sign one event as Stripe posts it: ``(body, headers)``."""
        body = json.dumps(payload, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": self.sign(body, timestamp=timestamp, secret=secret),
        }
        return body, headers

    def deliver(
        self,
        target: object,
        *,
        duplicate: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        raise_errors: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> list[Any]:
        """Drain the queued events into `target` and return what it returned for each.

        A target with a ``handle`` method (a `WebhookDispatcher`) gets each event as Stripe
        posts it: ``target.handle(body=bytes, headers={"Stripe-Signature": ...})``. Any other
        target gets ``target.apply_event(GatewayEvent)`` (an `EscrowService`). Events queued
        while delivering stay queued for the next call.

        Args:
            duplicate: deliver every event twice (at-least-once delivery).
            shuffle: deliver in an order shuffled by ``random.Random(seed)``.
            raise_errors: when True an exception from the target propagates, and the event
                that raised plus those not yet delivered go back to the front of the queue
                (Stripe retries what was not acknowledged); when False the exception is
                returned in its place in the results.
            secret, timestamp: sign with another secret or at another time (signed delivery).
        """
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
        order = [item for item in batch for _ in range(2 if duplicate else 1)]
        if shuffle:
            random.Random(seed).shuffle(order)
        results: list[Any] = []
        for position, item in enumerate(order):
            try:
                results.append(self._send(target, item, secret=secret, timestamp=timestamp))
            except Exception as exc:
                if raise_errors:
                    rest = list({id(i): i for i in order[position:]}.values())
                    with self._lock:
                        self._queue[0:0] = rest
                    raise
                results.append(exc)
        return results

    def _send(
        self, target: object, item: _Queued, *, secret: str | None, timestamp: int | None
    ) -> Any:
        handle = getattr(target, "handle", None)
        if callable(handle):
            body, headers = self.webhook_request(item.payload, timestamp=timestamp, secret=secret)
            return handle(body=body, headers=headers)
        apply_event = getattr(target, "apply_event", None)
        if not callable(apply_event):
            raise TypeError(
                f"cannot deliver to {type(target).__name__}: it has neither handle(body=, "
                f"headers=) nor apply_event(event)"
            )
        return apply_event(item.event)

    # --- events -----------------------------------------------------------------------------

    def _enqueue(
        self,
        type: str,
        obj: JSON,
        snapshot: GatewayObject,
        *,
        account: str | None = None,
        previous: JSON | None = None,
    ) -> None:
        event_id = self._next_id("evt")
        created = self._ts()
        payload = sj.event_json(
            event_id=event_id,
            type=type,
            obj=obj,
            created=created,
            livemode=self._livemode,
            account=account,
            previous_attributes=previous,
        )
        event = GatewayEvent(
            id=event_id,
            type=type,
            object=snapshot,
            created=created,
            livemode=self._livemode,
            account=account,
        )
        self._queue.append(_Queued(event, payload))
        self._log_event(payload)

    def _queue_payment(self, pi: PaymentIntentRecord, type: str) -> None:
        self._enqueue(
            type, sj.payment_intent_json(pi, livemode=self._livemode), self._payment_snapshot(pi)
        )

    def _queue_refund_events(self, refund: RefundRecord, types: tuple[str, ...]) -> None:
        snapshot = self._refund_snapshot(refund)
        for type in types:
            if type == "charge.refunded":
                obj = sj.charge_json(self._charges[refund.charge], livemode=self._livemode)
            else:
                obj = sj.refund_json(refund)
            self._enqueue(type, obj, snapshot)

    def _queue_dispute(self, dispute: DisputeRecord, type: str) -> None:
        self._enqueue(
            type,
            sj.dispute_json(dispute, livemode=self._livemode),
            self._dispute_snapshot(dispute),
        )
