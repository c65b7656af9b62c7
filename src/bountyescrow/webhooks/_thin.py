"""Thin events: the small signed notifications Stripe's event destinations send.

A thin event (``object: "v2.core.event"``; the SDK's ``EventNotification``) names what
happened and the object it happened to (``related_object``: id, type, url), and carries no
snapshot of it: the receiver fetches what it needs. So nothing but the references is read from
the body here; the account an event is about is fetched from the gateway by the service's event
intake (``gateway.get_account``), exactly as for the snapshot ``account.updated``.

The library follows the thin events that tell a payee's readiness may have changed, for
Accounts v1 and v2 alike. Money events (payments, transfers, refunds, disputes) are followed
from snapshot events only: their events must be able to name an escrow whose commit has not
landed yet, which only the snapshot's metadata can.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from bountyescrow.domain.gateway_objects import AccountSnapshot, GatewayEvent
from bountyescrow.webhooks._events import MalformedEventError, Resolution
from bountyescrow.webhooks._events import followed as snapshot_followed

#: The ``object`` of a thin event; a snapshot event's is ``event``.
THIN_OBJECT: Final = "v2.core.event"

#: Where a followed thin event names its account: the related object is the account itself,
#: or the event happened on the connected account its ``context`` names.
_RELATED: Final = "related_object"
_CONTEXT: Final = "context"

#: Thin event types followed (names as in the SDK's ``stripe.events``), each with where its
#: account is named. Every one of them fetches the account and applies its readiness.
ACCOUNT_TYPES: Final[Mapping[str, str]] = {
    "v1.account.updated": _RELATED,
    "v1.capability.updated": _CONTEXT,
    "v2.core.account.updated": _RELATED,
    "v2.core.account.closed": _RELATED,
    "v2.core.account[configuration.recipient].updated": _RELATED,
    "v2.core.account[configuration.recipient].capability_status_updated": _RELATED,
    "v2.core.account[requirements].updated": _RELATED,
}
#: The payee disconnected the platform: it has no related object, the account is ``context``,
#: and a disconnected account can no longer be fetched.
DEAUTHORIZED: Final = "v1.account.application.deauthorized"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class RelatedObject(_Strict):
    """``related_object`` of a thin event: a reference to the object, not the object."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=128)
    url: str = Field(min_length=1, max_length=2048)


class ThinEvent(_Strict):
    """A thin event as an event destination posts it (the SDK's ``EventNotification``).

    `created` is an RFC 3339 time (``2025-01-02T03:04:05.678Z``), not a Unix timestamp;
    `context` names the connected account an event happened on (absent for the platform's).
    """

    # As for snapshot events: no ':' so the event log's per-refund ids never collide.
    id: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$")
    object: Literal["v2.core.event"]
    type: str = Field(min_length=1, max_length=255)
    created: str = Field(min_length=1, max_length=64)
    livemode: bool
    context: str | None = Field(default=None, max_length=255)
    related_object: RelatedObject | None = None

    def timestamp(self) -> int:
        """`created` as a Unix timestamp.

        Raises:
            MalformedEventError: `created` is not an RFC 3339 time with a time zone.
        """
        try:
            when = datetime.fromisoformat(self.created)
        except ValueError as exc:
            raise MalformedEventError(f"{self.type}: created is not a time") from exc
        if when.tzinfo is None:
            raise MalformedEventError(f"{self.type}: created has no time zone")
        return int(when.timestamp())

    def context_account(self) -> str | None:
        """The connected account `context` names (its last segment), or None."""
        if not self.context:
            return None
        return self.context.rsplit("/", 1)[-1] or None

    def account(self) -> str | None:
        """The connected account the event is about, as far as the body names one.

        For a followed account type, the account it resolves to; for any other, `context`.
        Only used to apply the relevance rules (other mode, platform account), never to
        decide what is applied.
        """
        where = ACCOUNT_TYPES.get(self.type)
        if where == _RELATED and self.related_object is not None:
            return self.related_object.id
        return self.context_account()


def is_thin(data: Mapping[str, object]) -> bool:
    """Whether decoded webhook JSON is a thin event (by its ``object``)."""
    return data.get("object") == THIN_OBJECT


def thin_followed(event_type: str) -> bool:
    """Whether thin events of this type are applied."""
    return event_type in ACCOUNT_TYPES or event_type == DEAUTHORIZED


def followed(event_type: str) -> bool:
    """Whether events of this type are applied (others are answered 200 and dropped).

    Snapshot event types (``account.updated``) and thin ones (``v2.core.account.updated``).
    """
    return snapshot_followed(event_type) or thin_followed(event_type)


def snapshot_only(event_type: str) -> bool:
    """Whether a thin event's type is one the library follows from snapshot events only.

    ``v1.payment_intent.succeeded`` sent thin means the destination should send snapshots:
    the dispatcher warns about it, since such events are not applied.
    """
    name = event_type.removeprefix("v1.")
    return name != event_type and not thin_followed(event_type) and snapshot_followed(name)


def _account_id(value: str, event_type: str) -> str:
    if not value.startswith("acct_"):
        raise MalformedEventError(f"{event_type}: names no account")
    return value


def resolve_thin(event: ThinEvent) -> Resolution:
    """Turn a verified thin event into the gateway event the service applies.

    The object applied is a placeholder naming the account: the service's event intake
    decides whether the account is a payee's (nothing is fetched otherwise), then fetches it
    with ``gateway.get_account`` and applies what the gateway says. A deauthorization is the
    exception, as for its snapshot event: the account can no longer be fetched.

    Raises:
        MalformedEventError: a followed type without the reference it needs, or whose
            reference is not an account id.
    """
    created = event.timestamp()
    if event.type == DEAUTHORIZED:
        account = event.context_account()
        if account is None:
            return Resolution(ignored="platform_account")
        snapshot = AccountSnapshot(
            ref=_account_id(account, event.type), ready=False, deauthorized=True
        )
    else:
        where = ACCOUNT_TYPES.get(event.type)
        if where is None:
            return Resolution(ignored="type_not_followed")
        if where == _CONTEXT:
            account = event.context_account()
            if account is None:
                return Resolution(ignored="platform_account")
        else:
            if event.related_object is None:
                raise MalformedEventError(f"{event.type}: no related_object")
            account = event.related_object.id
            if event.type.startswith("v1.") and event.context_account() is None:
                # v1 Connect events name the account they happened on; without one, the
                # platform's own account changed, which is no payee.
                return Resolution(ignored="platform_account")
        # Never applied as it is: the intake re-fetches every account that is not
        # deauthorized (see the module docstring).
        snapshot = AccountSnapshot(ref=_account_id(account, event.type), ready=False)
    return Resolution(
        (
            GatewayEvent(
                id=event.id,
                type=event.type,
                object=snapshot,
                created=created,
                livemode=event.livemode,
                account=snapshot.ref,
            ),
        )
    )
