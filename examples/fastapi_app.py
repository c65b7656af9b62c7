"""Stripe webhooks in a FastAPI app: `asgi_app` mounted as a route.

    DATABASE_URL=postgresql+psycopg://app@db/app STRIPE_API_KEY=sk_test_... \\
    STRIPE_WEBHOOK_SECRETS=whsec_platform,whsec_connect \\
        uvicorn --factory fastapi_app:app_from_env

The mounted ASGI app reads the **raw** body (capped), verifies the signature over those exact
bytes and runs the dispatcher in a worker thread. The same URL may serve the platform and the
Connect endpoint: list both signing secrets. If you write your own route instead, read the body
with ``await request.body()`` and pass it unchanged; a parameter such as ``payload: dict``
makes FastAPI parse the JSON, and the bytes Stripe signed are gone.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.routing import Route

from bountyescrow import EscrowService
from bountyescrow.webhooks import WebhookDispatcher, asgi_app

#: Where Stripe posts: the platform endpoint and the Connect endpoint (see docs/stripe.md).
WEBHOOK_PATHS = ("/stripe/webhooks", "/stripe/connect-webhooks")


def create_app(dispatcher: WebhookDispatcher) -> FastAPI:
    """The host's FastAPI app with the webhook endpoints mounted."""
    app = FastAPI()
    endpoint = asgi_app(dispatcher)
    for path in WEBHOOK_PATHS:
        # An ASGI app (not a function) as a route's endpoint gets the raw request; `methods`
        # makes the router answer 405 to anything but POST. Not `app.mount`: a mount answers
        # a POST to "/stripe/webhooks" with a redirect to ".../", which Stripe does not follow.
        app.router.routes.append(Route(path, endpoint, methods=["POST"], include_in_schema=False))
    return app


def dispatcher_from_env() -> WebhookDispatcher:
    """The production dispatcher: PostgreSQL (or SQLite) and Stripe, from the environment."""
    from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    from bountyescrow.adapters.stripe import StripeGateway

    service = EscrowService(
        store=SqlAlchemyStore(os.environ["DATABASE_URL"]),
        gateway=StripeGateway(api_key=os.environ["STRIPE_API_KEY"]),
        namespace=os.environ.get("BOUNTYESCROW_NAMESPACE", "default"),
    )
    secrets = [s.strip() for s in os.environ["STRIPE_WEBHOOK_SECRETS"].split(",") if s.strip()]
    return WebhookDispatcher(service, secrets=secrets)


def app_from_env() -> FastAPI:
    """The app factory for ``uvicorn --factory``."""
    return create_app(dispatcher_from_env())
