"""The objects `FakeGateway` keeps, and their Stripe-shaped JSON.

Each record is the fake's mutable state for one Stripe resource; each ``*_json`` function
renders it with the fields real Stripe sends (API version ``2024-06-20``), checked against
Stripe's own example objects (`stripe/openapi` ``fixtures3.json``). Nested objects that Stripe
sends but that nothing here models (billing details, evidence, settings) are reduced to their
keys with empty or null values, so code that reads them finds the shape it expects.

Longer than most modules on purpose: it is a catalogue, one record and one renderer per
resource, read by looking an object up rather than from top to bottom.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from bountyescrow.domain.money import Money

#: The API version the fake's event bodies are rendered in.
API_VERSION: Final = "2024-06-20"
#: The application id Connect events about a deauthorized account name.
PLATFORM_APPLICATION: Final = "ca_fakeplatform0001"

JSON = dict[str, Any]

_EMPTY_REQUIREMENTS: Final[JSON] = {
    "alternatives": [],
    "current_deadline": None,
    "currently_due": [],
    "disabled_reason": None,
    "errors": [],
    "eventually_due": [],
    "past_due": [],
    "pending_verification": [],
}
# What an Express account still owes before `transfers` becomes active.
_ONBOARDING_DUE: Final = (
    "business_profile.url",
    "external_account",
    "individual.dob.day",
    "tos_acceptance.date",
    "tos_acceptance.ip",
)


# --- records --------------------------------------------------------------------------------


@attrs.define(eq=False)
class BalanceTransactionRecord:
    """A balance transaction (Stripe ``balance_transaction``); here only a dispute's."""

    id: str
    amount: int
    fee: int
    currency: str
    created: int
    source: str
    type: str
    reporting_category: str
    description: str


@attrs.define(eq=False)
class RefundRecord:
    """A refund (Stripe ``refund``)."""

    id: str
    amount: Money
    charge: str
    payment_intent: str
    created: int
    status: str
    metadata: dict[str, str]
    balance_transaction: str
    reason: str | None = None
    failure_reason: str | None = None
    failure_balance_transaction: str | None = None

    @property
    def counts(self) -> bool:
        """True while the refund takes money off the charge (not failed or canceled)."""
        return self.status not in ("failed", "canceled")


@attrs.define(eq=False)
class DisputeRecord:
    """A dispute (Stripe ``dispute``) with its balance transactions."""

    id: str
    amount: Money
    charge: str
    payment_intent: str
    created: int
    reason: str
    status: str
    inquiry: bool
    balance_transactions: list[BalanceTransactionRecord] = attrs.Factory(list)

    @property
    def open(self) -> bool:
        """True until Stripe closes the dispute."""
        return self.status not in ("won", "lost", "warning_closed", "prevented")

    @property
    def blocks_refunds(self) -> bool:
        """True when Stripe refuses refunds on the charge (a chargeback, not an inquiry)."""
        return not self.inquiry and self.status != "won"


@attrs.define(eq=False)
class ChargeRecord:
    """A charge (Stripe ``charge``) made by a PaymentIntent, with its refunds and disputes."""

    id: str
    payment_intent: str
    amount: Money
    created: int
    status: str
    payment_method: str
    balance_transaction: str | None
    transfer_group: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    refunds: list[RefundRecord] = attrs.Factory(list)
    disputes: list[DisputeRecord] = attrs.Factory(list)

    @property
    def amount_refunded(self) -> int:
        """What refunds take off the charge (pending ones included, as on Stripe)."""
        return sum(refund.amount.amount for refund in self.refunds if refund.counts)


@attrs.define(eq=False)
class PaymentIntentRecord:
    """A PaymentIntent (Stripe ``payment_intent``)."""

    id: str
    amount: Money
    created: int
    client_secret: str
    transfer_group: str | None
    metadata: dict[str, str]
    payment_method_types: list[str]
    description: str | None = None
    receipt_email: str | None = None
    status: str = "requires_payment_method"
    amount_received: int = 0
    latest_charge: ChargeRecord | None = None
    payment_method: str | None = None
    last_payment_error: JSON | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None


@attrs.define(eq=False)
class ReversalRecord:
    """A transfer reversal (Stripe ``transfer_reversal``)."""

    id: str
    amount: Money
    transfer: str
    created: int
    metadata: dict[str, str]
    balance_transaction: str


@attrs.define(eq=False)
class TransferRecord:
    """A transfer to a connected account (Stripe ``transfer``) with its reversals."""

    id: str
    amount: Money
    destination: str
    source_transaction: str | None
    transfer_group: str | None
    created: int
    metadata: dict[str, str]
    balance_transaction: str
    destination_payment: str
    reversals: list[ReversalRecord] = attrs.Factory(list)

    @property
    def amount_reversed(self) -> int:
        """The total of the transfer's reversals."""
        return sum(reversal.amount.amount for reversal in self.reversals)


@attrs.define(eq=False)
class AccountRecord:
    """A connected Express account (Stripe ``account``) and its balance."""

    id: str
    country: str
    email: str | None
    default_currency: str
    created: int
    metadata: dict[str, str]
    service_agreement: str
    transfers: str = "inactive"
    deauthorized: bool = False
    balance: dict[str, int] = attrs.Factory(dict)

    @property
    def ready(self) -> bool:
        """True when the account can receive transfers."""
        return self.transfers == "active" and not self.deauthorized


@attrs.define(eq=False)
class FraudWarningRecord:
    """An early fraud warning (Stripe ``radar.early_fraud_warning``)."""

    id: str
    charge: str
    payment_intent: str
    created: int
    fraud_type: str = "made_with_stolen_card"
    actionable: bool = True


@attrs.define(eq=False)
class PayoutRecord:
    """A payout from a connected account to its bank (Stripe ``payout``)."""

    id: str
    account: str
    amount: Money
    created: int
    status: str
    balance_transaction: str
    failure_code: str | None = None
    failure_message: str | None = None


# --- JSON -----------------------------------------------------------------------------------


def _list(url: str, data: list[JSON]) -> JSON:
    return {"object": "list", "data": data, "has_more": False, "total_count": len(data), "url": url}


def balance_transaction_json(txn: BalanceTransactionRecord) -> JSON:
    """Render a balance transaction (as embedded in a dispute's ``balance_transactions``)."""
    fee_details = (
        [{"amount": txn.fee, "application": None, "currency": txn.currency,
          "description": "Dispute fee", "type": "stripe_fee"}]
        if txn.fee
        else []
    )  # fmt: skip
    return {
        "id": txn.id,
        "object": "balance_transaction",
        "amount": txn.amount,
        "available_on": txn.created,
        "created": txn.created,
        "currency": txn.currency,
        "description": txn.description,
        "exchange_rate": None,
        "fee": txn.fee,
        "fee_details": fee_details,
        "net": txn.amount - txn.fee,
        "reporting_category": txn.reporting_category,
        "source": txn.source,
        "status": "available",
        "type": txn.type,
    }


def payment_intent_json(pi: PaymentIntentRecord, *, livemode: bool) -> JSON:
    """Render a PaymentIntent."""
    return {
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount.amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": pi.amount_received,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": pi.canceled_at,
        "cancellation_reason": pi.cancellation_reason,
        "capture_method": "automatic",
        "client_secret": pi.client_secret,
        "confirmation_method": "automatic",
        "created": pi.created,
        "currency": pi.amount.currency,
        "customer": None,
        "description": pi.description,
        "last_payment_error": dict(pi.last_payment_error) if pi.last_payment_error else None,
        "latest_charge": pi.latest_charge.id if pi.latest_charge else None,
        "livemode": livemode,
        "metadata": dict(pi.metadata),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pi.payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(pi.payment_method_types),
        "processing": {"type": "card"} if pi.status == "processing" else None,
        "receipt_email": pi.receipt_email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": pi.status,
        "transfer_data": None,
        "transfer_group": pi.transfer_group,
    }


def refund_json(refund: RefundRecord) -> JSON:
    """Render a refund."""
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount.amount,
        "balance_transaction": refund.balance_transaction,
        "charge": refund.charge,
        "created": refund.created,
        "currency": refund.amount.currency,
        "destination_details": {
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": None,
                "type": "refund",
            },
            "type": "card",
        },
        "failure_balance_transaction": refund.failure_balance_transaction,
        "failure_reason": refund.failure_reason,
        "metadata": dict(refund.metadata),
        "payment_intent": refund.payment_intent,
        "reason": refund.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": refund.status,
        "transfer_reversal": None,
    }


def charge_json(charge: ChargeRecord, *, livemode: bool) -> JSON:
    """Render a charge, with its refunds listed (as in ``charge.refunded``)."""
    paid = charge.status == "succeeded"
    refunded = charge.amount_refunded
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount.amount,
        "amount_captured": charge.amount.amount if paid else 0,
        "amount_refunded": refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": charge.balance_transaction,
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
        },
        "calculated_statement_descriptor": "BOUNTYESCROW",
        "captured": paid,
        "created": charge.created,
        "currency": charge.amount.currency,
        "customer": None,
        "description": None,
        "disputed": bool(charge.disputes),
        "failure_balance_transaction": None,
        "failure_code": charge.failure_code,
        "failure_message": charge.failure_message,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network" if paid else "declined_by_network",
            "reason": None if paid else "generic_decline",
            "risk_level": "normal",
            "seller_message": "Payment complete."
            if paid
            else "The bank did not return any further details with this decline.",
            "type": "authorized" if paid else "issuer_declined",
        },
        "paid": paid,
        "payment_intent": charge.payment_intent,
        "payment_method": charge.payment_method,
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": "4242",
                "network": "visa",
            },
            "type": "card",
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": paid and refunded == charge.amount.amount,
        "refunds": _list(
            f"/v1/charges/{charge.id}/refunds", [refund_json(r) for r in charge.refunds]
        ),
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": charge.status,
        "transfer_data": None,
        "transfer_group": charge.transfer_group,
    }


def reversal_json(reversal: ReversalRecord) -> JSON:
    """Render a transfer reversal."""
    return {
        "id": reversal.id,
        "object": "transfer_reversal",
        "amount": reversal.amount.amount,
        "balance_transaction": reversal.balance_transaction,
        "created": reversal.created,
        "currency": reversal.amount.currency,
        "destination_payment_refund": None,
        "metadata": dict(reversal.metadata),
        "source_refund": None,
        "transfer": reversal.transfer,
    }


def transfer_json(transfer: TransferRecord, *, livemode: bool) -> JSON:
    """Render a transfer with its reversals."""
    return {
        "id": transfer.id,
        "object": "transfer",
        "amount": transfer.amount.amount,
        "amount_reversed": transfer.amount_reversed,
        "balance_transaction": transfer.balance_transaction,
        "created": transfer.created,
        "currency": transfer.amount.currency,
        "description": None,
        "destination": transfer.destination,
        "destination_payment": transfer.destination_payment,
        "livemode": livemode,
        "metadata": dict(transfer.metadata),
        "reversals": _list(
            f"/v1/transfers/{transfer.id}/reversals",
            [reversal_json(r) for r in transfer.reversals],
        ),
        "reversed": transfer.amount_reversed == transfer.amount.amount,
        "source_transaction": transfer.source_transaction,
        "source_type": "card",
        "transfer_group": transfer.transfer_group,
    }


def dispute_json(dispute: DisputeRecord, *, livemode: bool) -> JSON:
    """Render a dispute with its balance transactions."""
    return {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount.amount,
        "balance_transactions": [balance_transaction_json(t) for t in dispute.balance_transactions],
        "charge": dispute.charge,
        "created": dispute.created,
        "currency": dispute.amount.currency,
        "evidence": {
            "customer_communication": None,
            "customer_email_address": None,
            "customer_name": None,
            "product_description": None,
            "receipt": None,
            "refund_policy": None,
            "service_date": None,
            "service_documentation": None,
            "uncategorized_file": None,
            "uncategorized_text": None,
        },
        "evidence_details": {
            "due_by": dispute.created + 21 * 86_400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": not dispute.blocks_refunds,
        "livemode": livemode,
        "metadata": {},
        "payment_intent": dispute.payment_intent,
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "case_type": "inquiry" if dispute.inquiry else "chargeback",
                "network_reason_code": "10.4",
            },
            "type": "card",
        },
        "reason": dispute.reason,
        "status": dispute.status,
    }


def account_json(account: AccountRecord) -> JSON:
    """Render a connected Express account; `capabilities.transfers` says if it can receive."""
    due = [] if account.ready else list(_ONBOARDING_DUE)
    requirements = {
        **_EMPTY_REQUIREMENTS,
        "currently_due": due,
        "eventually_due": due,
        "disabled_reason": None if account.ready else "requirements.past_due",
    }
    return {
        "id": account.id,
        "object": "account",
        "business_profile": {"mcc": None, "name": None, "product_description": None,
                             "support_email": None, "url": None},
        "business_type": "individual",
        "capabilities": {"transfers": account.transfers},
        "charges_enabled": False,
        "controller": {"is_controller": True, "type": "application"},
        "country": account.country,
        "created": account.created,
        "default_currency": account.default_currency,
        "details_submitted": account.transfers == "active",
        "email": account.email,
        "external_accounts": _list(f"/v1/accounts/{account.id}/external_accounts", []),
        "future_requirements": dict(_EMPTY_REQUIREMENTS),
        "metadata": dict(account.metadata),
        "payouts_enabled": account.ready,
        "requirements": requirements,
        "settings": {"payouts": {"debit_negative_balances": True,
                                 "schedule": {"delay_days": 2, "interval": "manual"},
                                 "statement_descriptor": None}},
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None,
                           "service_agreement": account.service_agreement},
        "type": "express",
    }  # fmt: skip


def capability_json(account: AccountRecord) -> JSON:
    """Render the account's ``transfers`` capability (``capability.updated``)."""
    due = [] if account.transfers == "active" else list(_ONBOARDING_DUE)
    return {
        "id": "transfers",
        "object": "capability",
        "account": account.id,
        "future_requirements": dict(_EMPTY_REQUIREMENTS),
        "requested": True,
        "requested_at": account.created,
        "requirements": {**_EMPTY_REQUIREMENTS, "currently_due": due, "eventually_due": due},
        "status": account.transfers,
    }


def application_json() -> JSON:
    """Render the platform application (``account.application.deauthorized``)."""
    return {"id": PLATFORM_APPLICATION, "object": "application", "name": "FakeGateway platform"}


def fraud_warning_json(warning: FraudWarningRecord, *, livemode: bool) -> JSON:
    """Render an early fraud warning."""
    return {
        "id": warning.id,
        "object": "radar.early_fraud_warning",
        "actionable": warning.actionable,
        "charge": warning.charge,
        "created": warning.created,
        "fraud_type": warning.fraud_type,
        "livemode": livemode,
        "payment_intent": warning.payment_intent,
    }


def payout_json(payout: PayoutRecord, *, livemode: bool) -> JSON:
    """Render a payout of a connected account."""
    return {
        "id": payout.id,
        "object": "payout",
        "amount": payout.amount.amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": payout.created + 2 * 86_400,
        "automatic": False,
        "balance_transaction": payout.balance_transaction,
        "created": payout.created,
        "currency": payout.amount.currency,
        "description": None,
        "destination": f"ba_{payout.account.removeprefix('acct_')}",
        "failure_balance_transaction": None,
        "failure_code": payout.failure_code,
        "failure_message": payout.failure_message,
        "livemode": livemode,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reconciliation_status": "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": payout.status,
        "type": "bank_account",
    }


def event_json(
    *,
    event_id: str,
    type: str,
    obj: JSON,
    created: int,
    livemode: bool,
    account: str | None,
    previous_attributes: JSON | None = None,
) -> JSON:
    """Render an event (Stripe ``event``); `account` is set on Connect events only."""
    data: JSON = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    body: JSON = {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }
    if account is not None:
        body["account"] = account
    return body
