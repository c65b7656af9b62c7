"""Payees in other countries: the service agreement sent, the platform's country learnt from
Stripe (``GET /v1/account``, once), and the countries Stripe's cross-border payouts do not reach
refused before anything is sent.

Stripe's cross-border payouts (https://docs.stripe.com/connect/cross-border-payouts) connect
platforms and connected accounts in the US, the UK, the EEA, Canada and Switzerland, and need
the full service agreement; the recipient agreement goes with Global Payouts.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import respx

from bountyescrow import errors
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._gateway import ServiceAgreement
from bountyescrow.ports.gateway import RequestRefusedError

from . import builders
from .support import TEST_KEY, answer, form

REGIONS = ("US", "GB", "EEA", "CA", "CH")


def gateway_for(
    *, platform_country: str | None = None, cross_border_agreement: ServiceAgreement = "full"
) -> StripeGateway:
    return StripeGateway(
        api_key=TEST_KEY,
        max_network_retries=0,
        platform_country=platform_country,
        cross_border_agreement=cross_border_agreement,
    )


@pytest.fixture
def platform(router: respx.MockRouter) -> respx.Route:
    """``GET /v1/account``: a platform in France."""
    return router.get("/v1/account").mock(
        return_value=answer(builders.platform_account(country="FR", default_currency="eur"))
    )


@pytest.fixture
def accounts(router: respx.MockRouter) -> respx.Route:
    """``POST /v1/accounts``, answering with an account in the country asked for."""

    def create(request: httpx.Request) -> httpx.Response:
        params = form(request)
        return answer(builders.account(country=params["country"]))

    return router.post("/v1/accounts").mock(side_effect=create)


def create(gateway: StripeGateway, country: str, payee: str = "u2") -> None:
    gateway.create_account(
        payee_id=payee, email=None, country=country, idempotency_key=f"payee:{payee}"
    )


def agreement(route: respx.Route) -> str | None:
    """The ``tos_acceptance[service_agreement]`` of the last account created, if sent."""
    return form(route.calls.last.request).get("tos_acceptance[service_agreement]")


class TestServiceAgreement:
    def test_a_payee_in_the_platforms_country_gets_the_full_agreement(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        platform: respx.Route,
        accounts: respx.Route,
    ) -> None:
        """Nothing is sent: ``full`` is Stripe's default."""
        create(gateway, "FR")

        assert form(accounts.calls.last.request)["country"] == "FR"
        assert agreement(accounts) is None
        assert "tos_acceptance[service_agreement]" not in form(accounts.calls.last.request)

    @pytest.mark.parametrize("country", ["DE", "gb", "US", "CA", "CH", "NO"])
    def test_a_cross_border_payee_in_the_regions_gets_the_full_agreement(
        self, gateway: StripeGateway, platform: respx.Route, accounts: respx.Route, country: str
    ) -> None:
        """An FR platform's DE payee used to get ``recipient``, which Stripe refuses for
        cross-border payouts: the releases then waited as "destination not ready" forever."""
        create(gateway, country)

        assert form(accounts.calls.last.request)["country"] == country.upper()
        assert agreement(accounts) is None

    def test_an_explicit_recipient_choice_sends_recipient_for_payees_abroad_only(
        self, router: respx.MockRouter, platform: respx.Route, accounts: respx.Route
    ) -> None:
        with gateway_for(cross_border_agreement="recipient") as gateway:
            assert gateway.cross_border_agreement == "recipient"
            create(gateway, "BR", payee="abroad")
            assert agreement(accounts) == "recipient"
            create(gateway, "DE", payee="region")
            assert agreement(accounts) == "recipient"
            create(gateway, "fr", payee="home")
            assert agreement(accounts) is None
        assert platform.call_count == 1

    def test_the_default_is_the_full_agreement(self, gateway: StripeGateway) -> None:
        assert gateway.cross_border_agreement == "full"

    def test_an_unknown_agreement_is_a_configuration_error(self) -> None:
        with pytest.raises(errors.ConfigurationError, match="cross_border_agreement"):
            gateway_for(cross_border_agreement="express")  # type: ignore[arg-type]


class TestPlatformCountry:
    def test_is_asked_of_stripe_once_and_kept(
        self, gateway: StripeGateway, platform: respx.Route, accounts: respx.Route
    ) -> None:
        assert repr(gateway) == "StripeGateway(livemode=False, platform_country=None)"

        create(gateway, "DE", payee="u2")
        create(gateway, "FR", payee="u3")
        assert gateway.payee_country_problem("BR") is not None
        assert gateway.platform_country == "FR"

        assert platform.call_count == 1
        request = platform.calls.last.request
        assert (request.method, request.url.path, request.url.query) == ("GET", "/v1/account", b"")
        assert "Stripe-Account" not in request.headers
        assert [call.request.url.path for call in [*platform.calls, *accounts.calls]] == [
            "/v1/account",
            "/v1/accounts",
            "/v1/accounts",
        ]
        assert repr(gateway) == "StripeGateway(livemode=False, platform_country='FR')"

    def test_threads_asking_at_once_make_one_request(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        def slow(request: httpx.Request) -> httpx.Response:
            time.sleep(0.05)
            return answer(builders.platform_account(country="CH"))

        route = router.get("/v1/account").mock(side_effect=slow)
        seen: list[str] = []
        threads = [
            threading.Thread(target=lambda: seen.append(gateway.platform_country)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert seen == ["CH"] * 8
        assert route.call_count == 1

    def test_an_explicit_platform_country_asks_nothing(
        self, router: respx.MockRouter, accounts: respx.Route
    ) -> None:
        """The router answers no ``GET /v1/account``: a request for it would fail the call."""
        with gateway_for(platform_country="fr") as gateway:
            assert gateway.platform_country == "FR"
            assert gateway.payee_country_problem("DE") is None
            assert gateway.payee_country_problem("BR") is not None
            create(gateway, "DE")
        assert [call.request.url.path for call in router.calls] == ["/v1/accounts"]

    def test_a_failed_request_is_not_kept(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.get("/v1/account").mock(
            side_effect=[
                answer(builders.error("api_error", "Something went wrong."), status=500),
                answer(builders.platform_account(country="GB")),
            ]
        )

        with pytest.raises(errors.GatewayUnavailableError, match="get_platform_account"):
            _ = gateway.platform_country
        assert gateway.platform_country == "GB"
        assert gateway.platform_country == "GB"
        assert route.call_count == 2

    def test_an_answer_without_a_country_is_unreadable(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        body = {**builders.platform_account(), "country": None}
        router.get("/v1/account").mock(return_value=answer(body))

        with pytest.raises(errors.GatewayUnavailableError, match="cannot read"):
            _ = gateway.platform_country

    def test_a_refused_key_is_an_authentication_error(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/account").mock(
            return_value=answer(
                builders.error("invalid_request_error", "Invalid API Key provided"), status=401
            )
        )

        with pytest.raises(errors.GatewayAuthenticationError):
            gateway.payee_country_problem("JP")


class TestCountriesOutsideTheRegions:
    @pytest.mark.parametrize("country", ["BR", "jp", "AU", "IN", "MX", "SG", "TH"])
    def test_are_refused_before_the_account_is_created(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        platform: respx.Route,
        accounts: respx.Route,
        country: str,
    ) -> None:
        with pytest.raises(RequestRefusedError) as refused:
            create(gateway, country)

        assert refused.value.code == "country_unsupported"
        message = refused.value.message
        assert f"a payee in {country.upper()}" in message
        assert "platform in FR" in message
        for region in REGIONS:
            assert region in message
        assert not accounts.called, "the account was created"
        assert [call.request.method for call in router.calls] == ["GET"]

    def test_the_refusal_leaves_the_idempotency_key_free(
        self, gateway: StripeGateway, platform: respx.Route, accounts: respx.Route
    ) -> None:
        with pytest.raises(RequestRefusedError):
            create(gateway, "BR", payee="u2")
        create(gateway, "DE", payee="u2")
        assert accounts.call_count == 1

    def test_payee_country_problem_says_why(
        self, gateway: StripeGateway, platform: respx.Route
    ) -> None:
        for fine in ("FR", "fr", "DE", "US", "GB", "CA", "CH", "NO", "LI", "IS"):
            assert gateway.payee_country_problem(fine) is None, fine
        problem = gateway.payee_country_problem("BR")
        assert problem is not None
        assert "BR" in problem
        assert "Global Payouts" in problem
        bad = gateway.payee_country_problem("USA")
        assert bad is not None
        assert "two-letter" in bad

    def test_a_platform_outside_the_regions_is_left_to_stripe(
        self, router: respx.MockRouter, gateway: StripeGateway, accounts: respx.Route
    ) -> None:
        """Stripe offers it no self-serve cross-border payouts but may enable them."""
        router.get("/v1/account").mock(
            return_value=answer(builders.platform_account(country="JP", default_currency="jpy"))
        )

        assert gateway.payee_country_problem("JP") is None
        assert gateway.payee_country_problem("US") is None
        create(gateway, "US")
        assert agreement(accounts) is None

    def test_the_recipient_agreement_leaves_the_country_to_stripe(
        self, router: respx.MockRouter
    ) -> None:
        """Nothing is asked of Stripe to answer: the platform's country does not matter."""
        with gateway_for(cross_border_agreement="recipient") as gateway:
            assert gateway.payee_country_problem("BR") is None
            assert gateway.payee_country_problem("USA") is not None
        assert not router.calls
