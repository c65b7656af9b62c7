"""The events list: every event `FakeGateway` ever queued, as Stripe keeps them for
``GET /v1/events``.

Delivery and the list are separate at Stripe: an event whose webhooks were never delivered
(`drop_events`, an outage) is still listed, for 30 days. The log keeps each payload with its
``created`` time; entries older than 30 days by the fake's clock are forgotten, as Stripe
forgets them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

from bountyescrow.testing._fake_gateway._state import _FakeState
from bountyescrow.testing._fake_stripe_json import JSON

#: How long Stripe lists an event.
EVENT_RETENTION: Final = timedelta(days=30)


class _EventLog(_FakeState):
    """The fake's events list and `iter_events`, the port's read of it."""

    def _log_event(self, payload: JSON) -> None:
        """Keep a queued event's payload for the events list (called under the lock)."""
        self._event_log.append(payload)
        oldest = self._ts() - int(EVENT_RETENTION.total_seconds())
        while self._event_log and self._event_log[0]["created"] < oldest:
            self._event_log.popleft()

    def iter_events(
        self, *, since: datetime, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the events created in ``[since, until]``, oldest first, as Stripe lists them.

        Every event the fake queued is listed, delivered or not (`drop_events` loses them for
        delivery only), as copies of the JSON a webhook carries; events older than 30 days by
        the fake's clock are gone, as at Stripe. Times are compared in whole seconds, as
        Stripe's ``created`` filter does.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
        """
        for name, value in (("since", since), ("until", until)):
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if until is not None and until < since:
            raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
        start = int(since.timestamp() // 1)
        end = None if until is None else int(until.timestamp() // 1)
        with self._lock:
            listed = [
                p
                for p in self._event_log
                if p["created"] >= start and (end is None or p["created"] <= end)
            ]
        for payload in listed:
            yield copy.deepcopy(payload)
