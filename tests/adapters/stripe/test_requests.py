"""What `StripeGateway` sends to Stripe for each port call, and what it makes of the answer.

Each test checks the method, the path, every form or query parameter and the Idempotency-Key
header of the request the SDK really sent (respx sees the httpx traffic), then the snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
import stripe

from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._gateway import _HTTPXClient
from bountyescrow.domain.gateway_objects import (
    META_BOUNTY,
    META_ESCROW,
    META_OPERATION,
    AccountSnapshot,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money

from . import builders
from .support import TEST_KEY, answer, form, query

KEY = "bountyescrow:test:op_1:0"
GROUP = "bountyescrow:esc_1"
USD = "usd"


def usd(amount: int) -> Money:
    return Money(amount, USD)


def posted(route: respx.Route, path: str, key: str = KEY) -> httpx.Request:
    """The last request `route` answered, checked to be a POST to `path` under `key`."""
    request = route.calls.last.request
    assert (request.method, request.url.path) == ("POST", path)
    assert request.headers["Idempotency-Key"] == key
    return request


PAYMENT = CreatePayment(
    amount=usd(25_000),
    transfer_group=GROUP,
    metadata={META_ESCROW: "esc_1", META_BOUNTY: "b1"},
)


class TestCreatePayment:
    def test_posts_a_payment_intent_with_every_parameter(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intent = builders.payment_intent(
            id="pi_1", metadata=PAYMENT.metadata, client_secret="pi_1_secret_abc"
        )
        route = router.post("/v1/payment_intents").mock(return_value=answer(intent))

        snapshot = gateway.create_payment(PAYMENT, idempotency_key=KEY)

        request = posted(route, "/v1/payment_intents")
        assert "Stripe-Account" not in request.headers
        assert form(request) == {
            "amount": "25000",
            "currency": "usd",
            "allowed_payment_method_types[0]": "card",
            "transfer_group": GROUP,
            "metadata[bounty_id]": "b1",
            "metadata[bountyescrow_escrow_id]": "esc_1",
        }
        assert snapshot == PaymentSnapshot(
            ref="pi_1",
            status="requires_payment_method",
            amount=usd(25_000),
            amount_received=usd(0),
            charge_ref=None,
            metadata=PAYMENT.metadata,
            client_secret="pi_1_secret_abc",
            last_error=None,
            livemode=False,
        )

    def test_sends_description_receipt_email_and_every_payment_method_type(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        request = CreatePayment(
            amount=usd(1_000),
            transfer_group=GROUP,
            metadata={META_ESCROW: "esc_1"},
            payment_method_types=("card", "us_bank_account"),
            description="Bounty b1",
            receipt_email="poster@example.com",
        )
        route = router.post("/v1/payment_intents").mock(
            return_value=answer(builders.payment_intent(amount=1_000))
        )

        gateway.create_payment(request, idempotency_key=KEY)

        assert form(route.calls.last.request) == {
            "amount": "1000",
            "currency": "usd",
            "allowed_payment_method_types[0]": "card",
            "allowed_payment_method_types[1]": "us_bank_account",
            "transfer_group": GROUP,
            "metadata[bountyescrow_escrow_id]": "esc_1",
            "description": "Bounty b1",
            "receipt_email": "poster@example.com",
        }

    def test_api_versions_before_endive_get_payment_method_types(
        self, router: respx.MockRouter
    ) -> None:
        """Stripe renamed the parameter in 2026-09-30.endive; a pinned older version keeps it."""
        client = stripe.StripeClient(
            TEST_KEY,
            stripe_version="2026-03-25.dahlia",
            http_client=_HTTPXClient(allow_sync_methods=True),
            max_network_retries=0,
        )
        gateway = StripeGateway(client)
        route = router.post("/v1/payment_intents").mock(
            return_value=answer(builders.payment_intent())
        )

        gateway.create_payment(PAYMENT, idempotency_key=KEY)

        request = route.calls.last.request
        assert request.headers["Stripe-Version"] == "2026-03-25.dahlia"
        params = form(request)
        assert params["payment_method_types[0]"] == "card"
        assert "allowed_payment_method_types[0]" not in params
        assert gateway.api_version == "2026-03-25.dahlia"


class TestCancelPayment:
    def test_posts_the_cancel_with_the_key_and_no_parameters(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/payment_intents/pi_1/cancel").mock(
            return_value=answer(builders.payment_intent(id="pi_1", status="canceled"))
        )

        snapshot = gateway.cancel_payment(CancelPayment(payment_ref="pi_1"), idempotency_key=KEY)

        request = route.calls.last.request
        assert request.method == "POST"
        assert request.headers["Idempotency-Key"] == KEY
        assert form(request) == {}
        assert snapshot.status == "canceled"


class TestGetPayment:
    def test_gets_the_intent_and_reads_charge_amount_received_and_error(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intent = builders.payment_intent(
            id="pi_1",
            status="succeeded",
            amount_received=25_000,
            latest_charge="ch_1",
            last_payment_error={"type": "card_error", "message": "Your card was declined."},
        )
        route = router.get("/v1/payment_intents/pi_1").mock(return_value=answer(intent))

        snapshot = gateway.get_payment("pi_1")

        request = route.calls.last.request
        assert (request.method, request.url.path, query(request)) == (
            "GET",
            "/v1/payment_intents/pi_1",
            {},
        )
        assert snapshot.charge_ref == "ch_1"
        assert snapshot.amount_received == usd(25_000)
        assert snapshot.last_error == "Your card was declined."
        assert snapshot.status == "succeeded"

    def test_reads_an_expanded_latest_charge(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intent = builders.payment_intent(
            id="pi_1", status="succeeded", latest_charge=builders.charge(id="ch_9")
        )
        router.get("/v1/payment_intents/pi_1").mock(return_value=answer(intent))

        assert gateway.get_payment("pi_1").charge_ref == "ch_9"

    def test_the_client_secret_stays_out_of_the_snapshot_repr(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intent = builders.payment_intent(id="pi_1", client_secret="pi_1_secret_TOPSECRET")
        router.get("/v1/payment_intents/pi_1").mock(return_value=answer(intent))

        snapshot = gateway.get_payment("pi_1")

        assert snapshot.client_secret == "pi_1_secret_TOPSECRET"
        assert "TOPSECRET" not in repr(snapshot)
        assert "TOPSECRET" not in str(snapshot)


TRANSFER = CreateTransfer(
    amount=usd(22_500),
    destination="acct_1",
    source_transaction="ch_1",
    transfer_group=GROUP,
    metadata={META_ESCROW: "esc_1", META_OPERATION: "op_1"},
)


class TestCreateTransfer:
    def test_posts_every_parameter_with_the_key(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        transfer = builders.transfer(
            id="tr_1",
            destination="acct_1",
            source_transaction="ch_1",
            metadata=TRANSFER.metadata,
        )
        route = router.post("/v1/transfers").mock(return_value=answer(transfer))

        snapshot = gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        request = posted(route, "/v1/transfers")
        assert form(request) == {
            "amount": "22500",
            "currency": "usd",
            "destination": "acct_1",
            "source_transaction": "ch_1",
            "transfer_group": GROUP,
            "metadata[bountyescrow_escrow_id]": "esc_1",
            "metadata[bountyescrow_operation_id]": "op_1",
        }
        assert snapshot == TransferSnapshot(
            ref="tr_1",
            amount=usd(22_500),
            destination="acct_1",
            transfer_group=GROUP,
            metadata=TRANSFER.metadata,
            source_transaction="ch_1",
            reversals=(),
        )

    def test_leaves_source_transaction_out_when_there_is_none(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))
        request = CreateTransfer(
            amount=usd(100),
            destination="acct_1",
            source_transaction=None,
            transfer_group=GROUP,
            metadata={},
        )

        gateway.create_transfer(request, idempotency_key=KEY)

        assert form(route.calls.last.request) == {
            "amount": "100",
            "currency": "usd",
            "destination": "acct_1",
            "transfer_group": GROUP,
        }


REFUND = CreateRefund(
    amount=usd(5_000),
    payment_ref="pi_1",
    metadata={META_ESCROW: "esc_1", META_OPERATION: "op_2"},
    reason="requested_by_customer",
)


class TestCreateRefund:
    def test_posts_every_parameter_and_reads_a_pending_refund(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        refund = builders.refund(
            id="re_1",
            amount=5_000,
            payment_intent="pi_1",
            status="pending",
            metadata=REFUND.metadata,
            reason="requested_by_customer",
        )
        route = router.post("/v1/refunds").mock(return_value=answer(refund))

        snapshot = gateway.create_refund(REFUND, idempotency_key=KEY)

        request = posted(route, "/v1/refunds")
        assert form(request) == {
            "payment_intent": "pi_1",
            "amount": "5000",
            "reason": "requested_by_customer",
            "metadata[bountyescrow_escrow_id]": "esc_1",
            "metadata[bountyescrow_operation_id]": "op_2",
        }
        assert snapshot == RefundSnapshot(
            ref="re_1",
            amount=usd(5_000),
            status="pending",
            payment_ref="pi_1",
            metadata=REFUND.metadata,
            failure_reason=None,
        )

    def test_leaves_reason_out_when_there_is_none(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/refunds").mock(return_value=answer(builders.refund()))
        request = CreateRefund(amount=usd(5_000), payment_ref="pi_1", metadata={})

        gateway.create_refund(request, idempotency_key=KEY)

        assert form(route.calls.last.request) == {"payment_intent": "pi_1", "amount": "5000"}


class TestCreateReversal:
    def test_posts_amount_and_metadata_on_the_transfer(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        metadata = {META_ESCROW: "esc_1", META_OPERATION: "op_3"}
        reversal = builders.transfer_reversal(
            id="trr_1", amount=2_000, transfer="tr_1", metadata=metadata
        )
        route = router.post("/v1/transfers/tr_1/reversals").mock(return_value=answer(reversal))

        snapshot = gateway.create_reversal(
            CreateReversal(amount=usd(2_000), transfer_ref="tr_1", metadata=metadata),
            idempotency_key=KEY,
        )

        request = posted(route, "/v1/transfers/tr_1/reversals")
        assert form(request) == {
            "amount": "2000",
            "metadata[bountyescrow_escrow_id]": "esc_1",
            "metadata[bountyescrow_operation_id]": "op_3",
        }
        assert snapshot == ReversalSnapshot(
            ref="trr_1", amount=usd(2_000), transfer_ref="tr_1", metadata=metadata
        )


def _ours(operation: str) -> dict[str, str]:
    return {META_ESCROW: "esc_1", META_OPERATION: operation}


class TestFindTransfer:
    def test_two_transfers_for_one_operation_raise_an_alert_and_give_the_oldest(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        newer = builders.transfer(id="tr_new", metadata=_ours("op_1"))
        older = builders.transfer(id="tr_old", metadata=_ours("op_1"))
        router.get("/v1/transfers").mock(
            return_value=answer(builders.listing([newer, older], url="/v1/transfers"))
        )

        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            found = gateway.find_transfer(transfer_group=GROUP, operation_id="op_1")

        assert found is not None
        assert found.ref == "tr_old"
        alerts = [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        assert [getattr(r, "alert", None) for r in alerts] == ["second_gateway_object"]
        assert getattr(alerts[0], "gateway_refs", None) == ["tr_new", "tr_old"]
        assert "op_1" in alerts[0].getMessage()

    def test_fetches_every_reversal_when_the_transfer_embeds_only_some(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        embedded = [
            builders.transfer_reversal(id=f"trr_{n}", amount=100, transfer="tr_1")
            for n in range(11, 1, -1)
        ]
        transfer = builders.transfer(
            id="tr_1",
            metadata=_ours("op_1"),
            reversals=embedded,
            reversals_have_more=True,
            amount_reversed=1_100,
        )
        router.get("/v1/transfers").mock(
            return_value=answer(builders.listing([transfer], url="/v1/transfers"))
        )
        everything = [
            *embedded,
            builders.transfer_reversal(id="trr_1", amount=100, transfer="tr_1"),
        ]
        reversals = router.get("/v1/transfers/tr_1/reversals").mock(
            return_value=answer(builders.listing(everything, url="/v1/transfers/tr_1/reversals"))
        )

        found = gateway.find_transfer(transfer_group=GROUP, operation_id="op_1")

        assert found is not None
        assert len(found.reversals) == 11
        assert sum(r.amount.amount for r in found.reversals) == 1_100
        assert query(reversals.calls.last.request) == {"limit": "100"}


class TestFetches:
    def test_get_refund(self, router: respx.MockRouter, gateway: StripeGateway) -> None:
        refund = builders.refund(
            id="re_1", status="failed", failure_reason="expired_or_canceled_card"
        )
        route = router.get("/v1/refunds/re_1").mock(return_value=answer(refund))

        snapshot = gateway.get_refund("re_1")

        assert route.calls.last.request.method == "GET"
        assert (snapshot.status, snapshot.failure_reason) == ("failed", "expired_or_canceled_card")

    def test_get_transfer_reads_every_reversal_page(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """An unsigned event's transfer is confirmed with all its reversals."""
        first = builders.transfer_reversal(id="trr_1", amount=1_000, transfer="tr_1")
        second = builders.transfer_reversal(id="trr_2", amount=2_000, transfer="tr_1")
        transfer = builders.transfer(id="tr_1", reversals=[first], reversals_have_more=True)
        route = router.get("/v1/transfers/tr_1").mock(return_value=answer(transfer))
        router.get("/v1/transfers/tr_1/reversals").mock(
            return_value=answer(
                builders.listing([first, second], url="/v1/transfers/tr_1/reversals")
            )
        )

        snapshot = gateway.get_transfer("tr_1")

        assert route.calls.last.request.method == "GET"
        assert [r.ref for r in snapshot.reversals] == ["trr_1", "trr_2"]

    def test_get_dispute_sums_withdrawals_and_reinstatements_without_fees(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        dispute = builders.dispute(
            id="dp_1",
            amount=25_000,
            charge="ch_1",
            payment_intent="pi_1",
            status="won",
            balance_transactions=[
                builders.balance_transaction(amount=-25_000, fee=1_500),
                builders.balance_transaction(amount=25_000, reporting_category="dispute_reversal"),
            ],
        )
        route = router.get("/v1/disputes/dp_1").mock(return_value=answer(dispute))

        snapshot = gateway.get_dispute("dp_1")

        assert route.calls.last.request.method == "GET"
        assert snapshot == DisputeSnapshot(
            ref="dp_1",
            payment_ref="pi_1",
            charge_ref="ch_1",
            amount=usd(25_000),
            status="won",
            reason="fraudulent",
            funds_withdrawn=usd(25_000),
            funds_reinstated=usd(25_000),
            charge_refundable=False,  # the builder's is_charge_refundable
        )

    @pytest.mark.parametrize(
        ("transfers", "ready"), [("active", True), ("inactive", False), ("pending", False)]
    )
    def test_get_account_is_ready_only_with_active_transfers(
        self, router: respx.MockRouter, gateway: StripeGateway, transfers: str, ready: bool
    ) -> None:
        account = builders.account(id="acct_1", transfers=transfers)
        router.get("/v1/accounts/acct_1").mock(return_value=answer(account))

        assert gateway.get_account("acct_1").ready is ready


class TestCreateAccount:
    def test_posts_an_express_account_requesting_transfers(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """Under the full service agreement, Stripe's default: no ``tos_acceptance`` is sent.
        (tests/adapters/stripe/test_payee_countries.py covers the agreement by country.)"""
        router.get("/v1/account").mock(return_value=answer(builders.platform_account()))
        account = builders.account(id="acct_1", metadata={"bountyescrow_payee_id": "u2"})
        route = router.post("/v1/accounts").mock(return_value=answer(account))

        snapshot = gateway.create_account(
            payee_id="u2", email="h@example.com", country="US", idempotency_key="payee:u2"
        )

        request = posted(route, "/v1/accounts", key="payee:u2")
        assert form(request) == {
            "controller[stripe_dashboard][type]": "express",
            "controller[fees][payer]": "application",
            "controller[losses][payments]": "application",
            "controller[requirement_collection]": "stripe",
            "country": "US",
            "capabilities[transfers][requested]": "true",
            "metadata[bountyescrow_payee_id]": "u2",
            "email": "h@example.com",
        }
        assert snapshot == AccountSnapshot(
            ref="acct_1", ready=False, metadata={"bountyescrow_payee_id": "u2"}
        )


class TestCreateOnboardingLink:
    def test_posts_an_account_onboarding_link_and_returns_its_url(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/account_links").mock(
            return_value=answer(builders.account_link(account="acct_1"))
        )

        url = gateway.create_onboarding_link(
            "acct_1", return_url="https://app.example/done", refresh_url="https://app.example/again"
        )

        request = route.calls.last.request
        assert form(request) == {
            "account": "acct_1",
            "type": "account_onboarding",
            "return_url": "https://app.example/done",
            "refresh_url": "https://app.example/again",
        }
        assert url == "https://connect.stripe.com/setup/e/acct_1/Mer16itPZo2K"


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="bountyescrow"):
        yield caplog


class TestSecretsStayOutOfOurLogs:
    def test_neither_the_api_key_nor_the_client_secret_is_logged(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        logged: pytest.LogCaptureFixture,
    ) -> None:
        intent = builders.payment_intent(client_secret="pi_1_secret_TOPSECRET")
        router.post("/v1/payment_intents").mock(
            return_value=answer(intent, headers={"Idempotent-Replayed": "true"})
        )

        gateway.create_payment(PAYMENT, idempotency_key=KEY)

        ours = [r for r in logged.records if r.name.startswith("bountyescrow")]
        assert ours, "the replay is logged"
        text = "\n".join(r.getMessage() for r in ours)
        assert "TOPSECRET" not in text
        assert TEST_KEY not in text


#: The three look-ups: the list path, the object builder, its id prefix, the list's own
#: filter parameters, and the call that finds the object carrying an operation id.
LOOK_UPS = [
    pytest.param(
        "/v1/transfers",
        builders.transfer,
        "tr",
        {"transfer_group": GROUP},
        lambda g, op: g.find_transfer(transfer_group=GROUP, operation_id=op),
        id="find_transfer",
    ),
    pytest.param(
        "/v1/refunds",
        builders.refund,
        "re",
        {"payment_intent": "pi_1"},
        lambda g, op: g.find_refund(payment_ref="pi_1", operation_id=op),
        id="find_refund",
    ),
    pytest.param(
        "/v1/transfers/tr_1/reversals",
        builders.transfer_reversal,
        "trr",
        {},
        lambda g, op: g.find_reversal(transfer_ref="tr_1", operation_id=op),
        id="find_reversal",
    ),
]
Find = Callable[[StripeGateway, str], Any]


@pytest.mark.parametrize(("path", "build", "prefix", "params", "find"), LOOK_UPS)
class TestLookUps:
    def test_lists_and_returns_the_object_carrying_the_operation(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        path: str,
        build: Callable[..., dict[str, Any]],
        prefix: str,
        params: dict[str, str],
        find: Find,
    ) -> None:
        ours = build(id=f"{prefix}_2", metadata=_ours("op_2"))
        other = build(id=f"{prefix}_1", metadata=_ours("op_1"))
        route = router.get(path).mock(
            return_value=answer(builders.listing([ours, other], url=path))
        )

        found = find(gateway, "op_2")

        request = route.calls.last.request
        assert request.method == "GET"
        assert query(request) == {**params, "limit": "100"}
        assert found is not None
        assert found.ref == f"{prefix}_2"
        assert find(gateway, "op_9") is None

    def test_follows_pages_with_starting_after(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        path: str,
        build: Callable[..., dict[str, Any]],
        prefix: str,
        params: dict[str, str],
        find: Find,
    ) -> None:
        first = builders.listing(
            [build(id=f"{prefix}_3"), build(id=f"{prefix}_2")], url=path, has_more=True
        )
        second = builders.listing([build(id=f"{prefix}_1", metadata=_ours("op_1"))], url=path)
        route = router.get(path).mock(side_effect=[answer(first), answer(second)])

        found = find(gateway, "op_1")

        assert found is not None
        assert found.ref == f"{prefix}_1"
        assert [query(call.request) for call in route.calls] == [
            {**params, "limit": "100"},
            {**params, "limit": "100", "starting_after": f"{prefix}_2"},
        ]
