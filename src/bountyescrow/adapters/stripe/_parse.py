"""Stripe JSON objects -> bountyescrow snapshots. Pure functions, no I/O, no SDK types.

Each function takes one Stripe object as decoded JSON (what the API returns and what a webhook
event carries in ``data.object``) and raises `KeyError`, `TypeError` or `ValueError` when a field
the snapshot needs is missing or has the wrong type. Expandable fields (``latest_charge``,
``payment_intent``, ``transfer``...) may be an id or an expanded object; both give the id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    DisputeSnapshot,
    FraudWarningSnapshot,
    GatewayObject,
    PaymentSnapshot,
    PayoutSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money

Json = Mapping[str, Any]

#: Balance transaction reporting categories that move a dispute's money: ``dispute`` takes the
#: disputed amount (negative), ``dispute_reversal`` gives it back (positive).
DISPUTE_CATEGORIES: Final = frozenset({"dispute", "dispute_reversal"})


def parse_payment(data: Json) -> PaymentSnapshot:
    """Parse a PaymentIntent (``object: payment_intent``)."""
    currency = _currency(data)
    error = data.get("last_payment_error")
    return PaymentSnapshot(
        ref=_id(data),
        status=_str(data, "status"),
        amount=Money(_int(data, "amount"), currency),
        amount_received=Money(_int(data, "amount_received", default=0), currency),
        charge_ref=ref(data.get("latest_charge")),
        metadata=_metadata(data),
        client_secret=_optional_str(data.get("client_secret")),
        last_error=_optional_str(error.get("message")) if isinstance(error, Mapping) else None,
        livemode=bool(data.get("livemode", False)),
    )


def parse_transfer(data: Json, *, reversals: Iterable[Json] | None = None) -> TransferSnapshot:
    """Parse a Transfer (``object: transfer``) with its reversals.

    A transfer embeds only the first page of its reversals (``reversals.data``); pass
    `reversals` (every reversal, fetched from the list endpoint) when `reversals_incomplete`.
    """
    destination = ref(data.get("destination"))
    if destination is None:
        raise KeyError("transfer without a destination")
    if reversals is None:
        embedded = data.get("reversals")
        reversals = (embedded.get("data") or ()) if isinstance(embedded, Mapping) else ()
    return TransferSnapshot(
        ref=_id(data),
        amount=Money(_int(data, "amount"), _currency(data)),
        destination=destination,
        transfer_group=_optional_str(data.get("transfer_group")),
        metadata=_metadata(data),
        source_transaction=ref(data.get("source_transaction")),
        reversals=tuple(parse_reversal(item) for item in reversals),
    )


def reversals_incomplete(data: Json) -> bool:
    """True when a Transfer's embedded reversals may not be all of them."""
    embedded = data.get("reversals")
    if isinstance(embedded, Mapping):
        return embedded.get("has_more") is True
    # Not embedded at all: complete only if nothing was reversed.
    return _int(data, "amount_reversed", default=0) > 0


def parse_refund(data: Json) -> RefundSnapshot:
    """Parse a Refund (``object: refund``)."""
    return RefundSnapshot(
        ref=_id(data),
        amount=Money(_int(data, "amount"), _currency(data)),
        status=_str(data, "status"),
        payment_ref=ref(data.get("payment_intent")),
        metadata=_metadata(data),
        failure_reason=_optional_str(data.get("failure_reason")),
    )


def parse_reversal(data: Json) -> ReversalSnapshot:
    """Parse a transfer reversal (``object: transfer_reversal``)."""
    transfer = ref(data.get("transfer"))
    if transfer is None:
        raise KeyError("transfer reversal without a transfer")
    return ReversalSnapshot(
        ref=_id(data),
        amount=Money(_int(data, "amount"), _currency(data)),
        transfer_ref=transfer,
        metadata=_metadata(data),
    )


def parse_dispute(data: Json) -> DisputeSnapshot:
    """Parse a Dispute (``object: dispute``) with its withdrawn and reinstated totals.

    The totals come from the dispute's ``balance_transactions``: negative amounts are money
    Stripe took, positive ones money it gave back. A balance transaction's ``amount`` excludes
    its ``fee``, so the dispute fee is never counted. Should a balance transaction be in another
    currency than the dispute (the platform settles in another currency, which the
    ``settlement_currencies`` setting prevents), it counts as the full disputed amount, which
    is what Stripe withdraws and reinstates.
    """
    currency = _currency(data)
    amount = _int(data, "amount")
    withdrawn = reinstated = 0
    for txn in data.get("balance_transactions") or ():
        if not isinstance(txn, Mapping):
            raise TypeError("dispute balance_transactions must be expanded objects")
        category = txn.get("reporting_category")
        if category is not None and category not in DISPUTE_CATEGORIES:
            continue
        value = _int(txn, "amount")
        if txn.get("currency") != currency:
            value = amount if value > 0 else -amount if value < 0 else 0
        if value < 0:
            withdrawn -= value
        else:
            reinstated += value
    return DisputeSnapshot(
        ref=_id(data),
        payment_ref=ref(data.get("payment_intent")),
        charge_ref=ref(data.get("charge")),
        amount=Money(amount, currency),
        status=_str(data, "status"),
        reason=_optional_str(data.get("reason")),
        funds_withdrawn=Money(withdrawn, currency),
        funds_reinstated=Money(reinstated, currency),
        charge_refundable=bool(data.get("is_charge_refundable", True)),
    )


def parse_account(data: Json) -> AccountSnapshot:
    """Parse a connected Account (``object: account``): ready when transfers are active."""
    capabilities = data.get("capabilities") or {}
    if not isinstance(capabilities, Mapping):
        raise TypeError("account capabilities must be an object")
    return AccountSnapshot(
        ref=_id(data),
        ready=capabilities.get("transfers") == "active",
        metadata=_metadata(data),
    )


#: The path, in an Accounts v2 account, to the capability that lets it receive v1 transfers.
RECIPIENT_TRANSFERS: Final = (
    "configuration",
    "recipient",
    "capabilities",
    "stripe_balance",
    "stripe_transfers",
)


def parse_account_v2(data: Json) -> AccountSnapshot:
    """Parse an Accounts v2 account (``object: v2.core.account``), read with
    ``include=configuration.recipient``: ready when the recipient configuration's
    ``stripe_balance.stripe_transfers`` capability is ``active``.

    An account without the recipient configuration, or whose configuration was not included,
    is not ready (``pending``, ``restricted``, ``rejected`` and ``unsupported`` are not either).
    A closed account is reported as `deauthorized`: it can never receive a transfer again.
    """
    node: object = data
    for key in RECIPIENT_TRANSFERS:
        if node is None:
            break
        if not isinstance(node, Mapping):
            raise TypeError(f"account {key} must be an object")
        node = node.get(key)
    status = node.get("status") if isinstance(node, Mapping) else None
    closed = data.get("closed") is True
    return AccountSnapshot(
        ref=_id(data),
        ready=status == "active" and not closed,
        metadata=_metadata(data),
        deauthorized=closed,
    )


def parse_fraud_warning(data: Json) -> FraudWarningSnapshot:
    """Parse an early fraud warning (``object: radar.early_fraud_warning``)."""
    charge = ref(data.get("charge"))
    if charge is None:
        raise KeyError("early fraud warning without a charge")
    return FraudWarningSnapshot(
        ref=_id(data),
        charge_ref=charge,
        payment_ref=ref(data.get("payment_intent")),
        actionable=bool(data.get("actionable", True)),
    )


def parse_payout(data: Json, *, account_ref: str) -> PayoutSnapshot:
    """Parse a connected account's Payout (``object: payout``); the account comes from the event."""
    return PayoutSnapshot(
        ref=_id(data),
        account_ref=account_ref,
        amount=Money(_int(data, "amount"), _currency(data)),
        status=_str(data, "status"),
        failure_code=_optional_str(data.get("failure_code")),
    )


_PARSERS: Final[Mapping[str, Callable[[Json], GatewayObject]]] = {
    "payment_intent": parse_payment,
    "transfer": parse_transfer,
    "refund": parse_refund,
    "transfer_reversal": parse_reversal,
    "dispute": parse_dispute,
    "account": parse_account,
    "v2.core.account": parse_account_v2,
    "radar.early_fraud_warning": parse_fraud_warning,
}


def parse_object(data: Json, *, account: str | None = None) -> GatewayObject:
    """Parse any object the library follows, chosen by its ``object`` field.

    `account` is the connected account of a Connect event (needed for payouts).

    Raises:
        ValueError: the object is of a kind the library does not follow.
    """
    kind = data.get("object")
    if kind == "payout":
        if account is None:
            raise ValueError("a payout snapshot needs the connected account of its event")
        return parse_payout(data, account_ref=account)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ValueError(f"no snapshot for Stripe objects of kind {kind!r}")
    return parser(data)


def ref(value: object) -> str | None:
    """Return the id of an expandable field: the string itself, or an expanded object's id."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        return _optional_str(value.get("id"))
    if value is None:
        return None
    raise TypeError(f"expected an id or an object, got {type(value).__name__}")


def _id(data: Json) -> str:
    return _str(data, "id")


def _str(data: Json, key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(data: Json, key: str, *, default: int | None = None) -> int:
    value = data.get(key)
    if value is None and default is not None:
        return default
    # bool is an int; a boolean amount is a malformed object, not 1 cent.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


def _currency(data: Json) -> str:
    return _str(data, "currency").lower()


def _metadata(data: Json) -> dict[str, str]:
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata must be an object")
    return {str(key): str(value) for key, value in metadata.items()}
