"""Builders for the Stripe JSON objects the adapter reads, one per resource.

Field names, nesting and `null`s follow Stripe's own example objects (stripe/openapi
``fixtures3.json``): ids that are expandable (``latest_charge``, ``payment_intent``,
``transfer``, ``balance_transaction``...) are plain ids unless a test expands them, and every
object carries ``object``, ``livemode`` where Stripe sends it, and ``metadata``. Keep them small:
only the fields a real answer has and the adapter may read, plus the ones code tends to trip on.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

CREATED = 1_767_225_600  # a fixed Unix time, so objects compare equal across runs
_serial = itertools.count(1)


def new_id(prefix: str) -> str:
    """Return a fresh Stripe-looking id (``pi_1Qtest000001``)."""
    return f"{prefix}_1Qtest{next(_serial):06d}"


# Stripe resource: PaymentIntent (object "payment_intent").
def payment_intent(
    *,
    id: str | None = None,
    amount: int = 25_000,
    currency: str = "usd",
    status: str = "requires_payment_method",
    amount_received: int = 0,
    latest_charge: str | Mapping[str, Any] | None = None,
    transfer_group: str | None = "bountyescrow:esc_1",
    metadata: Mapping[str, str] | None = None,
    client_secret: str | None = None,
    last_payment_error: Mapping[str, Any] | None = None,
    payment_method_types: Sequence[str] = ("card",),
    description: str | None = None,
    receipt_email: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    pi_id = id or new_id("pi")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount_received,
        "application": None,
        "application_fee_amount": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": client_secret or f"{pi_id}_secret_Dm43xiq1k0ywrRRjDoi8y1gkM",
        "confirmation_method": "automatic",
        "created": CREATED,
        "currency": currency,
        "customer": None,
        "description": description,
        "last_payment_error": dict(last_payment_error) if last_payment_error else None,
        "latest_charge": latest_charge,
        "livemode": livemode,
        "metadata": dict(metadata or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_types": list(payment_method_types),
        "receipt_email": receipt_email,
        "review": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": transfer_group,
    }


# Stripe resource: Charge (object "charge"), as an expanded `latest_charge`.
def charge(
    *,
    id: str | None = None,
    amount: int = 25_000,
    currency: str = "usd",
    payment_intent: str | None = None,
    transfer_group: str | None = "bountyescrow:esc_1",
    amount_refunded: int = 0,
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": id or new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "balance_transaction": new_id("txn"),
        "captured": True,
        "created": CREATED,
        "currency": currency,
        "disputed": False,
        "livemode": livemode,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "refunded": amount_refunded == amount,
        "source_transfer": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": transfer_group,
    }


# Stripe resource: list object (object "list"), as returned by list endpoints and embedded in
# transfers (`reversals`).
def listing(
    items: Sequence[Mapping[str, Any]], *, url: str, has_more: bool = False
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [dict(item) for item in items],
        "has_more": has_more,
        "url": url,
    }


# Stripe resource: Transfer (object "transfer").
def transfer(
    *,
    id: str | None = None,
    amount: int = 22_500,
    currency: str = "usd",
    destination: str = "acct_1Qhunter",
    source_transaction: str | None = None,
    transfer_group: str | None = "bountyescrow:esc_1",
    metadata: Mapping[str, str] | None = None,
    reversals: Sequence[Mapping[str, Any]] = (),
    reversals_have_more: bool = False,
    amount_reversed: int | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    tr_id = id or new_id("tr")
    reversed_total = (
        amount_reversed
        if amount_reversed is not None
        else sum(int(item["amount"]) for item in reversals)
    )
    return {
        "id": tr_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": reversed_total,
        "balance_transaction": new_id("txn"),
        "created": CREATED,
        "currency": currency,
        "description": None,
        "destination": destination,
        "destination_payment": new_id("py"),
        "livemode": livemode,
        "metadata": dict(metadata or {}),
        "reversals": listing(
            reversals, url=f"/v1/transfers/{tr_id}/reversals", has_more=reversals_have_more
        ),
        "reversed": reversed_total == amount,
        "source_transaction": source_transaction,
        "source_type": "card",
        "transfer_group": transfer_group,
    }


# Stripe resource: TransferReversal (object "transfer_reversal").
def transfer_reversal(
    *,
    id: str | None = None,
    amount: int = 22_500,
    currency: str = "usd",
    transfer: str = "tr_1Qtransfer",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": id or new_id("trr"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "created": CREATED,
        "currency": currency,
        "destination_payment_refund": new_id("pyr"),
        "metadata": dict(metadata or {}),
        "source_refund": None,
        "transfer": transfer,
    }


# Stripe resource: Refund (object "refund").
def refund(
    *,
    id: str | None = None,
    amount: int = 5_000,
    currency: str = "usd",
    payment_intent: str | None = "pi_1Qpayment",
    charge: str | None = "ch_1Qcharge",
    status: str = "succeeded",
    reason: str | None = None,
    metadata: Mapping[str, str] | None = None,
    failure_reason: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": id or new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn") if status == "succeeded" else None,
        "charge": charge,
        "created": CREATED,
        "currency": currency,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": dict(metadata or {}),
        "payment_intent": payment_intent,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    if failure_reason is not None:  # present only on failed refunds
        data["failure_reason"] = failure_reason
        data["failure_balance_transaction"] = new_id("txn")
    return data


# Stripe resource: BalanceTransaction (object "balance_transaction"), as listed on a dispute.
def balance_transaction(
    *,
    amount: int,
    currency: str = "usd",
    fee: int = 0,
    reporting_category: str = "dispute",
    type: str = "adjustment",
    source: str = "dp_1Qdispute",
) -> dict[str, Any]:
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": CREATED,
        "created": CREATED,
        "currency": currency,
        "description": "Chargeback withdrawal" if amount < 0 else "Chargeback reversal",
        "exchange_rate": None,
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "currency": currency,
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        ),
        "net": amount - fee,
        "reporting_category": reporting_category,
        "source": source,
        "status": "available",
        "type": type,
    }


# Stripe resource: Dispute (object "dispute").
def dispute(
    *,
    id: str | None = None,
    amount: int = 25_000,
    currency: str = "usd",
    charge: str = "ch_1Qcharge",
    payment_intent: str | None = "pi_1Qpayment",
    status: str = "needs_response",
    reason: str | None = "fraudulent",
    balance_transactions: Sequence[Mapping[str, Any]] = (),
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": id or new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [dict(txn) for txn in balance_transactions],
        "charge": charge,
        "created": CREATED,
        "currency": currency,
        "evidence_details": {
            "due_by": CREATED + 7 * 86_400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": livemode,
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": reason,
        "status": status,
    }


# Stripe resource: Account (object "account"), a connected account created by the platform.
def account(
    *,
    id: str | None = None,
    transfers: str | None = "inactive",
    country: str = "US",
    email: str | None = "hunter@example.com",
    metadata: Mapping[str, str] | None = None,
    service_agreement: str = "full",
) -> dict[str, Any]:
    capabilities = {} if transfers is None else {"transfers": transfers}
    due = [] if transfers == "active" else ["external_account", "tos_acceptance.date"]
    return {
        "id": id or new_id("acct"),
        "object": "account",
        "business_type": None,
        "capabilities": capabilities,
        "charges_enabled": False,
        "controller": {
            "fees": {"payer": "application"},
            "is_controller": True,
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
            "type": "application",
        },
        "country": country,
        "created": CREATED,
        "default_currency": "usd",
        "details_submitted": transfers == "active",
        "email": email,
        "metadata": dict(metadata or {}),
        "payouts_enabled": transfers == "active",
        "requirements": {
            "currently_due": due,
            "disabled_reason": None if transfers == "active" else "requirements.past_due",
            "eventually_due": due,
            "past_due": [],
            "pending_verification": [],
        },
        "tos_acceptance": {"date": None, "ip": None, "service_agreement": service_agreement},
        "type": "express",
    }


# Stripe resource: Account (object "account"), the platform's own account (GET /v1/account).
def platform_account(
    *, id: str = "acct_1Qplatform", country: str = "US", default_currency: str = "usd"
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "account",
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": country,
        "created": CREATED,
        "default_currency": default_currency,
        "details_submitted": True,
        "email": "platform@example.com",
        "metadata": {},
        "payouts_enabled": True,
        "type": "standard",
    }


# Stripe resource: Account v2 (object "v2.core.account"), read with
# include=configuration.recipient; `stripe_transfers` is the recipient configuration's
# stripe_balance.stripe_transfers capability status (None: no recipient configuration).
def account_v2(
    *,
    id: str | None = None,
    stripe_transfers: str | None = "restricted",
    country: str = "US",
    email: str | None = "hunter@example.com",
    metadata: Mapping[str, str] | None = None,
    closed: bool = False,
    livemode: bool = False,
) -> dict[str, Any]:
    configuration: dict[str, Any] | None = None
    if stripe_transfers is not None:
        details = (
            []
            if stripe_transfers == "active"
            else [{"code": "requirements_past_due", "resolution": "provide_info"}]
        )
        configuration = {
            "customer": None,
            "merchant": None,
            "recipient": {
                "applied": True,
                "capabilities": {
                    "bank_accounts": None,
                    "cards": None,
                    "stripe_balance": {
                        "payouts": None,
                        "stripe_transfers": {
                            "status": stripe_transfers,
                            "status_details": details,
                        },
                    },
                },
            },
        }
    return {
        "id": id or new_id("acct"),
        "object": "v2.core.account",
        "applied_configurations": [] if stripe_transfers is None else ["recipient"],
        "closed": closed,
        "configuration": configuration,
        "contact_email": email,
        "contact_phone": None,
        "created": "2026-01-02T03:04:05.000Z",
        "dashboard": "express",
        "defaults": None,
        "display_name": None,
        "future_requirements": None,
        "identity": None,
        "livemode": livemode,
        "metadata": dict(metadata or {}),
        "requirements": None,
    }


# Stripe resource: AccountLink v2 (object "v2.core.account_link").
def account_link_v2(
    *, account: str = "acct_1Qhunter", return_url: str = "", refresh_url: str = ""
) -> dict[str, Any]:
    return {
        "object": "v2.core.account_link",
        "account": account,
        "created": "2026-01-02T03:04:05.000Z",
        "expires_at": "2026-01-02T03:09:05.000Z",
        "livemode": False,
        "url": f"https://connect.stripe.com/d/setup/e/{account}/Mer16itPZo2K",
        "use_case": {
            "type": "account_onboarding",
            "account_onboarding": {
                "collection_options": None,
                "refresh_url": refresh_url,
                "return_url": return_url,
            },
            "account_update": None,
        },
    }


# Stripe resource: AccountLink (object "account_link").
def account_link(*, account: str = "acct_1Qhunter") -> dict[str, Any]:
    return {
        "object": "account_link",
        "created": CREATED,
        "expires_at": CREATED + 300,
        "url": f"https://connect.stripe.com/setup/e/{account}/Mer16itPZo2K",
    }


# Stripe resource: radar.early_fraud_warning.
def early_fraud_warning(
    *, charge: str = "ch_1Qcharge", payment_intent: str | None = "pi_1Qpayment"
) -> dict[str, Any]:
    return {
        "id": new_id("issfr"),
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": charge,
        "created": CREATED,
        "fraud_type": "misc",
        "livemode": False,
        "payment_intent": payment_intent,
    }


# Stripe resource: Payout (object "payout"), on a connected account.
def payout(
    *, amount: int = 22_500, status: str = "paid", failure_code: str | None = None
) -> dict[str, Any]:
    return {
        "id": new_id("po"),
        "object": "payout",
        "amount": amount,
        "arrival_date": CREATED,
        "automatic": True,
        "balance_transaction": new_id("txn"),
        "created": CREATED,
        "currency": "usd",
        "destination": new_id("ba"),
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "status": status,
        "type": "bank_account",
    }


# Stripe error body (`{"error": {...}}`), as every failed request returns.
def error(type: str, message: str, *, code: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type,
        "message": message,
        "code": code,
        "doc_url": f"https://docs.stripe.com/error-codes/{code}" if code else None,
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_test",
    }
    body.update(extra)
    return {"error": body}
