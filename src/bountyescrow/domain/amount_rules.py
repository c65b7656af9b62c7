"""Stripe's rules for amounts, checked before anything is written or sent.

The service refuses an amount that breaks them before step 1 of a command, so nothing is
stored; the gateways check them again before each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from bountyescrow.domain.money import THREE_DECIMAL, Money

#: Stripe's minimum charge amount per currency, in minor units, from "Minimum and maximum charge
#: amounts" (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts). Currencies
#: Stripe lists only as "the equivalent of $0.50" are absent: Stripe checks those itself.
MINIMUM_CHARGE: Final[Mapping[str, int]] = MappingProxyType(
    {
        "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50,
        "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50,
        "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200,
        "sek": 300, "sgd": 50, "thb": 1000,
    }
)  # fmt: skip
#: "The amount value supports up to eight digits" (same page).
MAX_AMOUNT: Final = 99_999_999


def step(currency: str) -> int:
    """The smallest amount, in minor units, that Stripe moves in `currency`.

    Three-decimal currencies (KWD, BHD, JOD, OMR, TND) move in steps of 10 minor units;
    every other currency in steps of 1.
    """
    return 10 if currency in THREE_DECIMAL else 1


def round_down(amount: int, currency: str) -> int:
    """`amount` minor units rounded down (towards minus infinity) to a multiple of `step`."""
    unit = step(currency)
    return amount // unit * unit


def problem(amount: Money, *, charge: bool = False) -> tuple[str, str | None] | None:
    """Say what is wrong with an amount Stripe would refuse, as (message, Stripe code).

    Every amount must be positive and have at most eight digits; three-decimal currencies
    (KWD, BHD...) must end in 0. With `charge=True` the currency's minimum charge applies.
    Returns None when the amount is acceptable.
    """
    if amount.amount <= 0:
        return f"amount must be positive, got {amount}", "amount_too_small"
    if amount.amount > MAX_AMOUNT:
        return (
            f"{amount} has more than eight digits in minor units ({amount.amount}); Stripe "
            f"accepts at most {MAX_AMOUNT}. Split it into smaller amounts.",
            "amount_too_large",
        )
    if amount.currency in THREE_DECIMAL and amount.amount % 10:
        return (
            f"{amount} is not a multiple of 10 minor units; Stripe requires "
            f"{amount.currency} amounts to end in 0. Round to the nearest ten.",
            None,
        )
    minimum = MINIMUM_CHARGE.get(amount.currency)
    if charge and minimum is not None and amount.amount < minimum:
        floor = Money(minimum, amount.currency)
        return (
            f"{amount} is below Stripe's minimum charge of {floor} in {amount.currency}; "
            f"ask for at least {floor}.",
            "amount_too_small",
        )
    return None
