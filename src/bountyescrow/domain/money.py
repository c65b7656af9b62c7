"""Amounts of money: integer minor units and a lower-case ISO 4217 currency code.

`Money` refuses floats on purpose: a payment amount that went through a binary float has
already been rounded once, and nobody can tell by how much.
"""

from __future__ import annotations

from typing import Final

import attrs

#: Currencies whose minor unit is the major unit (Stripe: "zero-decimal").
ZERO_DECIMAL: Final = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
#: Currencies with three decimals. Stripe requires their amounts to be multiples of 10.
THREE_DECIMAL: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# Currencies Stripe can settle or present, with a symbol where a person expects one.
_SYMBOLS: Final[dict[str, str]] = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "cny": "CN¥",
    "inr": "₹",
    "krw": "₩",
    "cad": "CA$",
    "aud": "A$",
    "nzd": "NZ$",
    "chf": "CHF ",
    "sek": "SEK ",
    "nok": "NOK ",
    "dkk": "DKK ",
    "pln": "PLN ",
    "czk": "CZK ",
    "huf": "HUF ",
    "ron": "RON ",
    "bgn": "BGN ",
    "mxn": "MX$",
    "brl": "R$",
    "sgd": "SGD ",
    "hkd": "HK$",
    "ils": "₪",
    "thb": "THB ",
    "myr": "MYR ",
    "php": "₱",
    "idr": "IDR ",
    "vnd": "₫",
    "try": "TRY ",
    "zar": "ZAR ",
    "aed": "AED ",
    "sar": "SAR ",
    "clp": "CLP ",
    "bhd": "BHD ",
    "jod": "JOD ",
    "kwd": "KWD ",
    "omr": "OMR ",
    "tnd": "TND ",
}
KNOWN_CURRENCIES: Final = frozenset(_SYMBOLS) | ZERO_DECIMAL | THREE_DECIMAL


def decimals(currency: str) -> int:
    """Return how many decimal places the currency's minor unit has (0, 2 or 3)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def _check_amount(instance: Money, attribute: attrs.Attribute[int], value: object) -> None:
    # bool is an int subclass; True dollars is a bug, not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"Money amount must be an int of minor units (e.g. 2500 for $25.00), "
            f"got {type(value).__name__} {value!r}"
        )


def _check_currency(instance: Money, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or value != value.lower() or value not in KNOWN_CURRENCIES:
        raise ValueError(
            f"unknown currency {value!r}: use a lower-case ISO 4217 code such as 'usd'"
        )


@attrs.frozen(order=False)
class Money:
    """An integer amount in a currency's minor unit (cents for `usd`, yen for `jpy`).

    Arithmetic and comparison only work between amounts of one currency; mixing raises
    `ValueError`. Amounts may be negative (ledger balances); commands refuse them.
    """

    amount: int = attrs.field(validator=_check_amount)
    currency: str = attrs.field(validator=_check_currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Return nothing, in `currency`."""
        return cls(0, currency)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(
                f"cannot combine {self.currency} and {other.currency}: convert explicitly first"
            )
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._same(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._same(other).amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._same(other).amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._same(other).amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._same(other).amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._same(other).amount

    def __bool__(self) -> bool:
        return self.amount != 0

    @property
    def is_positive(self) -> bool:
        """True when the amount is above zero."""
        return self.amount > 0

    def min(self, other: Money) -> Money:
        """Return the smaller of two amounts of the same currency."""
        return self if self <= other else other

    def format(self) -> str:
        """Format for people: ``$250.00``, ``¥500``, ``KWD 1.250``, ``-€3.10``."""
        places = decimals(self.currency)
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**places)
        number = f"{units:,}" if places == 0 else f"{units:,}.{minor:0{places}d}"
        symbol = _SYMBOLS.get(self.currency, self.currency.upper() + " ")
        return f"{sign}{symbol}{number}"

    def __str__(self) -> str:
        return self.format()
