"""The platform fee: floor(gross * bps / 10 000), plus a fixed part on the first release."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bountyescrow.domain.fees import FeeSchedule, FeeSplit
from bountyescrow.domain.money import Money


def usd(amount: int) -> Money:
    return Money(amount, "usd")


class TestFeeSchedule:
    @pytest.mark.parametrize("bps", [0, 1, 1000, 9999])
    def test_accepts_bps_from_zero_to_9999(self, bps: int) -> None:
        assert FeeSchedule(bps).bps == bps

    @pytest.mark.parametrize("bps", [-1, 10_000, 20_000])
    def test_refuses_bps_out_of_bounds(self, bps: int) -> None:
        with pytest.raises(ValueError, match="between 0 and 9999"):
            FeeSchedule(bps)

    @pytest.mark.parametrize("bps", [10.0, True, "1000", None])
    def test_refuses_bps_that_are_not_an_int(self, bps: object) -> None:
        with pytest.raises(TypeError, match="must be an int"):
            FeeSchedule(bps)  # type: ignore[arg-type]

    def test_refuses_a_negative_fixed_fee(self) -> None:
        with pytest.raises(ValueError, match="must not be negative"):
            FeeSchedule(1000, fixed=usd(-1))

    def test_is_a_frozen_value(self) -> None:
        assert FeeSchedule(1000, usd(30)) == FeeSchedule(1000, usd(30))
        with pytest.raises(AttributeError):
            FeeSchedule(1000).bps = 5  # type: ignore[misc]


class TestSplit:
    def test_ten_percent_of_a_release(self) -> None:
        assert FeeSchedule(1000).split(usd(25_000), first_release=True) == FeeSplit(
            gross=usd(25_000), fee=usd(2_500), net=usd(22_500), fixed=usd(0)
        )

    @pytest.mark.parametrize(
        ("gross", "bps", "fee"),
        [(999, 1000, 99), (1, 9999, 0), (10_001, 250, 250), (3, 3333, 0), (7_777, 1234, 959)],
    )
    def test_rounds_the_fee_down_in_the_payees_favour(self, gross: int, bps: int, fee: int) -> None:
        split = FeeSchedule(bps).split(usd(gross), first_release=False)
        assert split.fee == usd(fee)
        assert split.net == usd(gross - fee)

    def test_adds_the_fixed_part_on_the_first_release(self) -> None:
        split = FeeSchedule(1000, fixed=usd(30)).split(usd(10_000), first_release=True)
        assert (split.fee, split.net, split.fixed) == (usd(1_030), usd(8_970), usd(30))

    def test_leaves_the_fixed_part_out_of_later_releases(self) -> None:
        split = FeeSchedule(1000, fixed=usd(30)).split(usd(10_000), first_release=False)
        assert (split.fee, split.net, split.fixed) == (usd(1_000), usd(9_000), usd(0))

    def test_a_zero_fixed_fee_is_no_fixed_fee(self) -> None:
        split = FeeSchedule(0, fixed=usd(0)).split(usd(100), first_release=True)
        assert (split.fee, split.fixed) == (usd(0), usd(0))

    @pytest.mark.parametrize(
        ("schedule", "gross"),
        [
            (FeeSchedule(0, fixed=usd(50)), usd(50)),
            (FeeSchedule(1000, fixed=usd(50)), usd(30)),
            (FeeSchedule(0), usd(0)),
            (FeeSchedule(0), usd(-100)),
        ],
        ids=["fixed-equals-gross", "fixed-exceeds-gross", "zero-gross", "negative-gross"],
    )
    def test_refuses_a_release_that_leaves_nothing_for_the_payee(
        self, schedule: FeeSchedule, gross: Money
    ) -> None:
        with pytest.raises(ValueError, match="leaves nothing for the payee"):
            schedule.split(gross, first_release=True)

    def test_a_one_cent_net_is_still_a_release(self) -> None:
        split = FeeSchedule(9999).split(usd(10_000), first_release=False)
        assert (split.fee, split.net) == (usd(9_999), usd(1))

    def test_the_fixed_fee_currency_must_match(self) -> None:
        with pytest.raises(ValueError, match="cannot combine"):
            FeeSchedule(1000, fixed=usd(30)).split(Money(10_000, "eur"), first_release=True)

    def test_a_fixed_fee_in_another_currency_does_not_matter_after_the_first_release(self) -> None:
        split = FeeSchedule(1000, fixed=usd(30)).split(Money(10_000, "eur"), first_release=False)
        assert split.fee == Money(1_000, "eur")

    def test_zero_decimal_currencies_round_to_whole_units(self) -> None:
        split = FeeSchedule(1250).split(Money(999, "jpy"), first_release=True)
        assert (split.fee, split.net) == (Money(124, "jpy"), Money(875, "jpy"))


class TestSplitProperties:
    @given(
        gross=st.integers(min_value=1, max_value=10**12),
        bps=st.integers(min_value=0, max_value=9999),
        fixed=st.none() | st.integers(min_value=0, max_value=10**6),
        first_release=st.booleans(),
    )
    def test_fee_and_net_add_up_to_gross(
        self, gross: int, bps: int, fixed: int | None, first_release: bool
    ) -> None:
        schedule = FeeSchedule(bps, None if fixed is None else usd(fixed))
        fixed_part = fixed if first_release and fixed else 0
        expected_fee = gross * bps // 10_000 + fixed_part
        assume(expected_fee < gross)  # otherwise refused, tested below
        split = schedule.split(usd(gross), first_release=first_release)
        assert split.fee.amount == expected_fee
        assert split.fee + split.net == split.gross == usd(gross)
        assert usd(0) <= split.fee <= usd(gross)
        assert split.net.is_positive
        assert split.fixed == usd(fixed_part)

    @given(
        gross=st.integers(min_value=1, max_value=10**12),
        bps=st.integers(min_value=0, max_value=9999),
        fixed=st.integers(min_value=0, max_value=10**6),
        first_release=st.booleans(),
    )
    def test_refused_exactly_when_the_net_would_not_be_positive(
        self, gross: int, bps: int, fixed: int, first_release: bool
    ) -> None:
        schedule = FeeSchedule(bps, usd(fixed))
        fee = gross * bps // 10_000 + (fixed if first_release else 0)
        if fee >= gross:
            with pytest.raises(ValueError, match="leaves nothing"):
                schedule.split(usd(gross), first_release=first_release)
        else:
            assert schedule.split(usd(gross), first_release=first_release).net == usd(gross - fee)

    @given(gross=st.integers(min_value=1, max_value=10**12), bps=st.integers(0, 9999))
    def test_the_percentage_fee_never_exceeds_the_exact_share(self, gross: int, bps: int) -> None:
        split = FeeSchedule(bps).split(usd(gross), first_release=False)
        assert split.fee.amount * 10_000 <= gross * bps < (split.fee.amount + 1) * 10_000
