"""The one place where Stripe's exceptions become bountyescrow's gateway errors.

Every Stripe call in the adapter runs inside `translated(action)`; no `stripe.*` exception
leaves the adapter, and every translated error keeps the original as `__cause__`.

Anything we cannot classify counts as "outcome unknown" (`GatewayUnavailableError`): treating
an unknown failure as definitive could mark an operation failed while the money moved, whereas
an unknown outcome only keeps it pending until a look-up or a retry with the same key settles it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import stripe

from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayAuthenticationError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    IdempotencyKeyInUseError,
    IdempotencyMismatchError,
    InsufficientPayeeBalanceError,
    PaymentAlreadySettledError,
    PaymentDeclinedError,
    PlatformBalanceInsufficientError,
)

LOGGER: Final = logging.getLogger("bountyescrow.stripe")

#: Codes saying the transfer's destination account cannot receive money (yet).
DESTINATION_NOT_READY_CODES: Final = frozenset(
    {"account_invalid", "transfers_not_allowed", "insufficient_capabilities_for_transfer"}
)
#: Codes saying a balance does not cover the request (for a reversal: the payee's balance).
INSUFFICIENT_BALANCE_CODES: Final = frozenset({"balance_insufficient", "insufficient_funds"})
#: A transfer the platform's balance does not cover (``source_transaction`` only protects the
#: charge's money while it is unsettled; once settled, it may have been paid out).
PLATFORM_BALANCE_INSUFFICIENT: Final = "balance_insufficient"
#: Cancelling a PaymentIntent that succeeded, is processing or was already cancelled.
UNEXPECTED_STATE: Final = "payment_intent_unexpected_state"
#: Another request with the same key is still running at Stripe (HTTP 409).
KEY_IN_USE: Final = "idempotency_key_in_use"


@contextmanager
def translated(action: str, *, idempotency_key: str | None = None) -> Iterator[None]:
    """Run a Stripe call; re-raise any Stripe exception as a `GatewayError` (``from`` it)."""
    try:
        yield
    except stripe.StripeError as exc:
        raise translate(exc, action=action, idempotency_key=idempotency_key) from exc


def translate(
    exc: stripe.StripeError, *, action: str, idempotency_key: str | None = None
) -> GatewayError:
    """Return the bountyescrow error for a Stripe exception raised while doing `action`."""
    body = _error_body(exc)
    message = str(exc.user_message or body.get("message") or type(exc).__name__)
    code = exc.code or _str_or_none(body.get("code"))
    request_id = _request_id(exc)
    replayed = _header(exc, "idempotent-replayed") == "true"
    where = f"(Stripe {action}; code {code or '-'}; request {request_id or '-'})"
    fields: dict[str, Any] = {"code": code, "request_id": request_id, "replayed": replayed}

    if code == KEY_IN_USE:
        # Checked before the idempotency_error type, which Stripe also gives it: a request
        # with the key still runs (the SDK's own retry of a slow request can cause this). Not
        # a bug; that request may still move the money, so the outcome is unknown.
        LOGGER.warning(
            "Stripe is still running another request with key %s (%s, request %s): %s",
            idempotency_key,
            action,
            request_id,
            message,
        )
        return IdempotencyKeyInUseError(
            f"another request with this idempotency key is still running at Stripe: {message} "
            f"{where}. The outcome is unknown: retry with the same key shortly.",
            **fields,
        )
    if isinstance(exc, stripe.IdempotencyError) or body.get("type") == "idempotency_error":
        # An error, not an alert: the service raises the alert, naming the operation.
        LOGGER.error(
            "Stripe idempotency mismatch on %s, key %s, request %s: %s. The key was sent "
            "with other parameters; this is a bug. Find the object at Stripe before resending "
            "anything.",
            action,
            idempotency_key,
            request_id,
            message,
        )
        return IdempotencyMismatchError(f"{message} {where}", **fields)
    if isinstance(exc, stripe.CardError):
        decline = _str_or_none(body.get("decline_code"))
        extra = f" (decline code {decline})" if decline else ""
        return PaymentDeclinedError(f"payment declined: {message}{extra} {where}", **fields)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayAuthenticationError(
            f"Stripe refused the API key: {message} {where}. Check the key (sk_/rk_, test or "
            f"live) and, for a restricted key, its permissions.",
            **fields,
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return _invalid_request(action, message, where, fields)
    # RateLimitError, APIConnectionError (timeouts included), 5xx and anything unclassified.
    status = exc.http_status
    if status is None:
        what = f"Stripe {action} got no answer (connection error or timeout)"
    elif replayed:
        what = f"Stripe replayed the HTTP {status} it stored for this key on {action}"
    else:
        what = f"Stripe {action} failed with HTTP {status}"
    return GatewayUnavailableError(
        f"{what}: {message} {where}. The outcome is unknown: look the object up, or retry "
        f"with the same idempotency key.",
        **fields,
    )


def reported_intent_status(error: BaseException) -> str | None:
    """Return the PaymentIntent status a Stripe error carried, when the cause was a Stripe error.

    A ``payment_intent_unexpected_state`` error includes the intent: a cancel that failed
    because the intent is already cancelled is then a success, not a settled payment.
    """
    cause = error.__cause__
    if not isinstance(cause, stripe.StripeError):
        return None
    intent = _error_body(cause).get("payment_intent")
    if isinstance(intent, Mapping):
        return _str_or_none(intent.get("status"))
    return None


def _invalid_request(action: str, message: str, where: str, fields: dict[str, Any]) -> GatewayError:
    code = fields["code"]
    lowered = message.lower()
    if action == "create_transfer" and (
        code in DESTINATION_NOT_READY_CODES
        or ("destination" in lowered and "capabilit" in lowered and "transfers" in lowered)
    ):
        return DestinationNotReadyError(
            f"the payee's connected account cannot receive transfers yet: {message} {where}",
            **fields,
        )
    if action == "create_transfer" and code == PLATFORM_BALANCE_INSUFFICIENT:
        return PlatformBalanceInsufficientError(
            f"the platform's Stripe balance does not cover the transfer: {message} {where}. "
            f"Escrowed money has left the balance (a payout?): top the balance up; the "
            f"release is sent again later.",
            **fields,
        )
    if action == "create_reversal" and (
        code in INSUFFICIENT_BALANCE_CODES or "insufficient funds" in lowered
    ):
        return InsufficientPayeeBalanceError(
            f"the payee's Stripe balance does not cover the reversal: {message} {where}",
            **fields,
        )
    if action == "cancel_payment" and code == UNEXPECTED_STATE:
        return PaymentAlreadySettledError(
            f"the PaymentIntent can no longer be cancelled: {message} {where}. Fetch it and "
            f"apply its state.",
            **fields,
        )
    return GatewayRejectedError(f"Stripe refused {action}: {message} {where}", **fields)


def _error_body(exc: stripe.StripeError) -> Mapping[str, Any]:
    body = exc.json_body
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return error
    return {}


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Return a response header by lower-case `name`, whatever the HTTP client's mapping."""
    if not headers:
        return None
    # httpx and requests give case-insensitive headers; another HTTP client may not.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return _str_or_none(value)


def _header(exc: stripe.StripeError, name: str) -> str | None:
    return header(exc.headers, name)


def _request_id(exc: stripe.StripeError) -> str | None:
    return _str_or_none(exc.request_id) or _header(exc, "request-id")


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
