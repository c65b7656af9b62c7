"""The backfill: the gateway's events list fed through the webhook path, for missed webhooks.

After an outage (the endpoint was down longer than Stripe's three days of retries, or a
webhook endpoint was misconfigured or deleted), the events Stripe gave up on are still in its
events list for 30 days. `backfill_events` reads that list oldest first and applies each event
exactly as a delivered webhook would be (`_Applier.dispatch`): the same relevance checks, the
same transactions, the same event log. An event the log holds as processed or ignored is
counted as seen and not applied again, so a backfill can run any number of times.

The payloads come from the API, read with the secret key, not from a request anyone could
post: they are applied as verified (a succeeded PaymentIntent funds from its snapshot), as
`WebhookDispatcher.handle` applies a request whose signature it checked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import pydantic

from bountyescrow.domain.records import WebhookStatus
from bountyescrow.service import EscrowService
from bountyescrow.service._gateway_alerts import watching_credentials
from bountyescrow.webhooks._events import MalformedEventError, StripeEvent, resolve

if TYPE_CHECKING:
    from bountyescrow.webhooks._dispatcher import _Applier

log = logging.getLogger("bountyescrow.webhooks")


@attrs.frozen
class BackfillReport:
    """What a backfill did with the events it read.

    Attributes:
        processed: events applied now (they changed the books or the event log).
        ignored: events not about this deployment, or of a type the library does not follow.
        failed: events whose processing failed; they are in the event log as failed, with
            their payload, for `replay` (`bountyescrow webhooks failed` lists them).
        seen: events the event log already held as processed or ignored (not applied again).
        failed_event_ids: the ids of the failed events, oldest first.
    """

    processed: int = 0
    ignored: int = 0
    failed: int = 0
    seen: int = 0
    failed_event_ids: tuple[str, ...] = ()

    @property
    def read(self) -> int:
        """How many events were read from the gateway."""
        return self.processed + self.ignored + self.failed + self.seen

    @property
    def ok(self) -> bool:
        """True when no event failed."""
        return self.failed == 0


def run_backfill(
    service: EscrowService, applier: _Applier, *, since: datetime, until: datetime | None
) -> BackfillReport:
    """Read the gateway's events in ``[since, until]`` and dispatch each; see
    `WebhookDispatcher.backfill`."""
    counts = {"processed": 0, "ignored": 0, "failed": 0, "seen": 0}
    failed: list[str] = []
    with watching_credentials("backfill (listing events)"):
        for data in service.gateway.iter_events(since=since, until=until):
            if _already_logged(service, data):
                counts["seen"] += 1
                continue
            raw = json.dumps(data, separators=(",", ":"))
            response = applier.dispatch(data, raw, signed=True)
            outcome = response.json().get("status") if response.ok else None
            if outcome == WebhookStatus.PROCESSED.value:
                counts["processed"] += 1
            elif outcome is not None:
                counts["ignored"] += 1
            else:
                counts["failed"] += 1
                failed.append(str(data.get("id")))
    report = BackfillReport(**counts, failed_event_ids=tuple(failed))
    log.info(
        "backfill %s..%s: %d read, %d processed, %d ignored, %d failed, %d already seen",
        since.isoformat(),
        until.isoformat() if until is not None else "now",
        report.read,
        report.processed,
        report.ignored,
        report.failed,
        report.seen,
        extra={
            "backfill_processed": report.processed,
            "backfill_ignored": report.ignored,
            "backfill_failed": report.failed,
            "backfill_seen": report.seen,
        },
    )
    return report


def _already_logged(service: EscrowService, data: Mapping[str, Any]) -> bool:
    """Whether the event log holds every gateway event of `data` as processed or ignored.

    A ``charge.refunded`` event is logged once per refund (``<event id>:<refund id>``), so the
    ids are those the webhook path would log. Anything that does not parse is not "seen": the
    dispatch refuses it and counts it.
    """
    try:
        event = StripeEvent.model_validate(data)
        ids = [e.id for e in resolve(event).events] or [event.id]
    except (pydantic.ValidationError, MalformedEventError):
        return False
    for event_id in ids:
        record = service.webhook_event(event_id)
        if record is None or record.status is WebhookStatus.FAILED:
            return False
    return True
