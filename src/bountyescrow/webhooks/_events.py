"""From a verified Stripe event (decoded JSON) to the `GatewayEvent`s the service applies.

The envelope and the two objects no adapter parser covers (capability, application) are
validated with pydantic here, at the edge; every other object goes through the Stripe adapter's
pure parsers (`bountyescrow.adapters.stripe._parse`), the same ones the gateway uses for API
answers, so a webhook and a fetch of the same object give the same snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs
from pydantic import BaseModel, ConfigDict, Field

from bountyescrow.adapters.stripe._parse import parse_object, parse_refund
from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    GatewayEvent,
    GatewayObject,
    PaymentSnapshot,
)
from bountyescrow.errors import WebhookPayloadError

#: Event types followed exactly, with the kind of object (``data.object.object``) each carries.
EXACT_TYPES: Final[Mapping[str, str]] = {
    "charge.refunded": "charge",
    "charge.refund.updated": "refund",
    "refund.created": "refund",
    "refund.updated": "refund",
    "refund.failed": "refund",
    "radar.early_fraud_warning.created": "radar.early_fraud_warning",
    "transfer.created": "transfer",
    "transfer.updated": "transfer",
    "transfer.reversed": "transfer",
    "account.updated": "account",
    "capability.updated": "capability",
    "account.application.deauthorized": "application",
    "payout.paid": "payout",
    "payout.failed": "payout",
}
#: Event type families followed whole: every ``payment_intent.*`` and ``charge.dispute.*``
#: event carries the object in its current state, which the service applies by status.
PREFIX_TYPES: Final[tuple[tuple[str, str], ...]] = (
    ("payment_intent.", "payment_intent"),
    ("charge.dispute.", "dispute"),
)
#: Objects that live on a connected account: their events come to the Connect endpoint and
#: name the account. Every other object lives on the platform account.
CONNECT_KINDS: Final = frozenset({"account", "capability", "application", "payout"})


class _Strict(BaseModel):
    # Strict: a JSON ``true`` is not the integer 1 and ``"123"`` is not a timestamp.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class EventData(_Strict):
    """``data`` of an event: the object as it was when the event happened."""

    object: dict[str, Any]


class StripeEvent(_Strict):
    """The envelope of a Stripe event (``object: event``), as posted to a webhook endpoint.

    `account` is set on Connect events (something happened on a connected account).
    """

    # Ids never contain ':' on Stripe; refusing it keeps the per-refund ids of
    # ``charge.refunded`` (``<event id>:<refund id>``) from colliding with a real event id.
    id: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$")
    object: Literal["event"] = "event"
    type: str = Field(min_length=1, max_length=128)
    created: int = Field(ge=0)
    livemode: bool
    account: str | None = Field(default=None, min_length=1, max_length=255)
    data: EventData


class _RefundList(_Strict):
    data: list[dict[str, Any]]
    has_more: bool = False


class _Charge(_Strict):
    """The part of a Charge (``charge.refunded``) the dispatcher reads."""

    id: str = Field(min_length=1)
    object: Literal["charge"]
    # Absent unless expanded since API version 2022-11-15, so absent in webhook bodies of
    # current API versions: the refunds then arrive as their own refund.* events.
    refunds: _RefundList | None = None


class _Capability(_Strict):
    """A connected account's capability (``capability.updated``)."""

    id: str = Field(min_length=1)
    object: Literal["capability"]
    account: str = Field(min_length=1)
    status: str


class _Application(_Strict):
    """The platform application an account disconnected from."""

    object: Literal["application"]


class MalformedEventError(WebhookPayloadError):
    """A verified event whose object does not have the shape its type promises."""


@attrs.frozen
class Resolution:
    """What to apply for one event: nothing (with the reason) or one or more events."""

    events: tuple[GatewayEvent, ...] = ()
    ignored: str | None = None


def object_kind(event_type: str) -> str | None:
    """The object kind an event type carries, or None for a type the library does not follow."""
    kind = EXACT_TYPES.get(event_type)
    if kind is not None:
        return kind
    for prefix, family_kind in PREFIX_TYPES:
        if event_type.startswith(prefix):
            return family_kind
    return None


def followed(event_type: str) -> bool:
    """Whether events of this type are applied (others are answered 200 and dropped)."""
    return object_kind(event_type) is not None


def _single(event: StripeEvent, obj: GatewayObject) -> tuple[GatewayEvent, ...]:
    return (
        GatewayEvent(
            id=event.id,
            type=event.type,
            object=obj,
            created=event.created,
            livemode=event.livemode,
            account=event.account,
        ),
    )


def _parsed(event: StripeEvent) -> Resolution:
    obj = parse_object(event.data.object, account=event.account)
    if isinstance(obj, PaymentSnapshot):
        # The client secret lets a browser confirm the payment; the service never needs it
        # from a webhook, so it goes no further than this function.
        obj = attrs.evolve(obj, client_secret=None)
    return Resolution(_single(event, obj))


def _charge(event: StripeEvent) -> Resolution:
    charge = _Charge.model_validate(event.data.object)
    if charge.refunds is None:
        return Resolution(ignored="charge_without_refunds")
    # One sub-event per refund listed, so each refund is logged (and retried) on its own.
    return Resolution(
        tuple(
            GatewayEvent(
                id=f"{event.id}:{refund.ref}",
                type=event.type,
                object=refund,
                created=event.created,
                livemode=event.livemode,
                account=event.account,
            )
            for refund in (parse_refund(item) for item in charge.refunds.data)
        ),
        ignored=None if charge.refunds.data else "charge_without_refunds",
    )


def _capability(event: StripeEvent) -> Resolution:
    capability = _Capability.model_validate(event.data.object)
    if capability.id != "transfers":
        return Resolution(ignored="other_capability")  # payees only need transfers
    snapshot = AccountSnapshot(ref=capability.account, ready=capability.status == "active")
    return Resolution(_single(event, snapshot))


def _deauthorized(event: StripeEvent) -> Resolution:
    _Application.model_validate(event.data.object)
    assert event.account is not None  # Connect kinds are only resolved with an account
    snapshot = AccountSnapshot(ref=event.account, ready=False, deauthorized=True)
    return Resolution(_single(event, snapshot))


_SPECIAL: Final[Mapping[str, Callable[[StripeEvent], Resolution]]] = {
    "charge": _charge,
    "capability": _capability,
    "application": _deauthorized,
}


def resolve(event: StripeEvent) -> Resolution:
    """Turn a verified event into the gateway events the service applies.

    Returns no events (and the reason) for types the library does not follow, for platform
    objects reported by a connected account (a connected account could put our metadata on
    its own PaymentIntent: its money is not in the platform balance), and for Connect objects
    reported without an account (the platform's own account).

    Raises:
        MalformedEventError: the object is not of the kind the type carries, or lacks a field.
    """
    kind = object_kind(event.type)
    if kind is None:
        return Resolution(ignored="type_not_followed")
    actual = event.data.object.get("object")
    if actual != kind:
        raise MalformedEventError(f"{event.type} carries {actual!r}, expected {kind!r}")
    if kind in CONNECT_KINDS and event.account is None:
        return Resolution(ignored="platform_account")
    if kind not in CONNECT_KINDS and event.account is not None:
        return Resolution(ignored="connected_account")
    try:
        return _SPECIAL.get(kind, _parsed)(event)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError included
        raise MalformedEventError(f"{event.type}: {type(exc).__name__}") from exc
