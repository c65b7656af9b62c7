"""Rules Stripe applies to a request, checked before the request is sent.

Stripe would refuse these requests anyway. Refusing them here raises `RequestRefusedError`,
which says what to change, and nothing reaches Stripe (no request, no idempotency key used up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from bountyescrow.domain import amount_rules
from bountyescrow.domain.money import Money
from bountyescrow.errors import GatewayRejectedError, ValidationError

MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
REFUND_REASONS: Final = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
# Stripe's metadata limits: 50 keys, keys up to 40 characters without square brackets,
# values up to 500 characters.
_MAX_METADATA_KEYS: Final = 50
_MAX_METADATA_KEY_LENGTH: Final = 40
_MAX_METADATA_VALUE_LENGTH: Final = 500
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


class RequestRefusedError(ValidationError, GatewayRejectedError):
    """A request Stripe would refuse, refused before anything was sent.

    It is a `ValidationError` (the input is wrong; say so to whoever supplied it) and a
    `GatewayRejectedError`, the port's definitive refusal: a service that stored the request
    before sending it fails the operation instead of retrying a request that cannot succeed.
    `code` is the code Stripe would have answered with, where Stripe has one.
    """


def check_amount(action: str, amount: Money, *, charge: bool = False) -> None:
    """Refuse an amount Stripe would refuse (see `bountyescrow.domain.amount_rules`).

    Raises:
        RequestRefusedError: the amount breaks one of Stripe's rules.
    """
    problem = amount_rules.problem(amount, charge=charge)
    if problem is not None:
        message, code = problem
        raise RequestRefusedError(f"{action}: {message}", code=code)


def check_idempotency_key(action: str, key: str) -> None:
    """Refuse an empty idempotency key or one longer than Stripe's 255 characters."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise RequestRefusedError(
            f"{action}: the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} "
            f"characters, got {len(key)}"
        )


def check_ref(action: str, name: str, value: str) -> None:
    """Refuse an empty or malformed Stripe object id (an empty id would change the URL)."""
    if not value or value.strip() != value or "/" in value:
        raise RequestRefusedError(f"{action}: {name} {value!r} is not a Stripe object id")


def check_text(action: str, name: str, value: str, *, max_length: int = 500) -> None:
    """Refuse an empty string (Stripe reads it as "unset") or one longer than `max_length`."""
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise RequestRefusedError(
            f"{action}: {name} must be a non-empty string of at most {max_length} characters, "
            f"got {value!r}"
        )


def check_metadata(action: str, metadata: Mapping[str, str]) -> None:
    """Refuse metadata Stripe would refuse (too many keys, long keys or values, brackets)."""
    if len(metadata) > _MAX_METADATA_KEYS:
        raise RequestRefusedError(
            f"{action}: {len(metadata)} metadata keys; Stripe allows {_MAX_METADATA_KEYS}"
        )
    for key, value in metadata.items():
        if not key or len(key) > _MAX_METADATA_KEY_LENGTH or "[" in key or "]" in key:
            raise RequestRefusedError(
                f"{action}: metadata key {key!r} must be 1 to {_MAX_METADATA_KEY_LENGTH} "
                f"characters without square brackets"
            )
        if not isinstance(value, str) or len(value) > _MAX_METADATA_VALUE_LENGTH:
            raise RequestRefusedError(
                f"{action}: metadata value for {key!r} must be a string of at most "
                f"{_MAX_METADATA_VALUE_LENGTH} characters"
            )


def check_refund_reason(action: str, reason: str | None) -> None:
    """Refuse a refund reason other than Stripe's three."""
    if reason is not None and reason not in REFUND_REASONS:
        raise RequestRefusedError(
            f"{action}: refund reason {reason!r} is not one of Stripe's "
            f"{sorted(REFUND_REASONS)}; leave it unset for other reasons"
        )


def normalize_country(value: str) -> str:
    """Return a two-letter ISO country code in upper case, or raise `RequestRefusedError`."""
    if not isinstance(value, str) or not _COUNTRY.match(value):
        raise RequestRefusedError(
            f"country must be a two-letter ISO code such as 'US', got {value!r}"
        )
    return value.upper()
