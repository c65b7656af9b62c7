"""The Stripe payment gateway: `StripeGateway` implements `PaymentGateway` on Stripe's API.

Separate charges and transfers on the platform account (DESIGN §2): PaymentIntents fund
escrows, Transfers pay hunters' connected accounts, Refunds and transfer reversals bring money
back. Needs the ``stripe`` extra: ``pip install 'bountyescrow[stripe]'``.
"""

from __future__ import annotations

_INSTALL_HINT = "pip install 'bountyescrow[stripe]'"
_MIN_STRIPE_MAJOR = 13  # first release with `StripeClient.v1` and the `stripe.params` types

try:
    import httpx  # noqa: F401  (the SDK's HTTPXClient imports it lazily; fail here instead)
    import stripe
except ImportError as exc:
    raise ImportError(
        f"bountyescrow.adapters.stripe needs the Stripe SDK and httpx: {_INSTALL_HINT}"
    ) from exc


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


if _major(stripe.VERSION) < _MIN_STRIPE_MAJOR:
    raise ImportError(
        f"bountyescrow.adapters.stripe needs stripe>={_MIN_STRIPE_MAJOR} "
        f"(found {stripe.VERSION}): {_INSTALL_HINT} --upgrade"
    )

from bountyescrow.adapters.stripe._gateway import StripeGateway  # noqa: E402

__all__ = ["StripeGateway"]
