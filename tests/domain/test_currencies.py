"""One table of currency rules, as Stripe states them, and everything that reads it.

Each rule of `bountyescrow.domain.currencies` has a test here: its row in the table, then what
`amount_rules` (shared by the service and both gateways), `Money` and the settings make of it.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bountyescrow import Actor, EscrowService, EscrowSettings, errors
from bountyescrow.domain.amount_rules import MAX_AMOUNT, MINIMUM_CHARGE, problem, round_down, step
from bountyescrow.domain.currencies import CURRENCIES, CurrencyRules, rules
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.money import KNOWN_CURRENCIES, THREE_DECIMAL, ZERO_DECIMAL, Money
from bountyescrow.testing import FakeGateway, InMemoryStore

THREE = ["bhd", "jod", "kwd", "omr", "tnd"]


def message(amount: Money, **kwargs: bool) -> str:
    found = problem(amount, **kwargs)
    assert found is not None, f"{amount} was accepted"
    return found[0]


class TestTable:
    def test_every_row_is_a_frozen_record_under_its_own_code(self) -> None:
        for code, row in CURRENCIES.items():
            assert row.code == code == code.lower()
            assert row.exponent in (0, 2, 3)
            assert row.symbol
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                row.exponent = 5  # type: ignore[misc]

    def test_the_table_cannot_be_changed(self) -> None:
        with pytest.raises(TypeError):
            CURRENCIES["xyz"] = CurrencyRules("xyz", "X")  # type: ignore[index]

    def test_the_old_public_names_are_views_of_the_table(self) -> None:
        assert frozenset(CURRENCIES) == KNOWN_CURRENCIES
        assert {c for c, r in CURRENCIES.items() if r.exponent == 0} == ZERO_DECIMAL
        assert {c for c, r in CURRENCIES.items() if r.exponent == 3} == THREE_DECIMAL
        assert {c: r.minimum_charge for c, r in CURRENCIES.items() if r.minimum_charge} == dict(
            MINIMUM_CHARGE
        )

    def test_a_step_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="charge_step must be positive"):
            CurrencyRules("xyz", "X", charge_step=0)


class TestUsd:
    def test_two_decimals_steps_of_one_and_a_fifty_cent_minimum(self) -> None:
        assert rules("usd") == CurrencyRules("usd", "$", minimum_charge=50)
        assert step("usd") == 1
        assert problem(Money(1, "usd")) is None
        assert problem(Money(50, "usd"), charge=True) is None
        assert "$0.50" in message(Money(49, "usd"), charge=True)


class TestJpy:
    def test_zero_decimal_with_a_minimum_of_fifty_yen(self) -> None:
        row = rules("jpy")
        assert (row.exponent, row.step, row.minimum_charge) == (0, 1, 50)
        assert "¥50" in message(Money(49, "jpy"), charge=True)
        assert problem(Money(51, "jpy"), charge=True) is None
        assert Money(1_234, "jpy").format() == "¥1,234"


class TestThreeDecimalCurrencies:
    @pytest.mark.parametrize("currency", THREE)
    def test_three_decimals_and_every_amount_a_multiple_of_ten(self, currency: str) -> None:
        row = rules(currency)
        assert (row.exponent, row.charge_step, row.transfer_step) == (3, 10, 10)
        assert "multiple of 10" in message(Money(1_005, currency))
        assert problem(Money(1_010, currency)) is None

    def test_kwd_is_shown_with_three_decimals(self) -> None:
        assert Money(1_250, "kwd").format() == "KWD 1.250"

    def test_the_three_decimal_set_is_stripes(self) -> None:
        assert sorted(THREE_DECIMAL) == THREE


class TestUgx:
    """Stripe represents UGX with two decimals but charges whole shillings."""

    def test_two_decimals_in_steps_of_a_hundred(self) -> None:
        row = rules("ugx")
        assert (row.exponent, row.charge_step, row.transfer_step, row.payout_step) == (
            2,
            100,
            100,
            100,
        )
        assert row.whole_units
        assert "ugx" not in ZERO_DECIMAL

    def test_an_amount_with_a_fraction_of_a_shilling_is_refused(self) -> None:
        text = message(Money(50_050, "ugx"))
        assert "multiple of 100" in text
        assert "whole UGX" in text
        assert problem(Money(50_000, "ugx")) is None
        assert problem(Money(50_000, "ugx"), charge=True) is None

    def test_fees_round_down_to_whole_shillings(self) -> None:
        split = FeeSchedule(1000).split(Money(123_400, "ugx"), first_release=False)
        assert (split.fee, split.net) == (Money(12_300, "ugx"), Money(111_100, "ugx"))
        assert round_down(12_399, "ugx") == 12_300

    def test_a_fixed_fee_with_a_fraction_is_refused(self) -> None:
        with pytest.raises(ValueError, match="multiple of 100"):
            FeeSchedule(100, fixed=Money(150, "ugx"))

    def test_shown_in_whole_shillings(self) -> None:
        assert Money(50_000, "ugx").format() == "UGX 500"


class TestIsk:
    """ISK: zero-decimal in practice, two decimals (always 00) in Stripe's API."""

    def test_two_decimals_in_steps_of_a_hundred(self) -> None:
        row = rules("isk")
        assert (row.exponent, row.charge_step, row.transfer_step, row.payout_step) == (
            2,
            100,
            100,
            100,
        )
        assert row.minimum_charge is None

    @pytest.mark.parametrize("charge", [False, True])
    def test_fractions_of_a_krona_are_refused(self, charge: bool) -> None:
        assert "whole ISK" in message(Money(501, "isk"), charge=charge)
        assert problem(Money(500, "isk"), charge=charge) is None

    def test_shown_in_whole_kronur(self) -> None:
        assert Money(500_000, "isk").format() == "ISK 5,000"


class TestHufAndTwd:
    """Two decimals for charges and transfers, whole units for payouts."""

    @pytest.mark.parametrize("currency", ["huf", "twd"])
    def test_charges_and_transfers_take_two_decimals(self, currency: str) -> None:
        row = rules(currency)
        assert (row.exponent, row.step, row.payout_step) == (2, 1, 100)
        assert problem(Money(100_050, currency)) is None

    @pytest.mark.parametrize("currency", ["huf", "twd"])
    def test_payouts_must_be_multiples_of_a_hundred(self, currency: str) -> None:
        text = message(Money(100_050, currency), payout=True)
        assert f"whole {currency.upper()}" in text
        assert problem(Money(100_000, currency), payout=True) is None

    def test_huf_minimum_charge_is_175_forint(self) -> None:
        assert "HUF 175.00" in message(Money(17_499, "huf"), charge=True)
        assert problem(Money(17_500, "huf"), charge=True) is None

    def test_twd_is_known_and_shown_as_new_taiwan_dollars(self) -> None:
        assert Money(12_345, "twd").format() == "NT$123.45"
        assert rules("twd").minimum_charge is None


class TestObsoleteCurrencies:
    def test_bgn_is_unknown(self) -> None:
        assert "bgn" not in CURRENCIES
        assert "bgn" not in MINIMUM_CHARGE
        with pytest.raises(ValueError, match="bgn is no longer in use, use eur"):
            rules("bgn")

    def test_an_unknown_code_says_what_to_use(self) -> None:
        with pytest.raises(ValueError, match="lower-case ISO 4217"):
            rules("USD")


class TestCap:
    """Eight digits for every currency: the library's choice, whatever the payment method."""

    def test_the_cap_is_eight_digits(self) -> None:
        assert MAX_AMOUNT == 99_999_999

    @pytest.mark.parametrize("currency", ["usd", "jpy", "ugx", "kwd"])
    def test_above_the_cap_is_refused_at_it_accepted(self, currency: str) -> None:
        top = round_down(MAX_AMOUNT, currency)
        assert problem(Money(top, currency)) is None
        found = problem(Money(top + step(currency), currency))
        assert found is not None
        assert found[1] == "amount_too_large"
        assert "eight digits" in found[0]


@given(st.sampled_from(sorted(CURRENCIES)), st.integers(min_value=1, max_value=MAX_AMOUNT))
def test_round_down_always_gives_an_acceptable_amount(currency: str, amount: int) -> None:
    rounded = round_down(amount, currency)
    assert rounded == 0 or problem(Money(rounded, currency)) is None


class TestSettings:
    def test_max_amount_defaults_to_the_cap(self) -> None:
        assert EscrowSettings().max_amount == MAX_AMOUNT

    def test_max_amount_above_the_cap_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at most 99999999"):
            EscrowSettings(max_amount=MAX_AMOUNT + 1)

    def test_a_lower_max_amount_is_kept(self) -> None:
        assert EscrowSettings(max_amount=1_000).max_amount == 1_000

    def test_bgn_is_refused_as_a_settlement_currency(self) -> None:
        with pytest.raises(ValueError, match="bgn is no longer in use"):
            EscrowSettings(settlement_currencies=frozenset({"usd", "bgn"}))

    def test_the_special_cases_are_settlement_currencies(self) -> None:
        found = EscrowSettings(settlement_currencies=frozenset({"isk", "twd", "huf", "ugx"}))
        assert found.settlement_currencies == {"isk", "twd", "huf", "ugx"}


class TestService:
    """The service checks the same rules before anything is written."""

    @staticmethod
    def service(currency: str, **settings: object) -> EscrowService:
        return EscrowService(
            store=InMemoryStore(),
            gateway=FakeGateway(),
            settings=EscrowSettings(settlement_currencies=frozenset({currency}), **settings),
        )

    @pytest.mark.parametrize("currency", ["ugx", "isk"])
    def test_an_escrow_with_a_fraction_of_a_whole_unit_currency_is_refused(
        self, currency: str
    ) -> None:
        service = self.service(currency)
        with pytest.raises(errors.ValidationError, match=f"whole {currency.upper()}"):
            service.open_escrow(
                bounty_id="b1", poster_id="u1", amount=Money(50_050, currency),
                actor=Actor("u1"), idempotency_key="bounty:b1",
            )  # fmt: skip
        assert service.find(bounty_id="b1") == []

    def test_whole_units_open_an_escrow(self) -> None:
        service = self.service("ugx")
        escrow = service.open_escrow(
            bounty_id="b1", poster_id="u1", amount=Money(50_000, "ugx"),
            actor=Actor("u1"), idempotency_key="bounty:b1",
        )  # fmt: skip
        assert escrow.amount == Money(50_000, "ugx")

    def test_the_settings_cap_applies_below_the_librarys(self) -> None:
        service = self.service("usd", max_amount=10_000)
        with pytest.raises(errors.ValidationError, match="above the limit of 10000"):
            service.open_escrow(
                bounty_id="b1", poster_id="u1", amount=Money(10_001, "usd"),
                actor=Actor("u1"), idempotency_key="bounty:b1",
            )  # fmt: skip
