"""Checks of host input, made before anything is written (DESIGN §14)."""

from __future__ import annotations

from bountyescrow.domain import amount_rules, metadata_rules
from bountyescrow.domain.money import Money
from bountyescrow.errors import ValidationError
from bountyescrow.ports.policy import Actor
from bountyescrow.service._settings import EscrowSettings


def money(
    amount: object,
    what: str,
    settings: EscrowSettings,
    *,
    optional: bool = False,
    charge: bool = False,
) -> Money | None:
    """Check a host-supplied amount against the settings and the currency's rules.

    The currency must be one the platform settles in; the amount at most `max_amount` and
    acceptable to Stripe (`amount_rules.problem`: the currency's row of
    `bountyescrow.domain.currencies`). `charge` adds the currency's minimum charge.
    """
    if amount is None and optional:
        return None
    if not isinstance(amount, Money):
        raise ValidationError(
            f"{what} must be Money (integer minor units and a currency, e.g. "
            f"Money(2500, 'usd')), got {type(amount).__name__} {amount!r}"
        )
    if amount.currency not in settings.settlement_currencies:
        raise ValidationError(
            f"{what} is in {amount.currency!r}, which this platform does not settle in "
            f"(settlement currencies: {sorted(settings.settlement_currencies)})"
        )
    if amount.amount > settings.max_amount:
        raise ValidationError(
            f"{what} {amount} is above the limit of {settings.max_amount} minor units"
        )
    problem = amount_rules.problem(amount, charge=charge)
    if problem is not None:
        raise ValidationError(f"{what}: {problem[0]}")
    return amount


def text(value: object, what: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    return value


def metadata_id(value: object, what: str) -> str:
    """An id that goes into gateway metadata: non-empty, and within Stripe's limits."""
    found = text(value, what)
    problem = metadata_rules.value_problem(found, what)
    if problem is not None:
        raise ValidationError(f"{problem}; use a shorter id")
    return found


def required_key(key: object, action: str) -> str:
    """Money-moving calls need an idempotency key (DESIGN §11).

    Without one, a double click or a retried request would move the money twice.
    """
    if not isinstance(key, str) or not key.strip():
        raise ValidationError(
            f"{action} moves money and needs an idempotency_key: pass one that names the "
            "host's request (e.g. the Idempotency-Key header, or 'release:<bounty>:<claim>'),"
            f" and reuse it when retrying that request; got {key!r}"
        )
    return key


def actor_of(actor: object) -> Actor:
    """The acting `Actor`."""
    if not isinstance(actor, Actor):
        raise ValidationError(f"actor must be an Actor, got {actor!r}")
    return actor
