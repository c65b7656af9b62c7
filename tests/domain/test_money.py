"""Money: integer minor units in one lower-case currency, refusing everything else."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bountyescrow.domain.money import (
    KNOWN_CURRENCIES,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    Money,
    decimals,
)

currencies = st.sampled_from(sorted(KNOWN_CURRENCIES))
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@st.composite
def same_currency_pairs(draw: st.DrawFn) -> tuple[Money, Money]:
    currency = draw(currencies)
    return Money(draw(amounts), currency), Money(draw(amounts), currency)


class TestConstruction:
    def test_keeps_integer_minor_units_and_the_currency(self) -> None:
        money = Money(25_000, "usd")
        assert (money.amount, money.currency) == (25_000, "usd")

    @pytest.mark.parametrize(
        "amount",
        [25.0, 0.1, True, False, Decimal("25.00"), "2500", None],
        ids=["float", "fraction", "true", "false", "decimal", "str", "none"],
    )
    def test_refuses_anything_but_an_int_amount(self, amount: object) -> None:
        with pytest.raises(TypeError, match="minor units"):
            Money(amount, "usd")  # type: ignore[arg-type]

    @pytest.mark.parametrize("currency", ["USD", "Usd", "xyz", "", "us", "dollar", 840])
    def test_refuses_unknown_or_upper_case_currencies(self, currency: object) -> None:
        with pytest.raises(ValueError, match="lower-case ISO 4217"):
            Money(100, currency)  # type: ignore[arg-type]

    def test_allows_negative_amounts_for_ledger_balances(self) -> None:
        assert Money(-5, "eur").amount == -5

    def test_is_immutable_and_hashable(self) -> None:
        money = Money(1, "usd")
        with pytest.raises(AttributeError):
            money.amount = 2  # type: ignore[misc]
        assert {money, Money(1, "usd")} == {money}

    def test_zero_is_nothing_in_the_currency(self) -> None:
        assert Money.zero("jpy") == Money(0, "jpy")
        assert not Money.zero("jpy")
        assert Money(1, "jpy")

    @given(st.floats(allow_nan=True, allow_infinity=True))
    def test_never_accepts_a_float(self, value: float) -> None:
        with pytest.raises(TypeError):
            Money(value, "usd")  # type: ignore[arg-type]


class TestArithmetic:
    def test_adds_subtracts_and_negates_within_a_currency(self) -> None:
        assert Money(250, "usd") + Money(50, "usd") == Money(300, "usd")
        assert Money(250, "usd") - Money(300, "usd") == Money(-50, "usd")
        assert -Money(250, "usd") == Money(-250, "usd")

    @pytest.mark.parametrize(
        "combine",
        [
            lambda a, b: a + b,
            lambda a, b: a - b,
            lambda a, b: a < b,
            lambda a, b: a <= b,
            lambda a, b: a > b,
            lambda a, b: a >= b,
            lambda a, b: a.min(b),
        ],
        ids=["add", "sub", "lt", "le", "gt", "ge", "min"],
    )
    def test_refuses_to_mix_currencies(self, combine: object) -> None:
        with pytest.raises(ValueError, match="cannot combine usd and eur"):
            combine(Money(1, "usd"), Money(1, "eur"))  # type: ignore[operator]

    def test_refuses_to_combine_with_a_bare_number(self) -> None:
        with pytest.raises(TypeError):
            Money(1, "usd") + 1  # type: ignore[operator]

    def test_amounts_in_different_currencies_are_not_equal(self) -> None:
        assert Money(100, "usd") != Money(100, "eur")

    def test_min_and_is_positive(self) -> None:
        assert Money(3, "usd").min(Money(2, "usd")) == Money(2, "usd")
        assert Money(1, "usd").is_positive
        assert not Money(0, "usd").is_positive
        assert not Money(-1, "usd").is_positive

    @given(same_currency_pairs())
    def test_adding_then_subtracting_gives_the_amount_back(self, pair: tuple[Money, Money]) -> None:
        a, b = pair
        assert a + b - b == a

    @given(same_currency_pairs())
    def test_ordering_follows_the_amounts(self, pair: tuple[Money, Money]) -> None:
        a, b = pair
        assert (a < b) == (a.amount < b.amount)
        assert (a <= b) == (a.amount <= b.amount)
        assert (a > b) == (a.amount > b.amount)
        assert (a >= b) == (a.amount >= b.amount)
        assert (a == b) == (a.amount == b.amount)
        assert a.min(b).amount == min(a.amount, b.amount)


class TestDecimals:
    @pytest.mark.parametrize("currency", sorted(ZERO_DECIMAL))
    def test_zero_decimal_currencies(self, currency: str) -> None:
        assert decimals(currency) == 0

    @pytest.mark.parametrize("currency", sorted(THREE_DECIMAL))
    def test_three_decimal_currencies(self, currency: str) -> None:
        assert decimals(currency) == 3

    @pytest.mark.parametrize("currency", ["usd", "eur", "gbp", "cad", "chf", "inr"])
    def test_everything_else_has_two(self, currency: str) -> None:
        assert decimals(currency) == 2

    def test_stripes_zero_decimal_list(self) -> None:
        """UGX is not among them: Stripe represents it with two decimals (always 00)."""
        assert {
            "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
            "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf",
        } == ZERO_DECIMAL  # fmt: skip

    @pytest.mark.parametrize("currency", ["ugx", "isk", "huf", "twd"])
    def test_stripes_special_cases_have_two(self, currency: str) -> None:
        assert decimals(currency) == 2

    def test_an_unknown_currency_has_no_decimals(self) -> None:
        with pytest.raises(ValueError, match="unknown currency"):
            decimals("xyz")

    def test_stripes_three_decimal_list(self) -> None:
        assert {"bhd", "jod", "kwd", "omr", "tnd"} == THREE_DECIMAL


class TestFormat:
    @pytest.mark.parametrize(
        ("money", "shown"),
        [
            (Money(25_000, "usd"), "$250.00"),
            (Money(5, "usd"), "$0.05"),
            (Money(0, "usd"), "$0.00"),
            (Money(500, "jpy"), "¥500"),
            (Money(1_250, "kwd"), "KWD 1.250"),
            (Money(-310, "eur"), "-€3.10"),
            (Money(-1, "usd"), "-$0.01"),
            (Money(123_456_789, "usd"), "$1,234,567.89"),
            (Money(1_234_567, "jpy"), "¥1,234,567"),
            (Money(1_234_567_891, "bhd"), "BHD 1,234,567.891"),
            (Money(1_000, "chf"), "CHF 10.00"),
            (Money(700, "xof"), "XOF 700"),
            (Money(50_000, "ugx"), "UGX 500"),
            (Money(123_456_700, "isk"), "ISK 1,234,567"),
            (Money(50_050, "isk"), "ISK 500.50"),
            (Money(17_550, "huf"), "HUF 175.50"),
            (Money(-12_345, "twd"), "-NT$123.45"),
        ],
        ids=lambda value: value if isinstance(value, str) else None,
    )
    def test_formats_for_people(self, money: Money, shown: str) -> None:
        assert money.format() == shown
        assert str(money) == shown

    @given(amounts, currencies)
    def test_format_never_raises_and_shows_the_sign(self, amount: int, currency: str) -> None:
        shown = Money(amount, currency).format()
        assert shown.startswith("-") == (amount < 0)
        assert shown[-1].isdigit()

    @given(st.integers(min_value=0, max_value=10**15), currencies)
    def test_format_keeps_every_minor_unit(self, amount: int, currency: str) -> None:
        """The number shown, read back, is the amount; ISK and UGX drop only their 00."""
        shown = Money(amount, currency).format()
        number = shown[shown.index(next(ch for ch in shown if ch.isdigit())) :]
        assert Decimal(number.replace(",", "")).scaleb(decimals(currency)) == amount

    @given(st.integers(min_value=0, max_value=10**13), st.sampled_from(["isk", "ugx"]))
    def test_whole_unit_currencies_show_no_decimals(self, units: int, currency: str) -> None:
        assert "." not in Money(units * 100, currency).format()


class TestUnknownCurrencies:
    def test_bgn_is_refused_with_the_currency_that_replaced_it(self) -> None:
        with pytest.raises(ValueError, match=r"lower-case ISO 4217.*use eur"):
            Money(100, "bgn")

    def test_a_code_stripe_added_rules_for_is_known(self) -> None:
        assert {"isk", "twd", "huf", "ugx"} <= KNOWN_CURRENCIES
