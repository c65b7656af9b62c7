"""Stripe's rules for amounts, checked before anything is written or sent.

The rules come from one table, `bountyescrow.domain.currencies`. The service refuses an amount
that breaks them before step 1 of a command, so nothing is stored; the gateways check them
again before each request (`bountyescrow.ports.gateway.check_amount`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from bountyescrow.domain.currencies import CURRENCIES, MAX_AMOUNT, rules
from bountyescrow.domain.money import Money

__all__ = ["MAX_AMOUNT", "MINIMUM_CHARGE", "problem", "round_down", "step"]

#: Stripe's minimum charge amount per currency, in minor units, from "Minimum and maximum charge
#: amounts" (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts). Currencies
#: Stripe lists only as "the equivalent of $0.50" are absent: Stripe checks those itself.
#: A view of `CurrencyRules.minimum_charge`.
MINIMUM_CHARGE: Final[Mapping[str, int]] = MappingProxyType(
    {c.code: c.minimum_charge for c in CURRENCIES.values() if c.minimum_charge is not None}
)


def step(currency: str) -> int:
    """The smallest amount, in minor units, that Stripe moves in `currency`.

    Three-decimal currencies (KWD, BHD, JOD, OMR, TND) move in steps of 10 minor units, ISK and
    UGX (two decimals always 00) in steps of 100, every other currency in steps of 1. Payouts
    may need more (`CurrencyRules.payout_step`: HUF and TWD pay out whole units).

    Raises:
        ValueError: the currency is unknown.
    """
    return rules(currency).step


def round_down(amount: int, currency: str) -> int:
    """`amount` minor units rounded down (towards minus infinity) to a multiple of `step`."""
    unit = step(currency)
    return amount // unit * unit


def _step_problem(amount: Money, unit: int, what: str) -> str:
    code = amount.currency
    if unit == 10 ** rules(code).exponent:
        why = f"Stripe takes {code} {what} only in whole {code.upper()} (minor units ending in 00)"
    else:  # 10, in the three-decimal currencies
        why = f"Stripe requires {code} {what} to end in 0"
    return (
        f"{amount} is not a multiple of {unit} minor units; {why}. Round to a multiple of {unit}."
    )


def problem(
    amount: Money, *, charge: bool = False, payout: bool = False
) -> tuple[str, str | None] | None:
    """Say what is wrong with an amount Stripe would refuse, as (message, Stripe code).

    Every amount must be positive, at most eight digits (`MAX_AMOUNT`, the library's cap), and
    a multiple of the currency's step (`step`: 10 in KWD, BHD..., 100 in ISK and UGX). With
    `charge=True` the currency's minimum charge applies; with `payout=True` its payout step
    (100 in HUF and TWD). Returns None when the amount is acceptable.
    """
    currency = rules(amount.currency)
    if amount.amount <= 0:
        return f"amount must be positive, got {amount}", "amount_too_small"
    if amount.amount > MAX_AMOUNT:
        return (
            f"{amount} has more than eight digits in minor units ({amount.amount}); the library "
            f"sends at most {MAX_AMOUNT} (its own cap: Stripe's depends on the payment method). "
            f"Split it into smaller amounts.",
            "amount_too_large",
        )
    if amount.amount % currency.step:
        return _step_problem(amount, currency.step, "amounts"), None
    if payout and amount.amount % currency.payout_step:
        return _step_problem(amount, currency.payout_step, "payouts"), None
    minimum = currency.minimum_charge
    if charge and minimum is not None and amount.amount < minimum:
        floor = Money(minimum, amount.currency)
        return (
            f"{amount} is below Stripe's minimum charge of {floor} in {amount.currency}; "
            f"ask for at least {floor}.",
            "amount_too_small",
        )
    return None
