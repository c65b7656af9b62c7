"""`StripeGateway`'s list calls (what reconciliation reads), through the SDK's real HTTP traffic.

Each list follows Stripe's pages (``has_more``, ``starting_after``) through the SDK's
auto-pagination, sends its filters (the ``created`` window, ``transfer_group``,
``payment_intent``) on every page, requests a page only when the one before it was consumed,
and raises the port's errors, not Stripe's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from bountyescrow import Money
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._lists import Pacer, parse_balance
from bountyescrow.domain.gateway_objects import META_ESCROW, META_OPERATION
from bountyescrow.errors import GatewayAuthenticationError, GatewayUnavailableError

from . import builders
from .support import TEST_KEY, answer, query

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 3, 12, 0, 0, 500_000, tzinfo=UTC)
OURS = {META_ESCROW: "esc_1", META_OPERATION: "op_1"}


@pytest.fixture
def gateway() -> Iterator[StripeGateway]:
    """A gateway whose SDK does not retry and whose pacer does not slow the tests down."""
    with StripeGateway(api_key=TEST_KEY, max_network_retries=0) as gw:
        gw._list_pacer = Pacer(1_000)
        yield gw


def pages(
    router: respx.MockRouter, path: str, objects: Sequence[Mapping[str, Any]], size: int
) -> respx.Route:
    """Serve `objects` (newest first) from GET `path`, `size` a page, after `starting_after`."""

    def page(request: httpx.Request) -> httpx.Response:
        after = query(request).get("starting_after")
        ids = [str(o["id"]) for o in objects]
        rest = list(objects[ids.index(after) + 1 :] if after else objects)
        return answer(builders.listing(rest[:size], url=path, has_more=len(rest) > size))

    return router.get(path).mock(side_effect=page)


def calls(route: respx.Route) -> list[dict[str, str]]:
    return [query(call.request) for call in route.calls]


class TestPaging:
    def test_payments_follow_every_page_with_the_window_on_each(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intents = [builders.payment_intent(metadata=OURS, status="succeeded") for _ in range(5)]
        route = pages(router, "/v1/payment_intents", intents, size=2)

        listed = list(gateway.iter_payments(since=SINCE, until=UNTIL))

        assert [p.ref for p in listed] == [i["id"] for i in intents]
        sent = calls(route)
        assert len(sent) == 3
        for params in sent:
            assert params["created[gte]"] == str(int(SINCE.timestamp()))
            assert params["created[lt]"] == str(int(UNTIL.timestamp()) + 1)  # rounded up
            assert params["limit"] == "100"
        assert "starting_after" not in sent[0]
        assert [params["starting_after"] for params in sent[1:]] == [
            intents[1]["id"],
            intents[3]["id"],
        ]

    def test_payments_without_our_metadata_are_skipped(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        ours = builders.payment_intent(metadata=OURS)
        theirs = builders.payment_intent(metadata={"order_id": "o-1"})
        bare = builders.payment_intent()
        pages(router, "/v1/payment_intents", [ours, theirs, bare], size=10)

        assert [p.ref for p in gateway.iter_payments()] == [ours["id"]]

    def test_an_open_window_sends_no_created_filter(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = pages(router, "/v1/refunds", [], size=10)
        assert list(gateway.iter_refunds()) == []
        assert calls(route) == [{"limit": "100"}]

    def test_a_page_is_requested_only_once_the_one_before_is_consumed(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        transfers = [builders.transfer() for _ in range(4)]
        route = pages(router, "/v1/transfers", transfers, size=2)

        listed = gateway.iter_transfers()
        assert route.call_count == 0
        next(listed)
        next(listed)
        assert route.call_count == 1
        next(listed)
        assert route.call_count == 2

    def test_a_naive_window_is_refused_before_any_request(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = pages(router, "/v1/disputes", [], size=10)
        with pytest.raises(ValueError, match="aware"):
            gateway.iter_disputes(since=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="before"):
            gateway.iter_payments(since=UNTIL, until=SINCE)
        assert route.call_count == 0


class TestFilters:
    def test_transfers_of_a_group_send_it_and_bring_every_reversal(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """A transfer embeds ten reversals at most; the rest come from its reversals list."""
        transfer_ref = "tr_1Qmany"
        reversals = [
            builders.transfer_reversal(amount=100, transfer=transfer_ref) for _ in range(12)
        ]
        many = builders.transfer(
            id=transfer_ref,
            amount=2_000,
            transfer_group="escrow_esc_1",
            metadata=OURS,
            reversals=reversals[:10],
            reversals_have_more=True,
            amount_reversed=1_200,
        )
        few = builders.transfer(transfer_group="escrow_esc_1", reversals=reversals[:0])
        route = pages(router, "/v1/transfers", [many, few], size=10)
        reversal_route = pages(router, f"/v1/transfers/{transfer_ref}/reversals", reversals, 5)

        listed = list(gateway.iter_transfers(transfer_group="escrow_esc_1"))

        assert [t.ref for t in listed] == [transfer_ref, few["id"]]
        assert [r.ref for r in listed[0].reversals] == [r["id"] for r in reversals]
        assert listed[1].reversals == ()
        assert calls(route) == [{"limit": "100", "transfer_group": "escrow_esc_1"}]
        assert reversal_route.call_count == 3

    def test_refunds_of_a_payment_send_it_and_keep_each_status(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        refunds = [
            builders.refund(payment_intent="pi_1Qpaid", status=status, metadata=meta)
            for status, meta in (("succeeded", OURS), ("pending", {}), ("failed", {}))
        ]
        route = pages(router, "/v1/refunds", refunds, size=10)

        listed = list(gateway.iter_refunds(payment_ref="pi_1Qpaid", since=SINCE))

        assert [(r.status, r.payment_ref) for r in listed] == [
            ("succeeded", "pi_1Qpaid"),
            ("pending", "pi_1Qpaid"),
            ("failed", "pi_1Qpaid"),
        ]
        assert dict(listed[0].metadata) == OURS
        (params,) = calls(route)
        assert params["payment_intent"] == "pi_1Qpaid"
        assert params["created[gte]"] == str(int(SINCE.timestamp()))

    def test_disputes_of_a_payment_send_it_and_total_their_balance_transactions(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        won = builders.dispute(
            status="won",
            balance_transactions=[
                builders.balance_transaction(amount=-25_000, fee=1_500),
                builders.balance_transaction(amount=25_000, reporting_category="dispute_reversal"),
            ],
        )
        route = pages(router, "/v1/disputes", [won], size=10)

        (listed,) = gateway.iter_disputes(payment_ref="pi_1Qpayment")

        assert listed.status == "won"
        assert listed.funds_withdrawn == Money(25_000, "usd")
        assert listed.funds_reinstated == Money(25_000, "usd")
        assert calls(route) == [{"limit": "100", "payment_intent": "pi_1Qpayment"}]


class TestBalance:
    def test_available_and_pending_are_added_per_currency(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        body = {
            "object": "balance",
            "available": [
                {"amount": 10_000, "currency": "usd", "source_types": {"card": 10_000}},
                {"amount": -500, "currency": "eur", "source_types": {"card": -500}},
            ],
            "pending": [{"amount": 2_500, "currency": "usd", "source_types": {"card": 2_500}}],
            "connect_reserved": [{"amount": 99, "currency": "usd"}],
            "livemode": False,
        }
        router.get("/v1/balance").mock(return_value=answer(body))

        assert gateway.get_balance() == {"eur": Money(-500, "eur"), "usd": Money(12_500, "usd")}

    def test_a_currency_no_escrow_can_be_in_is_left_out(self) -> None:
        data = {"available": [{"amount": 1, "currency": "xyz"}], "pending": []}
        assert parse_balance(data) == {}

    def test_a_malformed_balance_is_an_unknown_answer(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/balance").mock(
            return_value=answer({"object": "balance", "available": [{"amount": "1"}]})
        )
        with pytest.raises(GatewayUnavailableError, match="get_balance"):
            gateway.get_balance()


class TestErrors:
    def test_a_refused_key_on_a_later_page_raises_the_ports_error(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        first = builders.listing(
            [builders.refund(), builders.refund()], url="/v1/refunds", has_more=True
        )
        refused = builders.error("invalid_request_error", "Invalid API Key provided: sk_test_***")
        router.get("/v1/refunds").mock(
            side_effect=[answer(first), httpx.Response(401, json=refused)]
        )

        listed = gateway.iter_refunds()
        assert len([next(listed), next(listed)]) == 2
        with pytest.raises(GatewayAuthenticationError):
            next(listed)

    def test_a_server_error_is_an_unknown_outcome(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/payment_intents").mock(
            return_value=httpx.Response(500, json=builders.error("api_error", "boom"))
        )
        with pytest.raises(GatewayUnavailableError):
            list(gateway.iter_payments())

    def test_an_object_the_parser_cannot_read_is_an_unknown_answer(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        broken = builders.refund()
        del broken["amount"]
        pages(router, "/v1/refunds", [broken], size=10)
        with pytest.raises(GatewayUnavailableError, match=str(broken["id"])):
            list(gateway.iter_refunds())


class TestPacer:
    def test_requests_are_spaced_by_the_rate(self) -> None:
        pacer = Pacer(50)  # one every 20 ms
        started = time.monotonic()
        for _ in range(4):
            pacer.wait()
        assert time.monotonic() - started >= 0.055

    def test_a_request_after_a_pause_goes_at_once(self) -> None:
        pacer = Pacer(50)
        pacer.wait()
        time.sleep(0.05)
        started = time.monotonic()
        pacer.wait()
        assert time.monotonic() - started < 0.015

    def test_the_rate_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            Pacer(0)

    def test_the_gateway_paces_its_list_requests(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        waits: list[float] = []
        record: Callable[[], None] = lambda: waits.append(time.monotonic())  # noqa: E731
        gateway._list_pacer.wait = record  # type: ignore[method-assign]
        transfers = [builders.transfer() for _ in range(3)]
        listing = pages(router, "/v1/transfers", transfers, size=1)
        list(gateway.iter_transfers())
        balance = router.get("/v1/balance").mock(
            return_value=answer({"object": "balance", "available": [], "pending": []})
        )
        gateway.get_balance()
        # Every request waited its turn (past a full last page, one wait finds no page left).
        assert listing.call_count + balance.call_count == 4
        assert len(waits) >= 4
