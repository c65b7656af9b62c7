"""Stripe objects this deployment never made, as Stripe's webhook bodies carry them.

Each builder models one Stripe resource with the fields Stripe's own example objects have
(the ``fixtures3.json`` of the ``stripe/openapi`` repository), ids in Stripe's shape. They
stand for what reaches a shared endpoint from elsewhere: another project or deployment on the
same Stripe account, or a connected account the platform never created. Keyword arguments
replace fields (``metadata=``, ``payment_intent=``...).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

#: A connected account, a charge and a PaymentIntent that are not ours.
FOREIGN_ACCOUNT = "acct_1PgafTB7WZ01zgkW"
FOREIGN_CHARGE = "ch_1PgafuB7WZ01zgkWXYmPNZs8"
FOREIGN_PAYMENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"
FOREIGN_TRANSFER = "tr_1Pgc7BB7WZ01zgkWVJfE40RX"


def payment_intent(**changes: Any) -> JSON:
    """A PaymentIntent (``object: payment_intent``) that succeeded."""
    return {
        "id": FOREIGN_PAYMENT,
        "object": "payment_intent",
        "amount": 1099,
        "amount_capturable": 0,
        "amount_received": 1099,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{FOREIGN_PAYMENT}_secret_Dm43xiq1k0ywrRRjDoi8y1gkM",
        "confirmation_method": "automatic",
        "created": 1_721_948_530,
        "currency": "usd",
        "customer": None,
        "description": None,
        "last_payment_error": None,
        "latest_charge": FOREIGN_CHARGE,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": "pm_1PgafwB7WZ01zgkWbbDDfRYb",
        "payment_method_types": ["card"],
        "receipt_email": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
        **changes,
    }


def refund(**changes: Any) -> JSON:
    """A Refund (``object: refund``) of a charge."""
    return {
        "id": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
        "object": "refund",
        "amount": 100,
        "balance_transaction": "txn_1Pgc72B7WZ01zgkWx7nV0eQN",
        "charge": FOREIGN_CHARGE,
        "created": 1_721_948_600,
        "currency": "usd",
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": FOREIGN_PAYMENT,
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
        **changes,
    }


def charge(**changes: Any) -> JSON:
    """A Charge (``object: charge``) with its refunds listed, as ``charge.refunded`` has it
    when the endpoint's API version predates 2022-11-15."""
    listed = refund()
    return {
        "id": FOREIGN_CHARGE,
        "object": "charge",
        "amount": 1099,
        "amount_captured": 1099,
        "amount_refunded": listed["amount"],
        "balance_transaction": "txn_1PgafuB7WZ01zgkWq1S5n2bV",
        "captured": True,
        "created": 1_721_948_531,
        "currency": "usd",
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": FOREIGN_PAYMENT,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [listed],
            "has_more": False,
            "url": f"/v1/charges/{FOREIGN_CHARGE}/refunds",
        },
        "status": "succeeded",
        "transfer_group": None,
        **changes,
    }


def dispute(**changes: Any) -> JSON:
    """A Dispute (``object: dispute``) on a charge, funds withdrawn."""
    return {
        "id": "dp_1Pgc71B7WZ01zgkWMevJiAUx",
        "object": "dispute",
        "amount": 1000,
        "balance_transactions": [
            {
                "id": "txn_1Pgc71B7WZ01zgkWdJ7cBfbb",
                "object": "balance_transaction",
                "amount": -1000,
                "currency": "usd",
                "fee": 1500,
                "reporting_category": "dispute",
                "type": "adjustment",
            }
        ],
        "charge": FOREIGN_CHARGE,
        "created": 1_721_948_700,
        "currency": "usd",
        "evidence_details": {
            "due_by": 1_723_679_999,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": FOREIGN_PAYMENT,
        "reason": "fraudulent",
        "status": "needs_response",
        **changes,
    }


def early_fraud_warning(**changes: Any) -> JSON:
    """An early fraud warning (``object: radar.early_fraud_warning``) on a charge."""
    return {
        "id": "issfr_1Pgc79B7WZ01zgkWxwDzEIPX",
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": FOREIGN_CHARGE,
        "created": 1_721_948_800,
        "fraud_type": "misc",
        "livemode": False,
        "payment_intent": FOREIGN_PAYMENT,
        **changes,
    }


def transfer_reversal(**changes: Any) -> JSON:
    """A transfer reversal (``object: transfer_reversal``)."""
    return {
        "id": "trr_1Pgc7BB7WZ01zgkWsU61ufNC",
        "object": "transfer_reversal",
        "amount": 1100,
        "balance_transaction": "txn_1Pgc7BB7WZ01zgkWc5Ma7Ff6",
        "created": 1_721_948_900,
        "currency": "usd",
        "destination_payment_refund": None,
        "metadata": {},
        "source_refund": None,
        "transfer": FOREIGN_TRANSFER,
    }


def transfer(*, reversed_: bool = False, **changes: Any) -> JSON:
    """A Transfer (``object: transfer``) to a connected account, optionally reversed."""
    reversals = [transfer_reversal()] if reversed_ else []
    return {
        "id": FOREIGN_TRANSFER,
        "object": "transfer",
        "amount": 1100,
        "amount_reversed": 1100 if reversed_ else 0,
        "balance_transaction": "txn_1PgaxNB7WZ01zgkWEV3TLf40",
        "created": 1_721_948_850,
        "currency": "usd",
        "description": None,
        "destination": FOREIGN_ACCOUNT,
        "destination_payment": "py_QXhWZR8SdWquhf",
        "livemode": False,
        "metadata": {},
        "reversals": {
            "object": "list",
            "data": reversals,
            "has_more": False,
            "url": f"/v1/transfers/{FOREIGN_TRANSFER}/reversals",
        },
        "reversed": reversed_,
        "source_transaction": None,
        "source_type": "card",
        "transfer_group": None,
        **changes,
    }


def account(**changes: Any) -> JSON:
    """A connected Express account (``object: account``) able to receive transfers."""
    return {
        "id": FOREIGN_ACCOUNT,
        "object": "account",
        "business_type": None,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "application", "is_controller": True},
        "country": "US",
        "created": 1_721_948_000,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "site@stripe.com",
        "metadata": {},
        "payouts_enabled": True,
        "requirements": {"currently_due": [], "disabled_reason": None, "past_due": []},
        "type": "express",
        **changes,
    }


def capability(**changes: Any) -> JSON:
    """A connected account's ``transfers`` capability (``object: capability``)."""
    return {
        "id": "transfers",
        "object": "capability",
        "account": FOREIGN_ACCOUNT,
        "requested": True,
        "requested_at": 1_721_948_000,
        "requirements": {"currently_due": [], "disabled_reason": None, "past_due": []},
        "status": "active",
        **changes,
    }


def application(**changes: Any) -> JSON:
    """The platform application an account disconnected from (``object: application``)."""
    return {"id": "ca_QXg1hqf4jFNsqG", "object": "application", "name": None, **changes}


def payout(**changes: Any) -> JSON:
    """A connected account's Payout (``object: payout``) to its bank."""
    return {
        "id": "po_1Pgc79B7WZ01zgkWu1KToYf4",
        "object": "payout",
        "amount": 1100,
        "arrival_date": 1_722_000_000,
        "automatic": True,
        "balance_transaction": "txn_1PgaxNB7WZ01zgkWEV3TLf40",
        "created": 1_721_949_000,
        "currency": "usd",
        "destination": "ba_1Pgc79B7WZ01zgkWoU5vBiXt",
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "status": "paid",
        "type": "bank_account",
        **changes,
    }


def event(
    event_type: str,
    obj: JSON,
    *,
    created: int,
    account: str | None = None,
    event_id: str = "evt_1Pgc76B7WZ01zgkWwyRHS12y",
    livemode: bool = False,
) -> JSON:
    """An Event (``object: event``) as Stripe posts it; `account` is set on Connect events."""
    body: JSON = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    if account is not None:
        body["account"] = account
    return body
