"""What the service asks of a payment gateway, and what the gateway says back.

Requests are stored on their operation *before* they are sent (DESIGN §7), so recovery resends
exactly the same request. Snapshots are the gateway's view of one object; the domain applies
them by state, never by the delta an event reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from bountyescrow.domain.money import Money

#: Metadata keys the library puts on every gateway object it creates.
META_ESCROW = "bountyescrow_escrow_id"
META_OPERATION = "bountyescrow_operation_id"
META_BOUNTY = "bounty_id"
#: Metadata key naming the payee on the connected accounts the library creates.
META_PAYEE = "bountyescrow_payee_id"
#: Metadata key naming the deployment (`EscrowService(namespace=...)`) that made the object, so
#: deployments sharing one gateway account ignore each other's events.
META_NAMESPACE = "bountyescrow_namespace"


def _freeze(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return dict(sorted(mapping.items()))


# --- requests ---------------------------------------------------------------------------------


@attrs.frozen
class CreatePayment:
    """Create a PaymentIntent for the escrow's amount on the platform account."""

    action: ClassVar[str] = "create_payment"
    amount: Money
    transfer_group: str
    metadata: Mapping[str, str] = attrs.field(converter=_freeze)
    payment_method_types: tuple[str, ...] = ("card",)
    description: str | None = None
    receipt_email: str | None = None


@attrs.frozen
class CancelPayment:
    """Cancel a PaymentIntent that has not succeeded."""

    action: ClassVar[str] = "cancel_payment"
    payment_ref: str


@attrs.frozen
class CreateTransfer:
    """Move `amount` from the platform balance to a connected account."""

    action: ClassVar[str] = "create_transfer"
    amount: Money
    destination: str
    source_transaction: str | None
    transfer_group: str
    metadata: Mapping[str, str] = attrs.field(converter=_freeze)


@attrs.frozen
class CreateRefund:
    """Refund (part of) a PaymentIntent to the payer."""

    action: ClassVar[str] = "create_refund"
    amount: Money
    payment_ref: str
    metadata: Mapping[str, str] = attrs.field(converter=_freeze)
    reason: str | None = None


@attrs.frozen
class CreateReversal:
    """Pull (part of) a transfer back from the connected account to the platform."""

    action: ClassVar[str] = "create_reversal"
    amount: Money
    transfer_ref: str
    metadata: Mapping[str, str] = attrs.field(converter=_freeze)


GatewayRequest = CreatePayment | CancelPayment | CreateTransfer | CreateRefund | CreateReversal
_REQUEST_TYPES: dict[str, type[Any]] = {
    cls.action: cls
    for cls in (CreatePayment, CancelPayment, CreateTransfer, CreateRefund, CreateReversal)
}


def request_to_dict(request: GatewayRequest) -> dict[str, Any]:
    """Serialise a request for storage (JSON-safe: Money becomes amount and currency)."""
    data: dict[str, Any] = {"action": request.action}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if isinstance(value, Money):
            data[field.name] = {"amount": value.amount, "currency": value.currency}
        elif isinstance(value, tuple):
            data[field.name] = list(value)
        elif isinstance(value, Mapping):
            data[field.name] = dict(value)
        else:
            data[field.name] = value
    return data


def request_from_dict(data: Mapping[str, Any]) -> GatewayRequest:
    """Rebuild a request stored with `request_to_dict`."""
    cls = _REQUEST_TYPES[data["action"]]
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        if isinstance(value, dict) and set(value) == {"amount", "currency"}:
            value = Money(value["amount"], value["currency"])
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    request: GatewayRequest = cls(**kwargs)
    return request


# --- snapshots --------------------------------------------------------------------------------


@attrs.frozen
class PaymentSnapshot:
    """A PaymentIntent as the gateway reports it.

    `status` uses Stripe's words: requires_payment_method, requires_confirmation,
    requires_action, processing, requires_capture, canceled, succeeded.
    """

    ref: str
    status: str
    amount: Money
    amount_received: Money
    charge_ref: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    client_secret: str | None = attrs.field(default=None, repr=False)
    last_error: str | None = None
    livemode: bool = False


@attrs.frozen
class ReversalSnapshot:
    """A transfer reversal (always final once created)."""

    ref: str
    amount: Money
    transfer_ref: str
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)


@attrs.frozen
class TransferSnapshot:
    """A transfer to a connected account, with the reversals made on it so far."""

    ref: str
    amount: Money
    destination: str
    transfer_group: str | None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    source_transaction: str | None = None
    reversals: tuple[ReversalSnapshot, ...] = ()


@attrs.frozen
class RefundSnapshot:
    """A refund. `status`: pending, requires_action, succeeded, failed, canceled."""

    ref: str
    amount: Money
    status: str
    payment_ref: str | None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    failure_reason: str | None = None


@attrs.frozen
class DisputeSnapshot:
    """A dispute on a charge.

    `funds_withdrawn` and `funds_reinstated` are the totals of the dispute's balance
    transactions (the disputed amount, fees excluded), so applying a snapshot twice is harmless.
    """

    ref: str
    payment_ref: str | None
    charge_ref: str | None
    amount: Money
    status: str
    reason: str | None
    funds_withdrawn: Money
    funds_reinstated: Money
    #: Stripe's ``is_charge_refundable``: false once a chargeback blocks refunds.
    charge_refundable: bool = True


@attrs.frozen
class AccountSnapshot:
    """A connected account. `ready` is true when `capabilities.transfers` is active."""

    ref: str
    ready: bool
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    deauthorized: bool = False


@attrs.frozen
class FraudWarningSnapshot:
    """An early fraud warning on a charge (`radar.early_fraud_warning.created`)."""

    ref: str
    charge_ref: str
    payment_ref: str | None
    actionable: bool = True


@attrs.frozen
class PayoutSnapshot:
    """A payout from a connected account to its bank (informational for us)."""

    ref: str
    account_ref: str
    amount: Money
    status: str
    failure_code: str | None = None


GatewayObject = (
    PaymentSnapshot
    | TransferSnapshot
    | RefundSnapshot
    | ReversalSnapshot
    | DisputeSnapshot
    | AccountSnapshot
    | FraudWarningSnapshot
    | PayoutSnapshot
)


@attrs.frozen
class GatewayEvent:
    """One notification from the gateway, resolved to the object it is about.

    `type` keeps the gateway's event name (``payment_intent.succeeded``); `object` is the
    snapshot the service applies. `account` names the connected account for Connect events.
    """

    id: str
    type: str
    object: GatewayObject
    created: int = 0
    livemode: bool = False
    account: str | None = None
