"""Stripe's limits on metadata, checked before anything is written or sent.

Every id the library puts into a gateway object's metadata (escrow, operation, bounty, payee,
namespace) must fit, or Stripe refuses the request after step 1 committed and the escrow is
left cancelled or stuck. The service checks ids against these rules before writing; the
gateways (Stripe's adapter and the fake) refuse metadata that breaks them, from the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: "You can specify up to 50 keys, with key names up to 40 characters long and values up to
#: 500 characters long" (https://docs.stripe.com/api/metadata).
MAX_KEYS: Final = 50
MAX_KEY_LENGTH: Final = 40
MAX_VALUE_LENGTH: Final = 500


def value_problem(value: str, what: str) -> str | None:
    """Say why `value` cannot be a metadata value (None when it can)."""
    if len(value) > MAX_VALUE_LENGTH:
        return (
            f"{what} is {len(value)} characters long; it goes into Stripe metadata, whose values "
            f"may be at most {MAX_VALUE_LENGTH} characters"
        )
    return None


def problem(metadata: Mapping[str, str]) -> str | None:
    """Say why Stripe would refuse this metadata (None when it is acceptable)."""
    if len(metadata) > MAX_KEYS:
        return f"metadata has {len(metadata)} keys; Stripe allows at most {MAX_KEYS}"
    for key, value in metadata.items():
        if len(key) > MAX_KEY_LENGTH:
            return (
                f"metadata key {key[:50]!r} is {len(key)} characters long; Stripe allows at "
                f"most {MAX_KEY_LENGTH}"
            )
        if "[" in key or "]" in key:
            return f"metadata key {key[:50]!r} contains square brackets, which Stripe refuses"
        found = value_problem(value, f"metadata value of {key!r}")
        if found is not None:
            return found
    return None
