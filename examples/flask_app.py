"""Stripe webhooks in a Flask (3.1+) app: a view that passes the raw body to the dispatcher.

    DATABASE_URL=postgresql+psycopg://app@db/app STRIPE_API_KEY=sk_test_... \\
    STRIPE_WEBHOOK_SECRETS=whsec_platform,whsec_connect \\
        flask --app 'flask_app:app_from_env()' run

The view reads ``request.get_data()``: the bytes exactly as Stripe sent them, which is what
the signature covers. ``request.json`` (or ``get_json()``) parses them, and re-serialising
the result gives other bytes (spacing, key order, escapes): the signature no longer matches and
every event is refused with 400.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request

from bountyescrow import EscrowService
from bountyescrow.webhooks import WebhookDispatcher

#: Where Stripe posts: the platform endpoint and the Connect endpoint (see docs/stripe.md).
WEBHOOK_PATHS = ("/stripe/webhooks", "/stripe/connect-webhooks")


def create_app(dispatcher: WebhookDispatcher) -> Flask:
    """The host's Flask app with the webhook endpoints."""
    app = Flask(__name__)

    def stripe_webhook() -> Response:
        # Per-view cap (Flask 3.1+): a larger body is refused with 413 before it is read.
        request.max_content_length = dispatcher.max_body_bytes
        answer = dispatcher.handle(request.get_data(), request.headers)
        return Response(answer.body, status=answer.status, headers=answer.headers)

    for number, path in enumerate(WEBHOOK_PATHS):
        app.add_url_rule(
            path, endpoint=f"stripe_webhook_{number}", view_func=stripe_webhook, methods=["POST"]
        )
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


def app_from_env() -> Flask:
    """The app factory for ``flask --app``."""
    return create_app(dispatcher_from_env())
