"""`WebhookDispatcher`: verified Stripe requests in, `EscrowService.apply_event` out.

Status codes follow what Stripe does with them (it redelivers anything that is not 2xx, for
up to three days) and anymail's webhook base: a request that can never succeed as sent is
refused with 400 before anything is written; a failure on our side (the escrow is not committed
yet, the database or Stripe is down, a bug) is a 500 so Stripe tries again later; everything
that was verified and understood is a 200, including events the library does not follow or
that are not about its escrows, so Stripe stops sending them.

Only a request whose signature `handle` verified is applied from its own snapshot. Everything
else (`handle_event`, `replay`) goes through the same checks, but a PaymentIntent it reports as
succeeded is fetched from Stripe before it funds anything.

Thin events (``object: "v2.core.event"``, what Stripe's event destinations send with the thin
payload) are recognised by their shape and verified the same way; they carry no snapshot, so
the account they name is fetched from Stripe by the service before anything is applied
(`bountyescrow.webhooks._thin`).

Every snapshot event's ``api_version`` (the version its endpoint renders objects in) is compared
with the gateway's pinned API version: a difference is logged at WARNING once per version, since
the payload shapes of two versions can differ (`ApiVersionCheck`). Thin events are unversioned.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic
import stripe
from stripe.v2.core import EventNotification

from bountyescrow import _metrics
from bountyescrow.domain.gateway_objects import GatewayEvent
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import ConfigurationError, EventNotReadyError, WebhookPayloadError
from bountyescrow.service import EscrowService
from bountyescrow.webhooks._backfill import BackfillReport, run_backfill
from bountyescrow.webhooks._events import MalformedEventError, StripeEvent, resolve
from bountyescrow.webhooks._response import Failure, WebhookResponse
from bountyescrow.webhooks._signature import (
    SIGNATURE_HEADER,
    Headers,
    SignatureCheckError,
    find_header,
    verify,
)
from bountyescrow.webhooks._thin import ThinEvent, is_thin, resolve_thin, snapshot_only

log = logging.getLogger("bountyescrow.webhooks")

#: Stripe's own default, and what its SDK checks against.
DEFAULT_TOLERANCE = 300
#: Stripe event bodies are a few kilobytes; a dispute with its evidence stays far below this.
DEFAULT_MAX_BODY_BYTES = 256 * 1024


class ApiVersionCheck:
    """Warns, once per version, about events rendered in another API version than the gateway's.

    Stripe renders an event's object in the API version of the endpoint it is sent to (the
    account's default version for an endpoint created without one), and names it in the
    event's ``api_version``. The gateway's requests use its pinned version, and the parsers
    are written for the shapes of that version: an event of another version may carry fields
    renamed, moved or gone (2022-11-15 took a PaymentIntent's ``charges`` and a Charge's
    ``refunds`` out of webhook bodies, for instance). The event is still applied; the warning
    says that the endpoint should be recreated with the gateway's version.

    Args:
        expected: the gateway's pinned API version; None checks nothing.
    """

    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self._warned: set[str] = set()
        # The ASGI mount runs `handle` in worker threads: one warning per version, not per thread.
        self._lock = threading.Lock()

    def check(self, data: Mapping[str, Any], event_id: str, event_type: str) -> None:
        """Log a warning the first time an event of another API version than `expected` arrives.

        Events without a version (null, absent, not a string) are not checked.
        """
        version = data.get("api_version")
        if self.expected is None or not isinstance(version, str) or version == self.expected:
            return
        with self._lock:
            if version in self._warned:
                return
            self._warned.add(version)
        log.warning(
            "webhook event %s (%s) is rendered in Stripe API version %s, the gateway uses %s: "
            "payload shapes may differ; create the webhook endpoints with the gateway's API "
            "version (see docs/webhooks.md, API versions). Logged once per version",
            event_id,
            event_type,
            version,
            self.expected,
            extra={
                "event_id": event_id,
                "event_type": event_type,
                "event_api_version": version,
                "gateway_api_version": self.expected,
            },
        )


def gateway_api_version(gateway: object) -> str | None:
    """The API version `gateway` pins, from its optional ``api_version`` attribute.

    The `PaymentGateway` port does not require one: `StripeGateway` has it (the version of its
    client), other gateways may not, and then no event is checked.
    """
    version = getattr(gateway, "api_version", None)
    return version if isinstance(version, str) and version else None


def _redacted(data: Mapping[str, Any], raw: str) -> str:
    """The payload kept for a failed event: the raw text, minus any client secret.

    A PaymentIntent's ``client_secret`` lets a browser confirm the payment; DESIGN §14 keeps
    it out of storage. Replays do not verify the signature again, so re-serialising is safe.
    """
    obj = data.get("data", {}).get("object", {})
    if not isinstance(obj, Mapping) or not obj.get("client_secret"):
        return raw
    copy = dict(data)
    copy["data"] = {**data["data"], "object": {**obj, "client_secret": None}}
    return json.dumps(copy, separators=(",", ":"))


class WebhookDispatcher:
    """Verifies Stripe webhook requests and applies their events to an `EscrowService`.

    Mount it with `asgi_app` or `wsgi_app`, or call `handle` from a view of any framework with
    the request's **raw** body bytes (not re-serialised JSON: the signature covers the exact
    bytes Stripe sent).

    Args:
        service: the service events are applied to.
        secrets: the endpoints' signing secrets (``whsec_...``); a request signed with any of
            them is accepted. List the platform and the Connect endpoint's secrets, and during
            a rotation the new and the old one.
        tolerance: how old (in seconds) a signature may be; Stripe's default is 300.
        livemode: the mode events must be in; None takes it from ``service.gateway``.
        max_body_bytes: larger bodies are refused before anything is parsed.
        api_version: the Stripe API version events are expected in; an event of another
            version is logged at WARNING, once per version, and still applied. None takes it
            from ``service.gateway.api_version`` where the gateway has that attribute
            (`StripeGateway` does); without one, nothing is checked.

    Raises:
        ConfigurationError: no secrets, a secret that is not a non-empty string, a single
            string instead of a list, a non-positive tolerance or size limit, or an empty
            `api_version`.
    """

    def __init__(
        self,
        service: EscrowService,
        secrets: Sequence[str],
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        livemode: bool | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        api_version: str | None = None,
    ) -> None:
        if isinstance(secrets, str | bytes):
            raise ConfigurationError(
                "secrets must be a list of signing secrets, e.g. secrets=['whsec_...'], "
                "not a single string"
            )
        checked = tuple(secrets)
        if not checked:
            raise ConfigurationError(
                "secrets must list at least one webhook signing secret (whsec_...)"
            )
        if not all(isinstance(s, str) and s.strip() for s in checked):
            raise ConfigurationError("every webhook signing secret must be a non-empty string")
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
            # 0 would switch the SDK's timestamp check off: replayed requests would pass.
            raise ConfigurationError(
                f"tolerance must be a positive number of seconds, got {tolerance!r}"
            )
        if (
            isinstance(max_body_bytes, bool)
            or not isinstance(max_body_bytes, int)
            or max_body_bytes <= 0
        ):
            raise ConfigurationError(
                f"max_body_bytes must be a positive integer, got {max_body_bytes!r}"
            )
        if api_version is not None and (not isinstance(api_version, str) or not api_version):
            raise ConfigurationError(
                f"api_version must be a Stripe API version such as '2024-06-20', got "
                f"{api_version!r}"
            )
        self.service = service
        self._secrets = checked
        self.tolerance = tolerance
        self.livemode = service.gateway.livemode if livemode is None else livemode
        self.max_body_bytes = max_body_bytes
        #: The API version events are expected in (None: not checked).
        self.api_version = (
            gateway_api_version(service.gateway) if api_version is None else api_version
        )
        self._applier = _Applier(service, self.livemode, ApiVersionCheck(self.api_version))

    def __repr__(self) -> str:
        # Never the secrets themselves, not even a prefix.
        return (
            f"WebhookDispatcher(secrets=<{len(self._secrets)} hidden>, "
            f"livemode={self.livemode}, tolerance={self.tolerance})"
        )

    # --- entry points -------------------------------------------------------------------------

    def handle(self, body: bytes, headers: Headers) -> WebhookResponse:
        """Verify one webhook request and apply its event; return the answer to send.

        The event may be a snapshot event (``object: "event"``, a webhook endpoint's) or a
        thin event (``object: "v2.core.event"``, an event destination's); both are signed
        alike, so one endpoint URL and secret list serves both.

        Args:
            body: the request body exactly as received (bytes).
            headers: the request headers: a mapping (looked up case-insensitively) or
                (name, value) pairs.

        Returns:
            200 once the event is applied, was applied before, or is not one the library
            acts on; 400 when the request is not a valid, verified Stripe event of our mode
            (nothing is written); 500 when it should be delivered again later.
        """
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(
                f"body must be the raw request bytes, got {type(body).__name__}: pass the body "
                "as received (request.body, request.get_data(), await request.body())"
            )
        raw = bytes(body)
        if len(raw) > self.max_body_bytes:
            return _refuse(Failure.BODY_TOO_LARGE)
        try:
            header = find_header(headers, SIGNATURE_HEADER)
            if header is None:
                raise SignatureCheckError(Failure.MISSING_SIGNATURE)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return _refuse(Failure.INVALID_BODY)
            verify(text, header, self._secrets, self.tolerance)
        except SignatureCheckError as exc:
            return _refuse(exc.failure)
        try:
            data = json.loads(text)
        except ValueError:
            return _refuse(Failure.INVALID_JSON)
        return self._applier.dispatch(data, text, signed=True)

    def handle_event(self, event: stripe.Event | EventNotification) -> WebhookResponse:
        """Apply an event the host verified itself with ``stripe.Webhook.construct_event``.

        Only the ``stripe.Event`` that the SDK's verification returns is taken. A decoded
        ``dict`` (a framework's parsed JSON body, a ``payload: dict`` parameter) is refused:
        anyone can post one, so it must never move money. Pass the raw request to `handle`
        instead.

        The event is not trusted as far as a signed request is: a PaymentIntent it reports as
        succeeded is fetched from Stripe, and what Stripe says is applied.

        A thin event verified with ``StripeClient.parse_event_notification`` is taken too (the
        ``EventNotification`` it returns): only its ids are read, and the account it names is
        fetched, as for a thin event that came through `handle`.

        Args:
            event: the ``stripe.Event`` from ``stripe.Webhook.construct_event(body, header,
                secret)``, or the ``EventNotification`` from
                ``client.parse_event_notification(body, header, secret)``.

        Returns:
            As `handle`, without the signature checks.

        Raises:
            TypeError: `event` is neither (a dict or any other mapping).
        """
        if isinstance(event, EventNotification):
            return self._applier.dispatch_notification(event)
        if not isinstance(event, stripe.Event):
            raise TypeError(
                f"handle_event takes the stripe.Event returned by stripe.Webhook.construct_event, "
                f"not a {type(event).__name__}: decoded JSON is not verified and must never move "
                "money. Pass the raw request to handle(body, headers) instead, or verify it "
                "with stripe.Webhook.construct_event(body, signature_header, secret) and pass "
                "the stripe.Event it returns"
            )
        try:
            data = event.to_dict(for_json=True)
            text = json.dumps(data, separators=(",", ":"))
            # Round-trip to plain JSON types: what a replay will see is what is applied now.
            decoded = json.loads(text)
        except (TypeError, ValueError):
            return _refuse(Failure.MALFORMED_EVENT)
        return self._applier.dispatch(decoded, text, signed=False)

    def replay(self, event_id: str) -> WebhookResponse:
        """Apply a failed event again from the payload stored when it failed.

        See `replay_event`; the event must be in the dispatcher's mode.
        """
        return self._applier.replay(event_id)

    def backfill(self, *, since: datetime, until: datetime | None = None) -> BackfillReport:
        """Apply the gateway's events of ``[since, until]`` that were missed, oldest first.

        See `backfill_events`, which this runs with the dispatcher's mode.
        """
        return run_backfill(self.service, self._applier, since=since, until=until)


def _refuse(failure: Failure, event_id: str | None = None) -> WebhookResponse:
    # The failure class only: never the header, the body, a secret or the expected signature.
    _metrics.webhook_event("refused")
    log.warning(
        "webhook refused: %s",
        failure.value,
        extra={"webhook_failure": failure.value, "event_id": event_id},
    )
    return WebhookResponse.refused(400, failure)


class _Applier:
    """Verified (or stored) event JSON in, `EscrowService.apply_event` calls out."""

    def __init__(self, service: EscrowService, livemode: bool, versions: ApiVersionCheck) -> None:
        self.service = service
        self.livemode = livemode
        self.versions = versions
        self._warned_thin: set[str] = set()
        self._lock = threading.Lock()

    def replay(self, event_id: str) -> WebhookResponse:
        record = self.service.webhook_event(event_id)
        if record is None:
            log.warning("replay: no event %s in the webhook event log", event_id)
            return WebhookResponse.refused(404, Failure.UNKNOWN_EVENT)
        if record.status is not WebhookStatus.FAILED:
            return WebhookResponse.accepted(record.status.value, record.id)
        if record.payload is None:
            log.warning("replay: event %s failed but its payload was not kept", event_id)
            return WebhookResponse.refused(409, Failure.PAYLOAD_MISSING)
        try:
            data = json.loads(record.payload)
        except ValueError:
            return _refuse(Failure.INVALID_JSON, event_id)
        log.info("replaying webhook event %s", event_id)
        # The stored payload is not re-verified, so it is not trusted to fund: see `dispatch`.
        return self.dispatch(data, record.payload, signed=False)

    def dispatch(self, data: object, raw: str, *, signed: bool) -> WebhookResponse:
        """Apply decoded event JSON; `signed` only when `handle` verified its signature."""
        if not isinstance(data, dict):
            return _refuse(Failure.MALFORMED_EVENT)
        if is_thin(data):
            return self.dispatch_thin(data, raw)
        try:
            event = StripeEvent.model_validate(data)
        except pydantic.ValidationError:
            return _refuse(Failure.MALFORMED_EVENT)
        self.versions.check(data, event.id, event.type)
        if event.livemode != self.livemode:
            if event.account is not None:
                # Stripe sends the Connect events of both modes to a live Connect endpoint
                # (a connected account testing its own integration): not a misconfiguration.
                log.info(
                    "webhook event %s (%s) ignored: other mode, connected account",
                    event.id,
                    event.type,
                    extra={"event_id": event.id, "event_type": event.type},
                )
                _metrics.webhook_event("ignored")
                return WebhookResponse.accepted(WebhookStatus.IGNORED.value, event.id)
            return _refuse(Failure.WRONG_MODE, event.id)
        try:
            resolution = resolve(event)
        except MalformedEventError as exc:
            log.warning("webhook event %s refused: %s", event.id, exc)
            return _refuse(Failure.MALFORMED_EVENT, event.id)
        if not resolution.events:
            log.info(
                "webhook event %s (%s) ignored: %s",
                event.id,
                event.type,
                resolution.ignored,
                extra={"event_id": event.id, "event_type": event.type},
            )
            _metrics.webhook_event("ignored")
            return WebhookResponse.accepted(WebhookStatus.IGNORED.value, event.id)
        return self._apply(resolution.events, event.id, event.type, _redacted(data, raw), signed)

    def dispatch_thin(self, data: Mapping[str, Any], raw: str) -> WebhookResponse:
        """Apply a thin event (an event destination's notification), decoded.

        Its signature, when it came through `handle`, was verified like any other; the
        account it names is fetched by the service, so signed or not makes no difference.
        """
        try:
            event = ThinEvent.model_validate(data)
        except pydantic.ValidationError:
            return _refuse(Failure.MALFORMED_EVENT)
        extra = {"event_id": event.id, "event_type": event.type}
        if event.livemode != self.livemode:
            if event.account() is not None:
                # As for snapshot events: Stripe sends both modes' Connect events to live.
                log.info(
                    "thin event %s (%s) ignored: other mode, connected account",
                    event.id,
                    event.type,
                    extra=extra,
                )
                _metrics.webhook_event("ignored")
                return WebhookResponse.accepted(WebhookStatus.IGNORED.value, event.id)
            return _refuse(Failure.WRONG_MODE, event.id)
        try:
            resolution = resolve_thin(event)
        except MalformedEventError as exc:
            log.warning("thin event %s refused: %s", event.id, exc)
            return _refuse(Failure.MALFORMED_EVENT, event.id)
        if not resolution.events:
            self._snapshot_only(event.type)
            log.info(
                "thin event %s (%s) ignored: %s",
                event.id,
                event.type,
                resolution.ignored,
                extra=extra,
            )
            _metrics.webhook_event("ignored")
            return WebhookResponse.accepted(WebhookStatus.IGNORED.value, event.id)
        return self._apply(resolution.events, event.id, event.type, raw, signed=False)

    def dispatch_notification(self, notification: EventNotification) -> WebhookResponse:
        """Apply a thin event the SDK parsed: its fields back to the JSON Stripe sent."""
        related = getattr(notification, "related_object", None)
        data: dict[str, Any] = {
            "id": notification.id,
            "object": notification.object,
            "type": notification.type,
            "created": notification.created,
            "livemode": notification.livemode,
            "context": str(notification.context) if notification.context else None,
        }
        if related is not None:
            data["related_object"] = {"id": related.id, "type": related.type, "url": related.url}
        return self.dispatch_thin(data, json.dumps(data, separators=(",", ":")))

    def _snapshot_only(self, event_type: str) -> None:
        """Warn, once per type, about a thin event the library follows from snapshots only."""
        if not snapshot_only(event_type):
            return
        with self._lock:
            if event_type in self._warned_thin:
                return
            self._warned_thin.add(event_type)
        log.warning(
            "thin %s events are not applied: the library follows %s from snapshot events "
            "only; send them to a webhook endpoint or a destination with the snapshot payload "
            "(see docs/webhooks.md, Thin events). Logged once per type",
            event_type,
            event_type.removeprefix("v1."),
            extra={"event_type": event_type},
        )

    def _apply(
        self,
        events: Sequence[GatewayEvent],
        event_id: str,
        event_type: str,
        payload: str,
        signed: bool,
    ) -> WebhookResponse:
        statuses: list[WebhookStatus] = []
        for gateway_event in events:
            extra = {"event_id": gateway_event.id, "event_type": event_type}
            try:
                if signed:
                    status = self.service._apply_signed_event(gateway_event, payload=payload)
                else:
                    status = self.service.apply_event(gateway_event, payload=payload)
                statuses.append(status)
                _metrics.webhook_event(status.value)
            except EventNotReadyError:
                # Our metadata names an escrow or operation whose commit has not landed yet:
                # Stripe's redelivery (or `replay`) applies it once it has.
                _metrics.webhook_event("not_ready")
                log.warning(
                    "webhook event %s names an escrow not committed yet; asking for redelivery",
                    gateway_event.id,
                    extra=extra,
                )
                return WebhookResponse.refused(500, Failure.EVENT_NOT_READY)
            except WebhookPayloadError:
                # The gateway's mode differs from the dispatcher's `livemode`.
                return _refuse(Failure.WRONG_MODE, gateway_event.id)
            except Exception:
                # Stripe shows response bodies in its Dashboard: the details go to our log only.
                _metrics.webhook_event("failed")
                log.exception("webhook event %s failed", gateway_event.id, extra=extra)
                return WebhookResponse.refused(500, Failure.INTERNAL_ERROR)
            log.info(
                "webhook event %s (%s): %s",
                gateway_event.id,
                event_type,
                statuses[-1].value,
                extra=extra,
            )
        processed = WebhookStatus.PROCESSED in statuses
        status = WebhookStatus.PROCESSED if processed else WebhookStatus.IGNORED
        return WebhookResponse.accepted(status.value, event_id)


def backfill_events(
    service: EscrowService,
    *,
    since: datetime,
    until: datetime | None = None,
    livemode: bool | None = None,
) -> BackfillReport:
    """Apply the gateway's events created in ``[since, until]``, oldest first, as webhooks.

    Reads the gateway's events list (`PaymentGateway.iter_events`: Stripe's
    ``GET /v1/events``, which keeps 30 days) and feeds each event through the path a
    delivered webhook takes: the same checks, one transaction per event, the event log.
    Events the log holds as processed or ignored are counted as seen and not applied again,
    so it is safe to run repeatedly and with overlapping windows. The events are read with
    the secret key, so they are applied as verified webhooks are; no signing secret is
    needed: this is what ``bountyescrow webhooks backfill`` runs.

    Args:
        service: the service to apply the events to.
        since: the start of the window (timezone-aware), e.g. when the outage began.
        until: its end (timezone-aware); None: up to now.
        livemode: the mode events must be in; None takes it from ``service.gateway``.

    Returns:
        The counts: processed, ignored, failed (kept in the event log as failed, for
        `replay`) and seen.

    Raises:
        ValueError: a naive datetime, or `until` before `since`.
        GatewayError: the events list could not be read (a refused key also raises the
            ``gateway_credentials_refused`` alert). Events applied before stay applied.
    """
    mode = service.gateway.livemode if livemode is None else livemode
    applier = _Applier(service, mode, ApiVersionCheck(gateway_api_version(service.gateway)))
    return run_backfill(service, applier, since=since, until=until)


def replay_event(
    service: EscrowService, event_id: str, *, livemode: bool | None = None
) -> WebhookResponse:
    """Apply a failed event again from the payload stored when it failed.

    No signature is checked (the payload was verified when it arrived), so no secret is
    needed: this is what ``bountyescrow webhooks replay`` runs.

    Args:
        service: the service whose event log holds the event.
        event_id: an id from the event log: a Stripe event id, or ``<event id>:<refund id>``
            for one refund of a ``charge.refunded`` event (replaying it replays the whole
            event; its refunds already logged change nothing).
        livemode: the mode the event must be in; None takes it from ``service.gateway``.

    Returns:
        404 ``unknown_event`` when the log has no such event; 200 with its status when it did
        not fail (nothing is applied again); 409 ``payload_missing`` when no payload was kept;
        otherwise the answer the event gets now (200, 400 or 500, as for `handle`).
    """
    mode = service.gateway.livemode if livemode is None else livemode
    versions = ApiVersionCheck(gateway_api_version(service.gateway))
    return _Applier(service, mode, versions).replay(event_id)
