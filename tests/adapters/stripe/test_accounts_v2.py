"""`StripeGateway(accounts="v2")`: payees as Accounts v2 accounts, on the SDK's real traffic.

The v2 API takes JSON bodies (not forms) and leaves configurations out of its answers unless
asked (``include``); readiness is the recipient configuration's
``stripe_balance.stripe_transfers`` capability; v1 transfers take a v2 account's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from bountyescrow import Actor, EscrowService, GatewayEvent, OperationStatus
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._parse import parse_account_v2, parse_object
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_OPERATION,
    META_PAYEE,
    AccountSnapshot,
    CreateTransfer,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import ConfigurationError, GatewayRejectedError, ValidationError
from bountyescrow.testing import InMemoryStore
from tests.keys import new_key

from . import builders
from .stand_in import StripeStandIn
from .support import TEST_KEY, answer, form, query

KEY = "bountyescrow:test:payee:u2"


@pytest.fixture
def gateway() -> Iterator[StripeGateway]:
    """A test-mode gateway creating Accounts v2 payees; its SDK does not retry."""
    with StripeGateway(api_key=TEST_KEY, max_network_retries=0, accounts="v2") as gw:
        yield gw


def body(request: httpx.Request) -> Any:
    """The JSON body of a v2 request (the v2 API does not take forms)."""
    assert request.headers["Content-Type"].startswith("application/json")
    return json.loads(request.content)


class TestOption:
    def test_v1_is_the_default(self) -> None:
        with StripeGateway(api_key=TEST_KEY) as gw:
            assert gw.accounts == "v1"

    def test_v2_is_kept(self, gateway: StripeGateway) -> None:
        assert gateway.accounts == "v2"
        assert "accounts='v2'" in repr(gateway)

    def test_another_value_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="accounts must be 'v1' or 'v2'"):
            StripeGateway(api_key=TEST_KEY, accounts="v3")  # type: ignore[arg-type]


class TestCreateAccount:
    def test_posts_a_recipient_account_as_json_under_the_key(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """Only the capability receiving transfers needs, the payee's country and email, the
        payee id in metadata, and the recipient configuration included in the answer."""
        router.get("/v1/account").mock(return_value=answer(builders.platform_account()))
        created = builders.account_v2(id="acct_1", metadata={META_PAYEE: "u2"})
        route = router.post("/v2/core/accounts").mock(return_value=answer(created))

        snapshot = gateway.create_account(
            payee_id="u2", email="h@example.com", country="us", idempotency_key=KEY
        )

        request = route.calls.last.request
        assert (request.method, request.url.path) == ("POST", "/v2/core/accounts")
        assert request.headers["Idempotency-Key"] == KEY
        assert body(request) == {
            "configuration": {
                "recipient": {
                    "capabilities": {"stripe_balance": {"stripe_transfers": {"requested": True}}}
                }
            },
            "contact_email": "h@example.com",
            "dashboard": "express",
            "defaults": {
                "responsibilities": {
                    "fees_collector": "application",
                    "losses_collector": "application",
                }
            },
            "identity": {"country": "US"},
            "include": ["configuration.recipient"],
            "metadata": {META_PAYEE: "u2"},
        }
        assert snapshot == AccountSnapshot(ref="acct_1", ready=False, metadata={META_PAYEE: "u2"})

    def test_leaves_the_email_out_when_there_is_none(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/account").mock(return_value=answer(builders.platform_account()))
        route = router.post("/v2/core/accounts").mock(
            return_value=answer(builders.account_v2(email=None))
        )

        gateway.create_account(payee_id="u2", email=None, country="US", idempotency_key=KEY)

        assert "contact_email" not in body(route.calls.last.request)

    def test_a_country_outside_the_regions_is_refused_before_anything_is_sent(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """`payee_country_problem` keeps working: with the full agreement (the default), a
        payee outside the cross-border regions is refused before any v2 request."""
        router.get("/v1/account").mock(return_value=answer(builders.platform_account()))
        route = router.post("/v2/core/accounts").mock(return_value=answer(builders.account_v2()))

        assert gateway.payee_country_problem("BR") is not None
        with pytest.raises(ValidationError) as raised:
            gateway.create_account(payee_id="u2", email=None, country="BR", idempotency_key=KEY)

        assert isinstance(raised.value, GatewayRejectedError)
        assert raised.value.code == "country_unsupported"
        assert not route.called

    def test_with_the_recipient_agreement_any_country_goes_to_stripe(
        self, router: respx.MockRouter
    ) -> None:
        """The recipient configuration is the agreement: nothing else is sent for it."""
        route = router.post("/v2/core/accounts").mock(return_value=answer(builders.account_v2()))
        with StripeGateway(
            api_key=TEST_KEY,
            max_network_retries=0,
            accounts="v2",
            cross_border_agreement="recipient",
            platform_country="US",
        ) as gw:
            gw.create_account(payee_id="u2", email=None, country="BR", idempotency_key=KEY)

        sent = body(route.calls.last.request)
        assert sent["identity"] == {"country": "BR"}
        assert "tos_acceptance" not in sent

    def test_a_replayed_answer_gives_the_same_account(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/account").mock(return_value=answer(builders.platform_account()))
        created = builders.account_v2(id="acct_1", metadata={META_PAYEE: "u2"})
        router.post("/v2/core/accounts").mock(
            side_effect=[
                answer(created),
                answer(created, headers={"Idempotent-Replayed": "true"}),
            ]
        )

        first = gateway.create_account(payee_id="u2", email=None, country="US", idempotency_key=KEY)
        again = gateway.create_account(payee_id="u2", email=None, country="US", idempotency_key=KEY)

        assert first == again


class TestGetAccount:
    @pytest.mark.parametrize(
        ("status", "ready"),
        [("active", True), ("pending", False), ("restricted", False), ("rejected", False)],
    )
    def test_ready_only_when_stripe_transfers_is_active(
        self, router: respx.MockRouter, gateway: StripeGateway, status: str, ready: bool
    ) -> None:
        route = router.get("/v2/core/accounts/acct_1").mock(
            return_value=answer(builders.account_v2(id="acct_1", stripe_transfers=status))
        )

        assert gateway.get_account("acct_1").ready is ready
        request = route.calls.last.request
        assert request.method == "GET"
        # The SDK writes arrays of a v2 query with indexes, as it does for v1.
        assert query(request) == {"include[0]": "configuration.recipient"}

    def test_an_account_without_the_recipient_configuration_is_not_ready(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v2/core/accounts/acct_1").mock(
            return_value=answer(builders.account_v2(id="acct_1", stripe_transfers=None))
        )

        assert gateway.get_account("acct_1") == AccountSnapshot(ref="acct_1", ready=False)

    def test_a_closed_account_is_reported_as_gone(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v2/core/accounts/acct_1").mock(
            return_value=answer(
                builders.account_v2(id="acct_1", stripe_transfers="active", closed=True)
            )
        )

        assert gateway.get_account("acct_1") == AccountSnapshot(
            ref="acct_1", ready=False, deauthorized=True
        )

    def test_an_unknown_account_is_rejected(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v2/core/accounts/acct_nope").mock(
            return_value=httpx.Response(
                404,
                json={
                    "error": {
                        "type": "not_found",
                        "code": "resource_missing",
                        "message": "No such account: 'acct_nope'",
                    }
                },
            )
        )

        with pytest.raises(GatewayRejectedError):
            gateway.get_account("acct_nope")


class TestOnboardingLink:
    def test_posts_a_v2_account_link_and_returns_its_url(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        link = builders.account_link_v2(account="acct_1")
        route = router.post("/v2/core/account_links").mock(return_value=answer(link))

        url = gateway.create_onboarding_link(
            "acct_1", return_url="https://h.example/back", refresh_url="https://h.example/again"
        )

        assert url == link["url"]
        request = route.calls.last.request
        assert "Idempotency-Key" not in request.headers or request.headers["Idempotency-Key"]
        assert body(request) == {
            "account": "acct_1",
            "use_case": {
                "type": "account_onboarding",
                "account_onboarding": {
                    "return_url": "https://h.example/back",
                    "refresh_url": "https://h.example/again",
                },
            },
        }


class TestTransferToAV2Account:
    def test_goes_out_as_a_v1_transfer_with_the_account_as_destination(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        metadata = {META_ESCROW: "esc_1", META_OPERATION: "op_1"}
        transfer = builders.transfer(
            id="tr_1", amount=9_000, destination="acct_1Qv2", metadata=metadata
        )
        route = router.post("/v1/transfers").mock(return_value=answer(transfer))

        snapshot = gateway.create_transfer(
            CreateTransfer(
                amount=Money(9_000, "usd"),
                destination="acct_1Qv2",
                transfer_group="bountyescrow:esc_1",
                metadata=metadata,
                source_transaction="ch_1",
            ),
            idempotency_key=KEY,
        )

        request = route.calls.last.request
        assert request.url.path == "/v1/transfers"
        assert form(request)["destination"] == "acct_1Qv2"
        assert snapshot.destination == "acct_1Qv2"


class TestReleaseToAV2Payee:
    def test_waits_for_onboarding_then_goes_out_as_a_v1_transfer(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        """The whole path on the SDK's traffic: the payee is a v2 account, the Connect event
        saying it is ready is re-fetched through v2, and the release is a v1 transfer."""
        poster = Actor("poster-1")
        service = EscrowService(InMemoryStore(), gateway, fee_bps=1_000, namespace="test")
        escrow = service.open_escrow(
            bounty_id="b1",
            poster_id=poster.id,
            amount=Money(25_000, "usd"),
            actor=poster,
            idempotency_key=new_key(),
        )
        assert escrow.payment_ref is not None
        stand_in.succeed(escrow.payment_ref)
        service.apply_event(
            GatewayEvent(
                id="evt_paid",
                type="payment_intent.succeeded",
                object=gateway.get_payment(escrow.payment_ref),
                livemode=False,
            )
        )
        payee = service.register_payee("hunter-1", email="h@example.com", country="US")
        release = service.release(
            escrow.id, payee_id="hunter-1", actor=poster, idempotency_key=new_key()
        )
        assert release.status is OperationStatus.AWAITING_PAYEE

        stand_in.activate(payee.account_ref)
        # A v1-shaped account.updated still saying "not ready": the service re-fetches it.
        stale = AccountSnapshot(ref=payee.account_ref, ready=False)
        service.apply_event(
            GatewayEvent(id="evt_ready", type="account.updated", object=stale, livemode=False)
        )

        assert service.get_operation(release.id).status is OperationStatus.SUCCEEDED
        paths = [(r.method, r.url.path) for r in stand_in.requests]
        assert ("POST", "/v2/core/accounts") in paths
        assert ("GET", f"/v2/core/accounts/{payee.account_ref}") in paths
        assert ("POST", "/v1/accounts") not in paths
        (transfer,) = stand_in.transfers.values()
        assert (transfer["destination"], transfer["amount"]) == (payee.account_ref, 22_500)


class TestParse:
    def test_parse_object_reads_a_v2_account(self) -> None:
        data = builders.account_v2(id="acct_1", stripe_transfers="active")

        assert parse_object(data) == AccountSnapshot(ref="acct_1", ready=True)

    def test_a_malformed_configuration_is_unreadable(self) -> None:
        data = {**builders.account_v2(id="acct_1"), "configuration": "recipient"}

        with pytest.raises(TypeError):
            parse_account_v2(data)
