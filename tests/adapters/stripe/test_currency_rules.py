"""`StripeGateway` refuses amounts Stripe would refuse in each currency, before sending.

The rules are the shared table (`bountyescrow.domain.currencies`), which `FakeGateway` checks
too; accepted amounts reach Stripe's HTTP API unchanged, in Stripe's minor units.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
import respx

from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.domain.money import Money

from . import builders
from .support import answer
from .test_checks import payment, refund, refused, reversal, transfer

ALL_MOVEMENTS = [payment, transfer, refund, reversal]
Make = Callable[[Money], Callable[[StripeGateway], object]]


def form(route: respx.Route) -> dict[str, list[str]]:
    return parse_qs(route.calls.last.request.content.decode())


class TestWholeUnitCurrencies:
    """UGX and ISK: two decimals in Stripe's amounts, always 00."""

    @pytest.mark.parametrize("make", ALL_MOVEMENTS)
    @pytest.mark.parametrize("currency", ["ugx", "isk"])
    def test_an_amount_with_a_fraction_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, make: Make, currency: str
    ) -> None:
        error = refused(router, gateway, make(Money(50_050, currency)))

        assert "multiple of 100" in error.message
        assert f"whole {currency.upper()}" in error.message

    @pytest.mark.parametrize("currency", ["ugx", "isk"])
    def test_whole_units_are_sent_as_hundredths(
        self, router: respx.MockRouter, gateway: StripeGateway, currency: str
    ) -> None:
        route = router.post("/v1/payment_intents").mock(
            return_value=answer(builders.payment_intent(amount=50_000, currency=currency))
        )

        payment(Money(50_000, currency))(gateway)

        assert form(route)["amount"] == ["50000"]
        assert form(route)["currency"] == [currency]


class TestHufAndTwd:
    @pytest.mark.parametrize("currency", ["huf", "twd"])
    def test_a_transfer_with_two_decimals_is_sent(
        self, router: respx.MockRouter, gateway: StripeGateway, currency: str
    ) -> None:
        """Stripe wants whole units only for payouts, which the library does not make."""
        route = router.post("/v1/transfers").mock(
            return_value=answer(builders.transfer(amount=500_025, currency=currency))
        )

        transfer(Money(500_025, currency))(gateway)

        assert form(route)["amount"] == ["500025"]

    def test_huf_below_175_forint_is_refused_as_a_charge(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        error = refused(router, gateway, payment(Money(17_499, "huf")))

        assert error.code == "amount_too_small"


class TestCap:
    @pytest.mark.parametrize("currency", ["jpy", "ugx", "kwd"])
    def test_more_than_eight_digits_is_refused_in_every_currency(
        self, router: respx.MockRouter, gateway: StripeGateway, currency: str
    ) -> None:
        error = refused(router, gateway, payment(Money(100_000_000, currency)))

        assert "eight digits" in error.message
        assert error.code == "amount_too_large"
