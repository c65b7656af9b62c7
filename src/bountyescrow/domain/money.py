"""Amounts of money: integer minor units and a lower-case ISO 4217 currency code.

`Money` refuses floats on purpose: a payment amount that went through a binary float has
already been rounded once, and nobody can tell by how much.
"""

from __future__ import annotations

from typing import Final

import attrs

from bountyescrow.domain.currencies import CURRENCIES, rules, unknown_message

#: Currencies whose minor unit is the major unit (Stripe: "zero-decimal"). UGX is not among
#: them: Stripe represents it with two decimals that are always 00 (see `currencies`).
ZERO_DECIMAL: Final = frozenset(c.code for c in CURRENCIES.values() if c.exponent == 0)
#: Currencies with three decimals. Stripe requires their amounts to be multiples of 10.
THREE_DECIMAL: Final = frozenset(c.code for c in CURRENCIES.values() if c.exponent == 3)
#: Every currency `Money` accepts: the codes of `bountyescrow.domain.currencies.CURRENCIES`.
KNOWN_CURRENCIES: Final = frozenset(CURRENCIES)


def decimals(currency: str) -> int:
    """Return how many decimal places Stripe's minor unit of `currency` has (0, 2 or 3).

    ISK and UGX have 2: Stripe represents them with two decimals that are always 00.

    Raises:
        ValueError: the currency is unknown.
    """
    return rules(currency).exponent


def _check_amount(instance: Money, attribute: attrs.Attribute[int], value: object) -> None:
    # bool is an int subclass; True dollars is a bug, not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"Money amount must be an int of minor units (e.g. 2500 for $25.00), "
            f"got {type(value).__name__} {value!r}"
        )


def _check_currency(instance: Money, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or value not in CURRENCIES:
        raise ValueError(unknown_message(value))


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
        """Format for people: ``$250.00``, ``¥500``, ``KWD 1.250``, ``-€3.10``, ``ISK 500``.

        ISK and UGX, which Stripe represents with two decimals that are always 00, show whole
        units; an amount that is not whole (which Stripe would refuse) shows its decimals.
        """
        currency = rules(self.currency)
        places = currency.exponent
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**places)
        whole = places == 0 or (currency.whole_units and minor == 0)
        number = f"{units:,}" if whole else f"{units:,}.{minor:0{places}d}"
        return f"{sign}{currency.symbol}{number}"

    def __str__(self) -> str:
        return self.format()
