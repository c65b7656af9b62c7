"""Building the escrow service and its webhook dispatcher from the environment."""

from __future__ import annotations

import functools
import os

from bountyescrow import EscrowService
from bountyescrow.webhooks import WebhookDispatcher


@functools.cache
def dispatcher_from_env() -> WebhookDispatcher:
    """The production dispatcher (built once per process): SQL store and Stripe gateway."""
    from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    from bountyescrow.adapters.stripe import StripeGateway

    service = EscrowService(
        store=SqlAlchemyStore(os.environ["DATABASE_URL"]),
        gateway=StripeGateway(api_key=os.environ["STRIPE_API_KEY"]),
        namespace=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
    )
    secrets = [s.strip() for s in os.environ["STRIPE_WEBHOOK_SECRETS"].split(",") if s.strip()]
    return WebhookDispatcher(service, secrets=secrets)
