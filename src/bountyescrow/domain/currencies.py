"""The currencies the library knows, and Stripe's rules for each: one table, one place.

`Money` takes its known codes and its formatting from here, `amount_rules` its steps, minimums
and caps, the service and the gateways their refusals (through `amount_rules.problem`). Each
rule is Stripe's, from "Supported currencies" (https://docs.stripe.com/currencies), except the
cap on amounts, which is the library's own choice: see `MAX_AMOUNT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import lcm
from types import MappingProxyType
from typing import Final

import attrs

#: The largest amount, in minor units, the library sends in any currency: eight digits. This is
#: the library's choice, not one Stripe rule. Stripe's limits depend on the payment method
#: (cards: twelve digits, American Express nine; other methods per currency), and `open_escrow`
#: does not know which method the poster will use, so the library keeps one cap, below the card
#: limits, in every currency; a method with a lower limit is refused by Stripe itself. Lower
#: it per service with `EscrowSettings.max_amount`. In ISK and UGX (two decimals, always 00)
#: eight digits are 999,999 units.
MAX_AMOUNT: Final = 99_999_999


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class CurrencyRules:
    """Stripe's rules for one currency. Amounts are in minor units as Stripe represents them.

    Attributes:
        code: the lower-case ISO 4217 code.
        symbol: what is written before the number for people (``$``, ``CHF ``).
        exponent: decimal places of Stripe's minor unit: 0 (JPY), 2 (USD, and ISK and UGX,
            which Stripe represents with two decimals that are always ``00``), 3 (KWD).
        charge_step: charge and refund amounts must be multiples of it (10 for three-decimal
            currencies, 100 for ISK and UGX, 1 elsewhere).
        transfer_step: transfer and reversal amounts must be multiples of it.
        payout_step: payout amounts must be multiples of it (100 for HUF and TWD, which Stripe
            pays out in whole units though it charges two decimals).
        minimum_charge: Stripe's smallest charge, or None where Stripe lists the currency only
            as "the equivalent of $0.50" and checks it itself.

    No currency has its own cap: the library sends at most `MAX_AMOUNT` in every currency.
    """

    code: str
    symbol: str
    exponent: int = 2
    charge_step: int = attrs.field(default=1, validator=_positive)
    transfer_step: int = attrs.field(default=1, validator=_positive)
    payout_step: int = attrs.field(default=1, validator=_positive)
    minimum_charge: int | None = None

    @property
    def step(self) -> int:
        """The step of every amount the library moves: charges, refunds, transfers, reversals."""
        return lcm(self.charge_step, self.transfer_step)

    @property
    def whole_units(self) -> bool:
        """True when Stripe's amounts carry decimals the currency never uses (ISK, UGX)."""
        return self.exponent > 0 and self.charge_step == 10**self.exponent


def _zero(code: str, symbol: str | None = None) -> CurrencyRules:
    return CurrencyRules(code, symbol or f"{code.upper()} ", exponent=0)


def _three(code: str) -> CurrencyRules:
    # "To be compatible with Stripe's card processing, the last digit must be 0."
    return CurrencyRules(
        code, f"{code.upper()} ", exponent=3, charge_step=10, transfer_step=10, payout_step=10
    )


def _two(code: str, symbol: str | None = None, minimum: int | None = None) -> CurrencyRules:
    return CurrencyRules(code, symbol or f"{code.upper()} ", minimum_charge=minimum)


_TABLE: Final = (
    # Two decimals. Minimums from "Minimum and maximum charge amounts".
    _two("usd", "$", 50),
    _two("aed", None, 200),
    _two("aud", "A$", 50),
    _two("brl", "R$", 50),
    _two("cad", "CA$", 50),
    _two("chf", None, 50),
    _two("cny", "CN¥"),
    _two("czk", None, 1500),
    _two("dkk", None, 250),
    _two("eur", "€", 50),
    _two("gbp", "£", 30),
    _two("hkd", "HK$", 400),
    _two("idr"),
    _two("ils", "₪"),
    _two("inr", "₹", 50),
    _two("mxn", "MX$", 1000),
    _two("myr", None, 200),
    _two("nok", None, 300),
    _two("nzd", "NZ$", 50),
    _two("php", "₱"),
    _two("pln", None, 200),
    _two("ron", None, 200),
    _two("sar"),
    _two("sek", None, 300),
    _two("sgd", None, 50),
    _two("thb", None, 1000),
    _two("try"),
    _two("zar"),
    # HUF and TWD: two decimals for charges, whole units for payouts.
    CurrencyRules("huf", "HUF ", minimum_charge=17500, payout_step=100),
    CurrencyRules("twd", "NT$", payout_step=100),
    # ISK and UGX: zero-decimal currencies Stripe still represents with two decimals, always 00.
    CurrencyRules("isk", "ISK ", charge_step=100, transfer_step=100, payout_step=100),
    CurrencyRules("ugx", "UGX ", charge_step=100, transfer_step=100, payout_step=100),
    # Zero decimals.
    _zero("bif"),
    _zero("clp"),
    _zero("djf"),
    _zero("gnf"),
    CurrencyRules("jpy", "¥", exponent=0, minimum_charge=50),
    _zero("kmf"),
    _zero("krw", "₩"),
    _zero("mga"),
    _zero("pyg"),
    _zero("rwf"),
    _zero("vnd", "₫"),
    _zero("vuv"),
    _zero("xaf"),
    _zero("xof"),
    _zero("xpf"),
    # Three decimals.
    _three("bhd"),
    _three("jod"),
    _three("kwd"),
    _three("omr"),
    _three("tnd"),
)

#: Every currency the library knows, by lower-case code.
CURRENCIES: Final[Mapping[str, CurrencyRules]] = MappingProxyType({c.code: c for c in _TABLE})

#: Codes that are no longer in use, and what replaced them. They are refused like unknown ones,
#: with a hint.
OBSOLETE: Final[Mapping[str, str]] = MappingProxyType(
    {"bgn": "eur (Bulgaria adopted the euro on 1 January 2026)"}
)


def rules(currency: str) -> CurrencyRules:
    """Return the rules of `currency`, a lower-case ISO 4217 code.

    Raises:
        ValueError: the code is unknown, obsolete (BGN) or not lower case.
    """
    found = CURRENCIES.get(currency) if isinstance(currency, str) else None
    if found is None:
        raise ValueError(unknown_message(currency))
    return found


def unknown_message(currency: object) -> str:
    """Say why `currency` is refused, and what to use instead."""
    message = f"unknown currency {currency!r}: use a lower-case ISO 4217 code such as 'usd'"
    hint = replacement_hint(currency)
    return message if hint is None else f"{message}; {hint}"


def replacement_hint(currency: object) -> str | None:
    """For an obsolete code (BGN), say what replaced it; None for any other value."""
    code = currency.lower() if isinstance(currency, str) else None
    if code is None or code not in OBSOLETE:
        return None
    return f"{code} is no longer in use, use {OBSOLETE[code]}"
