"""The events list (``GET /v1/events``), oldest first, for the backfill after missed webhooks.

Stripe lists events newest first and keeps them 30 days. A backfill wants them oldest first
(so a payment is applied before its refund, as Stripe sent them), without holding the window
in memory. So the walk runs from an anchor toward the newer end, one page at a time, with
``ending_before`` (each page then comes newest first and is read backwards, as the SDK's own
auto-pagination does for ``ending_before``):

- the anchor is the newest event created before the window (``created[lt]``, one object);
- when Stripe has none left (the window reaches back to its 30 days), the window is walked
  newest first (``created[gte]``) once to find its oldest event, which is yielded and becomes
  the anchor: twice the reads, still flat memory.

The pages are read as raw JSON (the answer's body), the shape a webhook carries, so the
webhook code applies them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import stripe
from stripe import StripeResponse

from bountyescrow.adapters.stripe._errors import translated
from bountyescrow.errors import GatewayUnavailableError

if TYPE_CHECKING:
    from stripe.params import EventListParams

#: Events per page (Stripe's maximum).
EVENTS_PAGE_SIZE: Final = 100
_ACTION: Final = "list_events"


def window(since: datetime, until: datetime | None) -> tuple[int, int | None]:
    """`since` and `until` as Stripe's whole-second ``created`` bounds, both inclusive.

    Both are rounded down: an event created at 12:00:00.7 says ``created`` 12:00:00, so the
    window ``[floor(since), floor(until)]`` holds every event created in ``[since, until]``
    (and at worst a few from the same second before it, which the event log dedupes).

    Raises:
        ValueError: a naive datetime, or `until` before `since`.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if until is not None and until < since:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
    return int(since.timestamp() // 1), None if until is None else int(until.timestamp() // 1)


def iter_events(
    client: stripe.StripeClient, *, since: datetime, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the platform's events created in ``[since, until]``, oldest first, as raw JSON.

    See `bountyescrow.ports.gateway.PaymentGateway.iter_events`.
    """
    start, end = window(since, until)

    def page(params: EventListParams) -> tuple[list[dict[str, Any]], bool]:
        with translated(_ACTION):
            listing = client.v1.events.list(params=params)
        return _page(listing)

    return _walk(page, start, end)


def _walk(
    page: Callable[[EventListParams], tuple[list[dict[str, Any]], bool]],
    start: int,
    end: int | None,
) -> Iterator[dict[str, Any]]:
    before, _ = page({"created": {"lt": start}, "limit": 1})
    if before:
        cursor = _id(before[0])
    else:
        oldest = _oldest(page, start, end)
        if oldest is None:
            return
        yield oldest
        cursor = _id(oldest)
    while True:
        params: EventListParams = {"ending_before": cursor, "limit": EVENTS_PAGE_SIZE}
        if end is not None:
            params["created"] = {"lte": end}
        items, has_more = page(params)
        # The page is the objects just newer than the cursor, newest first.
        for item in reversed(items):
            created = item.get("created")
            if isinstance(created, int) and created >= start:
                yield item
        if not has_more or not items:
            return
        cursor = _id(items[0])


def _oldest(
    page: Callable[[EventListParams], tuple[list[dict[str, Any]], bool]],
    start: int,
    end: int | None,
) -> dict[str, Any] | None:
    """The window's oldest event, found by walking it newest first (one page held at a time)."""
    created: dict[str, int] = {"gte": start}
    if end is not None:
        created["lte"] = end
    oldest: dict[str, Any] | None = None
    after: str | None = None
    while True:
        params: EventListParams = {"created": created, "limit": EVENTS_PAGE_SIZE}  # type: ignore[typeddict-item]
        if after is not None:
            params["starting_after"] = after
        items, has_more = page(params)
        if items:
            oldest = items[-1]
        if not has_more or not items:
            return oldest
        after = _id(items[-1])


def _page(listing: object) -> tuple[list[dict[str, Any]], bool]:
    response = getattr(listing, "last_response", None)
    body = response.data if isinstance(response, StripeResponse) else None
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        raise GatewayUnavailableError(f"Stripe answered {_ACTION} without a list")
    items = [dict(item) for item in body["data"] if isinstance(item, Mapping)]
    return items, body.get("has_more") is True


def _id(item: Mapping[str, Any]) -> str:
    value = item.get("id")
    if not isinstance(value, str) or not value:
        raise GatewayUnavailableError(f"Stripe answered {_ACTION} with an event without an id")
    return value
