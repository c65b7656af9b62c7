"""`StripeGateway.iter_events`: ``GET /v1/events`` read oldest first, page by page, through the
SDK's real httpx traffic (respx answers as Stripe's list endpoint does)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.errors import GatewayAuthenticationError

from .support import answer, query

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def event(number: int, created: datetime) -> dict[str, Any]:
    return {
        "id": f"evt_{number:05d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(created.timestamp()),
        "data": {"object": {"id": f"pi_{number:05d}", "object": "payment_intent"}},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
    }


class EventsEndpoint:
    """Stripe's ``GET /v1/events``: newest first, ``created`` filters, cursors, ``has_more``."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        # Stripe's order: newest first (ties: the later one first).
        self.events = sorted(events, key=lambda e: (e["created"], e["id"]), reverse=True)
        self.requests: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = query(request)
        self.requests.append(params)
        limit = int(params.get("limit", "10"))
        assert 1 <= limit <= 100
        listed = [e for e in self.events if self._matches(e, params)]
        ids = [e["id"] for e in listed]
        if "starting_after" in params:
            start = ids.index(params["starting_after"]) + 1
            page, more = listed[start : start + limit], len(listed) > start + limit
        elif "ending_before" in params:
            end = ids.index(params["ending_before"])
            first = max(0, end - limit)
            page, more = listed[first:end], first > 0
        else:
            page, more = listed[:limit], len(listed) > limit
        return answer({"object": "list", "url": "/v1/events", "data": page, "has_more": more})

    @staticmethod
    def _matches(item: dict[str, Any], params: dict[str, str]) -> bool:
        created = item["created"]
        bounds = {
            "created[gte]": lambda v: created >= v,
            "created[gt]": lambda v: created > v,
            "created[lte]": lambda v: created <= v,
            "created[lt]": lambda v: created < v,
        }
        cursor = params.get("starting_after") or params.get("ending_before")
        if item["id"] == cursor:
            return True  # the cursor object locates the page
        return all(test(int(params[name])) for name, test in bounds.items() if name in params)


@pytest.fixture
def events(router: respx.MockRouter) -> EventsEndpoint:
    # 250 events a minute apart from T0 - 1 h: some before every window below.
    endpoint = EventsEndpoint(
        [event(n, T0 - timedelta(hours=1) + timedelta(minutes=n)) for n in range(250)]
    )
    router.get("/v1/events").mock(side_effect=endpoint)
    return endpoint


class TestEventsList:
    def test_yields_the_window_oldest_first_across_pages(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        listed = list(gateway.iter_events(since=T0))
        assert [e["id"] for e in listed] == [f"evt_{n:05d}" for n in range(60, 250)]
        assert len(events.requests) == 3, "one anchor, then two pages of up to 100"

    def test_the_anchor_is_the_newest_event_before_the_window(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        list(gateway.iter_events(since=T0))
        anchor, first_page = events.requests[0], events.requests[1]
        assert anchor == {"created[lt]": str(int(T0.timestamp())), "limit": "1"}
        assert first_page["ending_before"] == "evt_00059"
        assert first_page["limit"] == "100"

    def test_until_bounds_the_window(self, gateway: StripeGateway, events: EventsEndpoint) -> None:
        listed = list(gateway.iter_events(since=T0, until=T0 + timedelta(minutes=10, seconds=30)))
        assert [e["id"] for e in listed] == [f"evt_{n:05d}" for n in range(60, 71)]
        assert all(r.get("created[lte]") for r in events.requests[1:])

    def test_a_window_reaching_past_what_stripe_keeps_walks_it_with_created_gte(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        """No event before the window is left: its oldest is found first (created[gte])."""
        since = T0 - timedelta(days=30)
        listed = list(gateway.iter_events(since=since))
        assert [e["id"] for e in listed] == [f"evt_{n:05d}" for n in range(250)]
        gte = [r for r in events.requests if r.get("created[gte]") == str(int(since.timestamp()))]
        assert len(gte) == 3, "the window walked newest first, 100 at a time"
        assert [r.get("starting_after") for r in gte] == [None, "evt_00150", "evt_00050"]

    def test_an_empty_window_yields_nothing(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        assert list(gateway.iter_events(since=T0 + timedelta(days=1))) == []

    def test_events_are_the_raw_json_a_webhook_carries(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        first = next(iter(gateway.iter_events(since=T0)))
        assert first == event(60, T0)
        assert type(first) is dict

    def test_naive_datetimes_are_refused_before_any_request(
        self, gateway: StripeGateway, events: EventsEndpoint
    ) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            list(gateway.iter_events(since=datetime(2026, 11, 20)))
        with pytest.raises(ValueError, match="before since"):
            list(gateway.iter_events(since=T0, until=T0 - timedelta(seconds=1)))
        assert events.requests == []

    def test_a_refused_key_is_an_authentication_error(
        self, gateway: StripeGateway, router: respx.MockRouter
    ) -> None:
        router.get("/v1/events").mock(
            return_value=answer(
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                status=401,
            )
        )
        with pytest.raises(GatewayAuthenticationError):
            list(gateway.iter_events(since=T0))
