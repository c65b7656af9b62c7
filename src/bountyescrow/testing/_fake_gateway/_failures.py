"""Failure injection: the failures `FakeGateway.fail_next` can queue, per kind of call, and
the errors they become when a keyed call meets them.

Nothing here holds state: `_refuse` and `_failure_at_once` only turn a mode into an error, and
the keyed-call machinery (`_idempotency`) decides when a queued mode is used up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Literal, NoReturn

import attrs

from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    IdempotencyKeyInUseError,
    IdempotencyMismatchError,
    InsufficientPayeeBalanceError,
    PaymentDeclinedError,
    PlatformBalanceInsufficientError,
)

#: Which call `FakeGateway.fail_next` makes fail.
FailureKind = Literal["payment", "cancel", "transfer", "refund", "reversal", "account"]
#: How it fails; see `FakeGateway.fail_next`.
FailureMode = Literal[
    "declined",
    "invalid",
    "unavailable",
    "server_error",
    "timeout_after_effect",
    "destination_not_ready",
    "insufficient_balance",
    "idempotency_mismatch",
    "key_in_use",
    "balance_insufficient",
    "pending",
]

_COMMON_MODES: Final = frozenset(
    {"declined", "invalid", "unavailable", "server_error", "timeout_after_effect",
     "idempotency_mismatch", "key_in_use"}
)  # fmt: skip
#: Failures that hit the very next call, a replay included: Stripe answers them before it
#: looks at what is stored under the key.
_AT_ONCE: Final = frozenset({"unavailable", "idempotency_mismatch", "key_in_use"})
_MODES_BY_KIND: Final[Mapping[str, frozenset[str]]] = {
    "payment": _COMMON_MODES,
    "cancel": _COMMON_MODES,
    "transfer": _COMMON_MODES
    | {"destination_not_ready", "insufficient_balance", "balance_insufficient"},
    "refund": _COMMON_MODES | {"insufficient_balance", "pending"},
    "reversal": _COMMON_MODES | {"insufficient_balance"},
    "account": _COMMON_MODES,
}


@attrs.frozen
class _StoredError:
    """An error answer kept under an idempotency key, raised again on replay."""

    cls: type[GatewayError]
    message: str
    code: str | None

    def build(self, *, replayed: bool, request_id: str) -> GatewayError:
        return self.cls(self.message, code=self.code, request_id=request_id, replayed=replayed)


class _StoreError(Exception):
    """Raised inside a keyed call: store `error` under the key, then raise it."""

    def __init__(self, error: _StoredError) -> None:
        super().__init__(error.message)
        self.error = error


def _raising(error: GatewayError) -> Callable[[], NoReturn]:
    def answer() -> NoReturn:
        raise error

    return answer


def _failure_at_once(mode: str, key: str, request_id: str) -> GatewayError:
    """The error of a failure Stripe answers before looking at the key's stored answer."""
    if mode == "unavailable":
        return GatewayUnavailableError(
            "Could not connect to Stripe (simulated network error).",
            code="connection_error",
            request_id=None,
        )
    if mode == "key_in_use":
        return IdempotencyKeyInUseError(
            f"There is currently another in-progress request using this idempotency key "
            f"({key!r}); the other request is still going through. Try again later.",
            code="idempotency_key_in_use",
            request_id=request_id,
        )
    return IdempotencyMismatchError(
        f"Keys for idempotent requests can only be used with the same parameters "
        f"they were first used with (simulated, key {key!r}).",
        code="idempotency_error",
        request_id=request_id,
    )


def _refuse(kind: str, mode: str | None) -> None:
    """Raise the failure `mode` asks for, before any effect (or do nothing)."""
    if mode is None or mode in ("timeout_after_effect", "pending"):
        return
    if mode == "server_error":
        raise _StoreError(
            _StoredError(
                GatewayUnavailableError,
                "An unknown error occurred (simulated 500).",
                "api_error",
            )
        )
    if mode == "declined":
        if kind == "payment":
            raise _StoreError(
                _StoredError(PaymentDeclinedError, "Your card was declined.", "card_declined")
            )
        raise _StoreError(
            _StoredError(GatewayRejectedError, f"The {kind} was declined.", "declined")
        )
    if mode == "destination_not_ready":
        raise DestinationNotReadyError(
            "Your destination account needs to have at least one of the following "
            "capabilities enabled: transfers, crypto_transfers, legacy_payments "
            "(simulated).",
            code="insufficient_capabilities_for_transfer",
        )
    if mode == "balance_insufficient" or (mode == "insufficient_balance" and kind == "transfer"):
        raise PlatformBalanceInsufficientError(
            "Insufficient funds in Stripe account. The platform balance does not cover "
            "this transfer (simulated).",
            code="balance_insufficient",
        )
    if mode == "insufficient_balance":
        if kind == "reversal":
            raise InsufficientPayeeBalanceError(
                "Insufficient funds in the destination account (simulated).",
                code="balance_insufficient",
            )
        raise GatewayRejectedError(
            "You have insufficient available funds in your Stripe account (simulated).",
            code="balance_insufficient",
        )
    raise GatewayRejectedError(f"Invalid {kind} request (simulated).", code="parameter_invalid")
