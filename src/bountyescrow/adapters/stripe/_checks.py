"""Rules Stripe applies to a request, checked before the request is sent.

Stripe would refuse these requests anyway. Refusing them here raises `RequestRefusedError`,
which says what to change, and nothing reaches Stripe (no request, no idempotency key used up).
The amount and metadata rules are the port's (`bountyescrow.ports.gateway`), shared with
`FakeGateway`; the rest are Stripe's own.
"""

from __future__ import annotations

import re
from typing import Final

from bountyescrow.ports.gateway import RequestRefusedError, check_amount, check_metadata

__all__ = [
    "RequestRefusedError",
    "check_amount",
    "check_idempotency_key",
    "check_metadata",
    "check_ref",
    "check_refund_reason",
    "check_text",
    "normalize_country",
]

MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
REFUND_REASONS: Final = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


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
