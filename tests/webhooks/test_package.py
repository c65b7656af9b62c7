"""The public names of `bountyescrow.webhooks`, and its import without the Stripe SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bountyescrow.webhooks
from bountyescrow.webhooks import followed

EXPECTED = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE",
    "AsgiWebhookApp",
    "BackfillReport",
    "Failure",
    "WebhookDispatcher",
    "WebhookResponse",
    "WsgiWebhookApp",
    "asgi_app",
    "backfill_events",
    "followed",
    "replay_event",
    "wsgi_app",
]

#: Every event type docs/webhooks.md promises to apply.
FOLLOWED = [
    "payment_intent.succeeded",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.created",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "payment_intent.partially_funded",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "radar.early_fraud_warning.created",
    "transfer.created",
    "transfer.updated",
    "transfer.reversed",
    "account.updated",
    "capability.updated",
    "account.application.deauthorized",
    "payout.paid",
    "payout.failed",
]


def test_lists_exactly_the_expected_names() -> None:
    assert sorted(bountyescrow.webhooks.__all__) == sorted(EXPECTED)
    for name in EXPECTED:
        assert getattr(bountyescrow.webhooks, name) is not None


@pytest.mark.parametrize("event_type", FOLLOWED)
def test_followed_event_types(event_type: str) -> None:
    assert followed(event_type)


@pytest.mark.parametrize(
    "event_type",
    ["customer.created", "charge.succeeded", "radar.early_fraud_warning.updated", "payout.created"],
)
def test_other_event_types_are_not_followed(event_type: str) -> None:
    assert not followed(event_type)


def test_without_the_stripe_sdk_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['stripe'] = None\n"
        "try:\n"
        "    import bountyescrow.webhooks\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without stripe')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'bountyescrow[stripe]'" in done.stdout
