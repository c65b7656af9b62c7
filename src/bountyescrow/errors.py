"""Every error bountyescrow raises derives from `BountyEscrowError`.

`retryable` tells a host whether calling again *with the same idempotency key* may succeed.
Errors raised before anything was written are the only retryable ones from the service; once an
operation is recorded, an unknown gateway outcome is returned as a pending `Operation` instead.
"""

from __future__ import annotations


class BountyEscrowError(Exception):
    """Root of all bountyescrow errors."""

    retryable: bool = False

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take keyword-only arguments, which default pickling cannot pass; hosts
        # running the service in worker processes (Celery, process pools) need to pickle them.
        return (_rebuild, (type(self), self.message, self.details, self.__dict__))


def _rebuild(
    cls: type[BountyEscrowError],
    message: str,
    details: dict[str, object],
    state: dict[str, object],
) -> BountyEscrowError:
    error = cls.__new__(cls)
    BountyEscrowError.__init__(error, message, **details)
    error.__dict__.update(state)
    return error


# --- input and domain -----------------------------------------------------------------------


class ValidationError(BountyEscrowError, ValueError):
    """An argument is malformed: wrong currency, float amount, negative or over-limit amount."""


class EscrowNotFoundError(BountyEscrowError, LookupError):
    """No escrow (or operation) with that id exists."""


class OperationNotFoundError(EscrowNotFoundError):
    """No operation with that id exists."""


class PayeeNotFoundError(BountyEscrowError, LookupError):
    """The payee has not been registered with `register_payee`."""


class EscrowExistsError(BountyEscrowError):
    """An escrow for this (bounty, poster) is already awaiting funding or holding money."""

    def __init__(self, message: str, *, existing_id: str) -> None:
        super().__init__(message, existing_id=existing_id)
        self.existing_id = existing_id


class InvalidTransitionError(BountyEscrowError):
    """The command is not allowed in the escrow's or operation's current state."""

    def __init__(self, message: str, *, current: str, attempted: str) -> None:
        super().__init__(message, current=current, attempted=attempted)
        self.current = current
        self.attempted = attempted


class InsufficientFundsError(BountyEscrowError):
    """The command asks for more than is available."""

    def __init__(self, message: str, *, available: object, requested: object) -> None:
        super().__init__(message, available=available, requested=requested)
        self.available = available
        self.requested = requested


class EscrowFrozenError(BountyEscrowError):
    """A dispute or fraud warning is open: no release, refund or reversal may start."""


class PermissionDeniedError(BountyEscrowError, PermissionError):
    """The actor may not perform this action. The denial is audited."""


class IdempotencyConflictError(BountyEscrowError):
    """The idempotency key was used before with other parameters. Use a new key."""


class IdempotencyInProgressError(BountyEscrowError):
    """A call with this idempotency key is still running. Retry later with the same key."""

    retryable = True


class ReversalFailedError(BountyEscrowError):
    """A transfer reversal failed (the payee's balance no longer covers it)."""

    def __init__(self, message: str, *, shortfall: object, operation_id: str | None) -> None:
        super().__init__(message, shortfall=shortfall, operation_id=operation_id)
        self.shortfall = shortfall
        self.operation_id = operation_id


class ConfigurationError(BountyEscrowError):
    """The library is set up wrongly (settings, keys, missing extra)."""


# --- gateway --------------------------------------------------------------------------------


class GatewayError(BountyEscrowError):
    """The payment gateway refused or could not answer a request.

    `outcome_unknown` is true when the request may have taken effect (timeouts, connection
    errors, 5xx, rate limits): the operation stays pending and is re-driven by `recover()`.
    `replayed` is true when the gateway replayed a stored answer for the idempotency key.
    """

    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        replayed: bool = False,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id)
        self.code = code
        self.request_id = request_id
        self.replayed = replayed


class GatewayUnavailableError(GatewayError):
    """Timeout, connection failure, rate limit or server error: the outcome is unknown."""

    outcome_unknown = True
    retryable = True


class GatewayRejectedError(GatewayError):
    """The gateway refused the request definitively (invalid request, card declined...)."""


class PaymentDeclinedError(GatewayRejectedError):
    """The payer's card or bank declined the payment."""


class DestinationNotReadyError(GatewayRejectedError):
    """The payee's connected account cannot receive transfers yet."""


class InsufficientPayeeBalanceError(GatewayRejectedError):
    """A reversal was refused: the payee's balance no longer covers it."""


class PaymentAlreadySettledError(GatewayRejectedError):
    """A PaymentIntent could not be cancelled because it already succeeded or is processing."""


class IdempotencyMismatchError(GatewayError):
    """The gateway saw this key with other parameters. A bug: the operation stays pending."""

    outcome_unknown = True


class IdempotencyKeyInUseError(GatewayError):
    """Another request with this idempotency key is still running at the gateway (Stripe's 409
    ``idempotency_key_in_use``, which the SDK's own retries can cause).

    The outcome is unknown: the other request may move the money. Not a bug and not an alert;
    the operation stays pending and is looked at again after a short backoff.
    """

    outcome_unknown = True


class PlatformBalanceInsufficientError(GatewayError):
    """The platform's gateway balance cannot cover a transfer (``balance_insufficient``).

    The escrowed money was paid out of the platform balance (a reserve breach): nothing moved,
    the release stays pending with a backoff and an alert is raised, so it goes out once the
    balance is topped up. `outcome_unknown` is false: nothing moved under this key.
    """


class GatewayAuthenticationError(GatewayError, ConfigurationError):
    """The gateway refused our credentials: a configuration error, not a payment outcome."""


# --- storage and webhooks -------------------------------------------------------------------


class StorageError(BountyEscrowError):
    """The database failed. Nothing half-written stays; a pending operation stays recoverable."""

    retryable = True


class WebhookError(BountyEscrowError):
    """A webhook request could not be accepted."""


class SignatureVerificationError(WebhookError):
    """The Stripe-Signature header is missing, malformed, stale or does not match."""


class WebhookPayloadError(WebhookError):
    """The verified event is malformed or of the wrong mode."""


class EventNotReadyError(WebhookError):
    """The event names an escrow that is not committed yet: Stripe should redeliver it."""

    retryable = True


__all__ = [
    "BountyEscrowError",
    "ConfigurationError",
    "DestinationNotReadyError",
    "EscrowExistsError",
    "EscrowFrozenError",
    "EscrowNotFoundError",
    "EventNotReadyError",
    "GatewayAuthenticationError",
    "GatewayError",
    "GatewayRejectedError",
    "GatewayUnavailableError",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "IdempotencyKeyInUseError",
    "IdempotencyMismatchError",
    "InsufficientFundsError",
    "InsufficientPayeeBalanceError",
    "InvalidTransitionError",
    "OperationNotFoundError",
    "PayeeNotFoundError",
    "PaymentAlreadySettledError",
    "PaymentDeclinedError",
    "PermissionDeniedError",
    "PlatformBalanceInsufficientError",
    "ReversalFailedError",
    "SignatureVerificationError",
    "StorageError",
    "ValidationError",
    "WebhookError",
    "WebhookPayloadError",
]
