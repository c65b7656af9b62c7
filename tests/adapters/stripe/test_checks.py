"""Requests Stripe would refuse are refused before anything is sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import respx

from bountyescrow import errors
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.domain.gateway_objects import (
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
)
from bountyescrow.domain.money import Money

from . import builders
from .support import answer

KEY = "bountyescrow:test:op_1:0"


def payment(
    amount: Money,
    *,
    key: str = KEY,
    transfer_group: str = "g",
    metadata: dict[str, str] | None = None,
    payment_method_types: tuple[str, ...] = ("card",),
) -> Callable[[StripeGateway], object]:
    request = CreatePayment(
        amount=amount,
        transfer_group=transfer_group,
        metadata=metadata or {},
        payment_method_types=payment_method_types,
    )
    return lambda g: g.create_payment(request, idempotency_key=key)


def transfer(amount: Money) -> Callable[[StripeGateway], object]:
    request = CreateTransfer(
        amount=amount,
        destination="acct_1",
        source_transaction=None,
        transfer_group="g",
        metadata={},
    )
    return lambda g: g.create_transfer(request, idempotency_key=KEY)


def refund(amount: Money, reason: str | None = None) -> Callable[[StripeGateway], object]:
    request = CreateRefund(amount=amount, payment_ref="pi_1", metadata={}, reason=reason)
    return lambda g: g.create_refund(request, idempotency_key=KEY)


def reversal(amount: Money) -> Callable[[StripeGateway], object]:
    request = CreateReversal(amount=amount, transfer_ref="tr_1", metadata={})
    return lambda g: g.create_reversal(request, idempotency_key=KEY)


def refused(
    router: respx.MockRouter, gateway: StripeGateway, call: Callable[[StripeGateway], object]
) -> errors.GatewayRejectedError:
    """Run `call`; check it raised a ValidationError and sent nothing. Returns the error."""
    with pytest.raises(errors.ValidationError) as caught:
        call(gateway)
    assert router.calls.call_count == 0, "nothing may reach Stripe"
    # Also the port's definitive refusal, so a stored request is failed, not retried.
    error = caught.value
    assert isinstance(error, errors.GatewayRejectedError)
    assert not error.outcome_unknown
    return error


class TestMinimumCharge:
    @pytest.mark.parametrize(
        ("amount", "minimum"),
        [
            (Money(49, "usd"), "$0.50"),
            (Money(49, "eur"), "€0.50"),
            (Money(29, "gbp"), "£0.30"),
            (Money(49, "jpy"), "¥50"),
            (Money(399, "hkd"), "HK$4.00"),
            (Money(17_499, "huf"), "HUF 175.00"),
            (Money(999, "mxn"), "MX$10.00"),
        ],
    )
    def test_a_payment_below_stripes_minimum_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, amount: Money, minimum: str
    ) -> None:
        error = refused(router, gateway, payment(amount))

        assert minimum in error.message
        assert error.code == "amount_too_small"

    @pytest.mark.parametrize(
        "amount", [Money(50, "usd"), Money(30, "gbp"), Money(50, "jpy"), Money(1, "cny")]
    )
    def test_a_payment_at_the_minimum_or_in_a_currency_without_one_is_sent(
        self, router: respx.MockRouter, gateway: StripeGateway, amount: Money
    ) -> None:
        route = router.post("/v1/payment_intents").mock(
            return_value=answer(
                builders.payment_intent(amount=amount.amount, currency=amount.currency)
            )
        )

        payment(amount)(gateway)

        assert route.called

    def test_a_transfer_has_no_minimum(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer(amount=1)))

        transfer(Money(1, "usd"))(gateway)

        assert route.called


ALL_MOVEMENTS = [payment, transfer, refund, reversal]


class TestAmounts:
    @pytest.mark.parametrize("make", ALL_MOVEMENTS)
    @pytest.mark.parametrize("amount", [0, -100])
    def test_an_amount_that_is_not_positive_is_refused(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        make: Callable[[Money], Callable[[StripeGateway], object]],
        amount: int,
    ) -> None:
        error = refused(router, gateway, make(Money(amount, "usd")))

        assert "positive" in error.message

    @pytest.mark.parametrize("make", ALL_MOVEMENTS)
    def test_more_than_eight_digits_is_refused(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        make: Callable[[Money], Callable[[StripeGateway], object]],
    ) -> None:
        error = refused(router, gateway, make(Money(100_000_000, "usd")))

        assert "eight digits" in error.message

    def test_eight_digits_are_sent(self, router: respx.MockRouter, gateway: StripeGateway) -> None:
        route = router.post("/v1/payment_intents").mock(
            return_value=answer(builders.payment_intent(amount=99_999_999))
        )

        payment(Money(99_999_999, "usd"))(gateway)

        assert route.called

    @pytest.mark.parametrize("make", ALL_MOVEMENTS)
    @pytest.mark.parametrize("currency", ["kwd", "bhd", "jod", "omr", "tnd"])
    def test_a_three_decimal_amount_must_end_in_zero(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        make: Callable[[Money], Callable[[StripeGateway], object]],
        currency: str,
    ) -> None:
        error = refused(router, gateway, make(Money(5_125, currency)))

        assert "multiple of 10" in error.message

    def test_a_three_decimal_amount_ending_in_zero_is_sent(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        route = router.post("/v1/refunds").mock(
            return_value=answer(builders.refund(amount=5_120, currency="kwd"))
        )

        refund(Money(5_120, "kwd"))(gateway)

        assert route.called


class TestOtherFields:
    def test_a_refund_reason_stripe_does_not_know_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        error = refused(router, gateway, refund(Money(500, "usd"), reason="changed_my_mind"))

        assert "requested_by_customer" in error.message

    @pytest.mark.parametrize("key", ["", "k" * 256])
    def test_an_empty_or_overlong_idempotency_key_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, key: str
    ) -> None:
        refused(router, gateway, payment(Money(500, "usd"), key=key))

    @pytest.mark.parametrize(
        "metadata",
        [{"a[b]": "x"}, {"k" * 41: "x"}, {"k": "v" * 501}, {f"k{n}": "v" for n in range(51)}],
        ids=["brackets", "long_key", "long_value", "too_many"],
    )
    def test_metadata_stripe_would_refuse_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, metadata: dict[str, str]
    ) -> None:
        refused(router, gateway, payment(Money(500, "usd"), metadata=metadata))

    def test_no_payment_method_type_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        refused(router, gateway, payment(Money(500, "usd"), payment_method_types=()))

    def test_an_empty_transfer_group_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        refused(router, gateway, payment(Money(500, "usd"), transfer_group=""))

    @pytest.mark.parametrize("ref", ["", "pi_1/cancel", " pi_1"])
    def test_an_object_id_that_would_change_the_url_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, ref: str
    ) -> None:
        refused(router, gateway, lambda g: g.get_payment(ref))
        refused(
            router,
            gateway,
            lambda g: g.cancel_payment(CancelPayment(payment_ref=ref), idempotency_key=KEY),
        )

    @pytest.mark.parametrize("country", ["USA", "u", "", "1A"])
    def test_a_payee_country_that_is_not_two_letters_is_refused(
        self, router: respx.MockRouter, gateway: StripeGateway, country: str
    ) -> None:
        refused(
            router,
            gateway,
            lambda g: g.create_account(
                payee_id="u2", email=None, country=country, idempotency_key="payee:u2"
            ),
        )
