"""The platform fee taken out of each release."""

from __future__ import annotations

import attrs

from bountyescrow.domain.amount_rules import round_down, step
from bountyescrow.domain.money import Money


def _check_bps(instance: FeeSchedule, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"fee bps must be an int (1000 = 10 %), got {value!r}")
    if not 0 <= value < 10_000:
        raise ValueError(f"fee bps must be between 0 and 9999, got {value}")


def _check_fixed(
    instance: FeeSchedule, attribute: attrs.Attribute[Money | None], value: Money | None
) -> None:
    if value is not None and value.amount < 0:
        raise ValueError(f"fixed fee must not be negative, got {value}")
    if value is not None and value.amount % step(value.currency):
        raise ValueError(
            f"fixed fee {value} is not a multiple of {step(value.currency)} minor units; "
            f"Stripe moves {value.currency} only in steps of {step(value.currency)}"
        )


@attrs.frozen
class FeeSplit:
    """How one release's gross amount divides: `fee` to the platform, `net` to the payee."""

    gross: Money
    fee: Money
    net: Money
    #: The fixed part included in `fee` (zero unless this release carries the per-escrow fixed fee).
    fixed: Money


@attrs.frozen
class FeeSchedule:
    """The platform fee: `bps` basis points of each release, plus `fixed` once per escrow.

    The schedule is copied onto an escrow when it opens, so a later change of settings never
    alters an open escrow. The fee is floor(gross * bps / 10 000) (rounding favours the payee),
    rounded down to what Stripe moves in the currency (a multiple of 10 minor units for
    three-decimal currencies such as KWD), plus the fixed part on the escrow's first release.
    So the payee's net is a multiple of 10 whenever the gross is.
    """

    bps: int = attrs.field(validator=_check_bps)
    fixed: Money | None = attrs.field(default=None, validator=_check_fixed)

    def split(self, gross: Money, *, first_release: bool) -> FeeSplit:
        """Divide a release's gross amount into fee and net.

        Raises:
            ValueError: the net would be zero or less, or the fixed fee's currency differs.
        """
        fixed = Money.zero(gross.currency)
        if first_release and self.fixed is not None and self.fixed.amount:
            fixed = fixed + self.fixed  # raises on a currency mismatch
        share = round_down(gross.amount * self.bps // 10_000, gross.currency)
        fee = Money(share, gross.currency) + fixed
        net = gross - fee
        if net.amount <= 0:
            raise ValueError(
                f"a release of {gross} leaves nothing for the payee after the {fee} fee"
            )
        return FeeSplit(gross=gross, fee=fee, net=net, fixed=fixed)
