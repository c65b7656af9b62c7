"""`FakeGateway`: a deterministic, in-memory stand-in for Stripe.

It implements `bountyescrow.ports.gateway.PaymentGateway` and behaves like Stripe where the
library's correctness depends on it:

- **Idempotency keys.** The same key and request replay the first answer, a stored 500
  included (`GatewayUnavailableError` with ``replayed=True``); the same key with another request
  raises `IdempotencyMismatchError`; the same key while a first call with it is still running
  (another thread, or a call made from inside it) raises `IdempotencyKeyInUseError`, as
  Stripe's 409 does; keys are forgotten 24 h after first use (by the injected clock). As on
  Stripe, an answer is stored only once the request started executing: a definitive error
  from validation (destination not ready, amount beyond what is refundable or reversible,
  PaymentIntent in the wrong state) is not stored, so the same key works once the cause is
  gone; card declines and server errors are stored.
- **Money rules.** A transfer needs a destination whose ``transfers`` capability is active and,
  with ``source_transaction``, an existing charge in the same currency that still covers it; a
  refund cannot exceed the charge minus earlier refunds, nor touch a charge under a chargeback;
  a reversal cannot exceed what is left of the transfer nor the connected account's balance;
  a PaymentIntent that succeeded or is processing cannot be cancelled. Amounts and metadata
  Stripe refuses (three-decimal currencies not ending in 0, values over 500 characters...)
  are refused before anything happens, by the rules `StripeGateway` uses
  (`bountyescrow.ports.gateway.check_amount`, `check_metadata`), with `RequestRefusedError`.
- **Events.** Everything that happens, through the API or through the control methods a test
  calls (`pay`, `open_dispute`, `refund_outside`...), queues the events Stripe would send to a
  bountyescrow endpoint, both as `GatewayEvent` values (for ``deliver(service)``) and as
  Stripe-shaped JSON signed like Stripe (for ``deliver(dispatcher)``).
- **Movements.** `movements` lists every transfer, refund and reversal that took effect, so a
  test can assert "one movement per operation" however many retries and crashes happened.

Ids are deterministic per instance: ``pi_0001``, ``ch_0001``, ``tr_0001``, ``evt_0001``...
Every method is safe to call from several threads at once.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NoReturn, TypeVar, cast
from urllib.parse import urlencode

import attrs

from bountyescrow.domain.gateway_objects import (
    META_OPERATION,
    META_PAYEE,
    AccountSnapshot,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    DisputeSnapshot,
    FraudWarningSnapshot,
    GatewayEvent,
    GatewayObject,
    PaymentSnapshot,
    PayoutSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
    request_to_dict,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import (
    DestinationNotReadyError,
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
from bountyescrow.ports.clock import Clock, SystemClock
from bountyescrow.ports.gateway import check_amount, check_metadata
from bountyescrow.testing import _fake_stripe_json as sj
from bountyescrow.testing._fake_stripe_json import (
    JSON,
    AccountRecord,
    BalanceTransactionRecord,
    ChargeRecord,
    DisputeRecord,
    FraudWarningRecord,
    PaymentIntentRecord,
    PayoutRecord,
    RefundRecord,
    ReversalRecord,
    TransferRecord,
)

__all__ = [
    "FailureKind",
    "FailureMode",
    "FakeControlError",
    "FakeGateway",
    "Movement",
]

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
#: Where a keyed call is when `FakeGateway`'s call hooks run: ``"before"`` it takes effect
#: (its key is in use), ``"after"`` (the answer is stored and on its way back: the key
#: replays it).
CallPhase = Literal["before", "after"]
#: A call hook: ``hook(kind, idempotency_key, phase)``, run without the fake's lock.
CallHook = Callable[[str, str, CallPhase], None]

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
#: Stripe forgets idempotency keys after 24 hours.
KEY_LIFETIME: Final = timedelta(hours=24)
#: What `FakeGateway.max_call_duration` says unless told otherwise.
DEFAULT_MAX_CALL_DURATION: Final = timedelta(seconds=5)
#: What Stripe charges for a dispute, in minor units (the US fee; the fake uses it everywhere).
DISPUTE_FEE: Final = 1500
#: Metadata key naming the payee on the connected accounts the fake creates.
_UNEXPECTED_STATE: Final = "payment_intent_unexpected_state"
_PAYABLE: Final = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "processing"}
)
_EURO_COUNTRIES: Final = frozenset(
    {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV",
     "MT", "NL", "PT", "SI", "SK"}
)  # fmt: skip
_COUNTRY_CURRENCY: Final[Mapping[str, str]] = {
    "US": "usd", "CA": "cad", "GB": "gbp", "AU": "aud", "NZ": "nzd", "JP": "jpy", "SG": "sgd",
    "HK": "hkd", "CH": "chf", "SE": "sek", "NO": "nok", "DK": "dkk", "PL": "pln", "CZ": "czk",
    "HU": "huf", "RO": "ron", "BG": "bgn", "MX": "mxn", "BR": "brl", "IN": "inr", "TH": "thb",
    "MY": "myr", "AE": "aed",
}  # fmt: skip

_T = TypeVar("_T")


@attrs.frozen
class Movement:
    """One transfer, refund or reversal that took effect at the (fake) gateway.

    Attributes:
        kind: ``"transfer"``, ``"refund"`` or ``"reversal"``.
        amount: what moved.
        operation_id: the ``bountyescrow_operation_id`` metadata of the object, or None for
            one made outside the library (`FakeGateway.refund_outside`, `reverse_outside`).
        ref: the gateway object's id (``tr_0001``, ``re_0001``, ``trr_0001``).
        status: the object's current status; a refund may be ``pending`` or ``failed``.
    """

    kind: str
    amount: Money
    operation_id: str | None
    ref: str
    status: str = "succeeded"


@attrs.frozen
class _StoredError:
    """An error answer kept under an idempotency key, raised again on replay."""

    cls: type[GatewayError]
    message: str
    code: str | None

    def build(self, *, replayed: bool, request_id: str) -> GatewayError:
        return self.cls(self.message, code=self.code, request_id=request_id, replayed=replayed)


@attrs.define
class _KeyEntry:
    fingerprint: str
    first_used: datetime
    answer: object = None
    error: _StoredError | None = None


@attrs.frozen
class _Queued:
    event: GatewayEvent
    payload: JSON


class _StoreError(Exception):
    """Raised inside a keyed call: store `error` under the key, then raise it."""

    def __init__(self, error: _StoredError) -> None:
        super().__init__(error.message)
        self.error = error


def _metadata_op(metadata: Mapping[str, str]) -> str | None:
    return metadata.get(META_OPERATION)


def _raising(error: GatewayError) -> Callable[[], NoReturn]:
    def answer() -> NoReturn:
        raise error

    return answer


class FakeControlError(ValueError):
    """A test control of `FakeGateway` does not apply: unknown object, wrong state, more than
    is left. `code` is the code Stripe gives the same refusal (``resource_missing``,
    ``payment_intent_unexpected_state``...).

    It is a `ValueError` on purpose, not a `GatewayError`: it reports a mistake in the test's
    script, never something the library under test should handle.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _control_error(message: str, code: str) -> NoReturn:
    raise FakeControlError(message, code=code)


@contextmanager
def _as_control_error() -> Iterator[None]:
    """Report a refusal met while driving the fake as the test's mistake, not the library's."""
    try:
        yield
    except GatewayRejectedError as exc:
        raise FakeControlError(exc.message, code=exc.code or "invalid_request") from exc


class FakeGateway:
    """A deterministic, in-memory Stripe for tests: a `PaymentGateway` with test controls.

    Args:
        webhook_secret: the endpoint secret event bodies are signed with (give the same one to
            `WebhookDispatcher`).
        clock: the time used for ``created`` fields and to forget idempotency keys after 24 h
            (default: the wall clock).
        livemode: what the snapshots and events say; tests keep the default, False.
        platform_country: the platform's country; accounts in another country get the
            ``recipient`` service agreement, as bountyescrow requests them.
        signing_clock: the time webhook signatures carry (default: the wall clock, which is
            what the Stripe SDK checks the 300 s tolerance against).
        max_call_duration: what `max_call_duration` says (default 5 s); the service's lease
            must be at least this long.
    """

    def __init__(
        self,
        webhook_secret: str = "whsec_test",
        *,
        clock: Clock | None = None,
        livemode: bool = False,
        platform_country: str = "US",
        signing_clock: Clock | None = None,
        max_call_duration: timedelta = DEFAULT_MAX_CALL_DURATION,
    ) -> None:
        if not webhook_secret:
            raise ValueError("webhook_secret must not be empty (use e.g. 'whsec_test')")
        if not isinstance(max_call_duration, timedelta) or max_call_duration <= timedelta(0):
            raise ValueError(
                f"max_call_duration must be a positive timedelta, got {max_call_duration!r}"
            )
        self._max_call_duration = max_call_duration
        self.webhook_secret = webhook_secret
        self.platform_country = platform_country.upper()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._signing_clock: Clock = signing_clock if signing_clock is not None else SystemClock()
        self._livemode = livemode
        self._lock = threading.RLock()
        self._counters: dict[str, int] = {}
        self._keys: dict[str, _KeyEntry] = {}
        #: Keys of calls Stripe is still executing (it answers 409 to a second one).
        self._in_flight: set[str] = set()
        #: Run during every keyed call, without the lock (see `CallHook`).
        self._call_hooks: list[CallHook] = []
        self._failures: dict[str, deque[str]] = {kind: deque() for kind in _MODES_BY_KIND}
        self._hold_refunds = False
        self._queue: list[_Queued] = []
        self._movements: list[tuple[str, object]] = []
        self._payments: dict[str, PaymentIntentRecord] = {}
        self._charges: dict[str, ChargeRecord] = {}
        self._refunds: dict[str, RefundRecord] = {}
        self._transfers: dict[str, TransferRecord] = {}
        self._reversals: dict[str, ReversalRecord] = {}
        self._disputes: dict[str, DisputeRecord] = {}
        self._accounts: dict[str, AccountRecord] = {}

    # --- PaymentGateway: properties and reads -----------------------------------------------

    @property
    def livemode(self) -> bool:
        """False unless the fake was built with ``livemode=True``."""
        return self._livemode

    @property
    def max_call_duration(self) -> timedelta:
        """The longest one call is said to take (the ``max_call_duration`` it was built with)."""
        return self._max_call_duration

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        """Fetch a PaymentIntent.

        Raises:
            GatewayRejectedError: no such PaymentIntent (code ``resource_missing``).
        """
        with self._lock:
            return self._payment_snapshot(self._pi(payment_ref))

    def get_refund(self, refund_ref: str) -> RefundSnapshot:
        """Fetch a refund.

        Raises:
            GatewayRejectedError: no such refund.
        """
        with self._lock:
            return self._refund_snapshot(self._get(self._refunds, refund_ref, "refund"))

    def get_dispute(self, dispute_ref: str) -> DisputeSnapshot:
        """Fetch a dispute; withdrawn and reinstated totals come from its balance transactions.

        Raises:
            GatewayRejectedError: no such dispute.
        """
        with self._lock:
            return self._dispute_snapshot(self._get(self._disputes, dispute_ref, "dispute"))

    def get_account(self, account_ref: str) -> AccountSnapshot:
        """Fetch a connected account's readiness.

        Raises:
            GatewayRejectedError: no such account.
        """
        with self._lock:
            return self._account_snapshot(self._account(account_ref))

    def get_transfer(self, transfer_ref: str) -> TransferSnapshot:
        """Fetch a transfer with its reversals.

        Raises:
            GatewayRejectedError: no such transfer.
        """
        with self._lock:
            return self._transfer_snapshot(self._get(self._transfers, transfer_ref, "transfer"))

    def find_transfer(self, *, transfer_group: str, operation_id: str) -> TransferSnapshot | None:
        """Return the oldest transfer in `transfer_group` whose metadata names `operation_id`."""
        with self._lock:
            for transfer in self._transfers.values():
                if (
                    transfer.transfer_group == transfer_group
                    and _metadata_op(transfer.metadata) == operation_id
                ):
                    return self._transfer_snapshot(transfer)
            return None

    def find_refund(self, *, payment_ref: str, operation_id: str) -> RefundSnapshot | None:
        """Return the oldest refund of the PaymentIntent whose metadata names `operation_id`."""
        with self._lock:
            for refund in self._refunds.values():
                if (
                    refund.payment_intent == payment_ref
                    and _metadata_op(refund.metadata) == operation_id
                ):
                    return self._refund_snapshot(refund)
            return None

    def find_reversal(self, *, transfer_ref: str, operation_id: str) -> ReversalSnapshot | None:
        """Return the oldest reversal of the transfer whose metadata names `operation_id`."""
        with self._lock:
            transfer = self._transfers.get(transfer_ref)
            if transfer is None:
                return None
            for reversal in transfer.reversals:
                if _metadata_op(reversal.metadata) == operation_id:
                    return self._reversal_snapshot(reversal)
            return None

    # --- PaymentGateway: keyed calls --------------------------------------------------------

    def create_payment(self, request: CreatePayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Create a PaymentIntent (status ``requires_payment_method``, with a client secret).

        Raises:
            RequestRefusedError: an amount or metadata Stripe refuses (below the minimum
                charge, say); nothing happened.
            GatewayRejectedError: a failure set with `fail_next`.
            GatewayUnavailableError, IdempotencyMismatchError, IdempotencyKeyInUseError: see
                the class docstring.
        """
        check_amount(request.action, request.amount, charge=True)
        check_metadata(request.action, request.metadata)

        def execute(mode: str | None) -> PaymentSnapshot:
            ref = self._next_id("pi")
            pi = PaymentIntentRecord(
                id=ref,
                amount=request.amount,
                created=self._ts(),
                client_secret=self._client_secret(ref),
                transfer_group=request.transfer_group,
                metadata=dict(request.metadata),
                payment_method_types=list(request.payment_method_types),
                description=request.description,
                receipt_email=request.receipt_email,
            )
            self._payments[ref] = pi
            return self._payment_snapshot(pi)

        return self._keyed("payment", idempotency_key, request_to_dict(request), execute)

    def cancel_payment(self, request: CancelPayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Cancel a PaymentIntent that has not succeeded; queues ``payment_intent.canceled``.

        Raises:
            PaymentAlreadySettledError: the PaymentIntent succeeded or is processing.
            GatewayRejectedError: no such PaymentIntent, or it is cancelled already.
        """

        def execute(mode: str | None) -> PaymentSnapshot:
            pi = self._pi(request.payment_ref)
            if pi.status in ("succeeded", "processing"):
                raise PaymentAlreadySettledError(
                    f"You cannot cancel this PaymentIntent because it has a status of {pi.status}.",
                    code="payment_intent_unexpected_state",
                )
            if pi.status == "canceled":
                raise GatewayRejectedError(
                    "You cannot cancel this PaymentIntent because it has a status of canceled.",
                    code="payment_intent_unexpected_state",
                )
            self._cancel(pi, reason="requested_by_customer")
            return self._payment_snapshot(pi)

        return self._keyed("cancel", idempotency_key, request_to_dict(request), execute)

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        """Transfer to a connected account; queues ``transfer.created``.

        Raises:
            DestinationNotReadyError: the account's ``transfers`` capability is not active.
            PlatformBalanceInsufficientError: set with ``fail_next("transfer",
                "balance_insufficient")``: the platform balance does not cover it.
            RequestRefusedError: an amount or metadata Stripe refuses; nothing happened.
            GatewayRejectedError: unknown destination or source charge, currency other than
                the source charge's, or more than the source charge has left.
        """
        check_amount(request.action, request.amount)
        check_metadata(request.action, request.metadata)

        def execute(mode: str | None) -> TransferSnapshot:
            transfer = self._transfer(request)
            return self._transfer_snapshot(transfer)

        return self._keyed("transfer", idempotency_key, request_to_dict(request), execute)

    def create_refund(self, request: CreateRefund, *, idempotency_key: str) -> RefundSnapshot:
        """Refund (part of) a PaymentIntent; queues ``refund.created`` and ``charge.refunded``.

        The refund is ``pending`` while `hold_refunds` is on or after ``fail_next("refund",
        "pending")``, else ``succeeded``.

        Raises:
            RequestRefusedError: an amount or metadata Stripe refuses; nothing happened.
            GatewayRejectedError: the PaymentIntent has no successful charge, the amount is
                beyond what is left to refund, or the charge is under a chargeback.
        """
        check_amount(request.action, request.amount)
        check_metadata(request.action, request.metadata)

        def execute(mode: str | None) -> RefundSnapshot:
            pending = mode == "pending" or self._hold_refunds
            refund = self._refund(
                request.payment_ref,
                request.amount,
                dict(request.metadata),
                reason=request.reason,
                pending=pending,
            )
            self._queue_refund_events(refund, ("refund.created", "charge.refunded"))
            return self._refund_snapshot(refund)

        return self._keyed("refund", idempotency_key, request_to_dict(request), execute)

    def create_reversal(self, request: CreateReversal, *, idempotency_key: str) -> ReversalSnapshot:
        """Reverse (part of) a transfer; queues ``transfer.reversed``.

        Raises:
            InsufficientPayeeBalanceError: the connected account's balance does not cover it.
            RequestRefusedError: an amount or metadata Stripe refuses; nothing happened.
            GatewayRejectedError: unknown transfer, other currency, or more than is left.
        """
        check_amount(request.action, request.amount)
        check_metadata(request.action, request.metadata)

        def execute(mode: str | None) -> ReversalSnapshot:
            reversal = self._reverse(request.transfer_ref, request.amount, dict(request.metadata))
            return self._reversal_snapshot(reversal)

        return self._keyed("reversal", idempotency_key, request_to_dict(request), execute)

    def create_account(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """Create an Express account requesting ``transfers``; it is not ready until onboarded.

        Raises:
            RequestRefusedError: `payee_id` does not fit in Stripe metadata.
            GatewayRejectedError: `country` is not a two-letter code.
        """
        check_metadata("create_account", {META_PAYEE: payee_id})
        fingerprint = {
            "action": "create_account", "payee_id": payee_id, "email": email, "country": country
        }  # fmt: skip

        def execute(mode: str | None) -> AccountSnapshot:
            code = country.upper()
            if len(code) != 2 or not code.isalpha():
                raise GatewayRejectedError(
                    f"Country '{country}' is unknown. Try using a 2-character alphanumeric "
                    f"country code instead, such as 'US', 'EG', or 'GB'.",
                    code="country_unsupported",
                )
            currency = "eur" if code in _EURO_COUNTRIES else _COUNTRY_CURRENCY.get(code, "usd")
            account = AccountRecord(
                id=self._next_id("acct"),
                country=code,
                email=email,
                default_currency=currency,
                created=self._ts(),
                metadata={META_PAYEE: payee_id},
                service_agreement="full" if code == self.platform_country else "recipient",
            )
            self._accounts[account.id] = account
            return self._account_snapshot(account)

        return self._keyed("account", idempotency_key, fingerprint, execute)

    def create_onboarding_link(self, account_ref: str, *, return_url: str, refresh_url: str) -> str:
        """Return ``https://connect.fake.test/onboard/<account>?...`` (no call to make it real).

        Raises:
            GatewayRejectedError: no such account.
        """
        with self._lock:
            self._account(account_ref)
            query = urlencode({"return_url": return_url, "refresh_url": refresh_url})
            return f"https://connect.fake.test/onboard/{account_ref}?{query}"

    # --- controls: the payer ----------------------------------------------------------------

    def pay(self, payment_ref: str, amount: Money | None = None, *, force: bool = False) -> None:
        """The payer's payment succeeds; queues ``payment_intent.succeeded``.

        Args:
            payment_ref: a PaymentIntent awaiting payment (or processing).
            amount: what was received (default: the PaymentIntent's amount); more than the
                amount simulates an overpayment.
            force: pay a *cancelled* PaymentIntent anyway. Stripe never lets a cancelled
                PaymentIntent succeed; use this only to reach the state "a success arrives for
                an escrow the library cancelled", which the service must still handle.

        Raises:
            FakeControlError: unknown PaymentIntent (``resource_missing``), or it cannot
                be paid (``payment_intent_unexpected_state``: it succeeded, so use
                `pay_again` for a second payment, or it is cancelled).
            ValueError: `amount` is not positive Money in the PaymentIntent's currency.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE and not (force and pi.status == "canceled"):
                hint = " (use pay_again for a second payment)" if pi.status == "succeeded" else ""
                _control_error(
                    f"You cannot confirm PaymentIntent {payment_ref} because it has a status "
                    f"of {pi.status}{hint}.",
                    _UNEXPECTED_STATE,
                )
            self._succeed(pi, self._control_amount(pi, amount))
            self._queue_payment(pi, "payment_intent.succeeded")

    def decline(self, payment_ref: str, message: str = "Your card was declined.") -> None:
        """The payment fails (a failed charge, ``last_payment_error``); queues
        ``payment_intent.payment_failed``. The PaymentIntent can be paid later.

        Raises:
            FakeControlError: unknown PaymentIntent, or not awaiting payment.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE:
                _control_error(
                    f"cannot decline {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE
                )
            charge = self._pending_charge(pi)
            charge.status = "failed"
            charge.failure_code = "card_declined"
            charge.failure_message = message
            pi.status = "requires_payment_method"
            pi.last_payment_error = {
                "charge": charge.id,
                "code": "card_declined",
                "decline_code": "generic_decline",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": message,
                "param": None,
                "payment_method": {"id": charge.payment_method, "object": "payment_method",
                                   "type": "card"},
                "type": "card_error",
            }  # fmt: skip
            self._queue_payment(pi, "payment_intent.payment_failed")

    def process(self, payment_ref: str) -> None:
        """A delayed payment method (bank debit) starts; queues ``payment_intent.processing``.

        Follow with `pay` (it succeeds) or `decline` (it fails).

        Raises:
            FakeControlError: unknown PaymentIntent, or not awaiting payment.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE - {"processing"}:
                _control_error(
                    f"cannot process {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE
                )
            self._pending_charge(pi)
            pi.status = "processing"
            pi.last_payment_error = None
            self._queue_payment(pi, "payment_intent.processing")

    def pay_again(self, payment_ref: str, amount: Money | None = None) -> str:
        """The payer pays a second time: a new succeeded PaymentIntent with the same metadata
        and transfer group; queues its ``payment_intent.succeeded``.

        Returns:
            The new PaymentIntent's id.

        Raises:
            FakeControlError: unknown PaymentIntent.
            ValueError: a bad amount.
        """
        with self._lock:
            first = self._control_pi(payment_ref)
            ref = self._next_id("pi")
            pi = PaymentIntentRecord(
                id=ref,
                amount=first.amount,
                created=self._ts(),
                client_secret=self._client_secret(ref),
                transfer_group=first.transfer_group,
                metadata=dict(first.metadata),
                payment_method_types=list(first.payment_method_types),
                description=first.description,
                receipt_email=first.receipt_email,
            )
            self._payments[ref] = pi
            self._succeed(pi, self._control_amount(pi, amount))
            self._queue_payment(pi, "payment_intent.succeeded")
            return ref

    def cancel_outside(self, payment_ref: str) -> None:
        """Someone cancels the PaymentIntent in the Dashboard; queues
        ``payment_intent.canceled``.

        Raises:
            FakeControlError: unknown PaymentIntent, or it succeeded, is processing or is
                cancelled.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE - {"processing"}:
                _control_error(f"cannot cancel {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE)
            self._cancel(pi, reason=None)

    # --- controls: payees -------------------------------------------------------------------

    def complete_onboarding(self, account_ref: str) -> None:
        """The payee finishes onboarding: ``capabilities.transfers`` becomes ``active``;
        queues ``account.updated`` and ``capability.updated`` (Connect events).

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        self._set_transfers(account_ref, "active")

    def restrict(self, account_ref: str) -> None:
        """Stripe needs more information: ``transfers`` goes back to ``inactive``; queues
        ``account.updated`` and ``capability.updated``.

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        self._set_transfers(account_ref, "inactive")

    def deauthorize(self, account_ref: str) -> None:
        """The payee disconnects the platform; queues ``account.application.deauthorized``.

        Later transfers to the account raise `DestinationNotReadyError`.

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        with self._lock:
            account = self._control_account(account_ref)
            account.deauthorized = True
            self._enqueue(
                "account.application.deauthorized",
                sj.application_json(),
                self._account_snapshot(account),
                account=account.id,
            )

    def payout(self, account_ref: str, amount: Money, *, failed: bool = False) -> str:
        """The connected account pays `amount` out to its bank; queues ``payout.paid``
        (Connect). With ``failed=True`` the payout fails and the money stays
        (``payout.failed``).

        Returns:
            The payout's id (``po_0001``).

        Raises:
            FakeControlError: unknown account, or `amount` is above the balance.
            ValueError: `amount` is not positive.
        """
        with self._lock:
            account = self._control_account(account_ref)
            have = account.balance.get(amount.currency, 0)
            if amount.amount <= 0:
                raise ValueError(f"a payout must be positive, got {amount}")
            if amount.amount > have:
                _control_error(
                    f"cannot pay out {amount} from {account_ref}: its balance is "
                    f"{Money(have, amount.currency)}",
                    "balance_insufficient",
                )
            if not failed:
                account.balance[amount.currency] = have - amount.amount
            record = PayoutRecord(
                id=self._next_id("po"),
                account=account.id,
                amount=amount,
                created=self._ts(),
                status="failed" if failed else "paid",
                balance_transaction=self._next_id("txn"),
                failure_code="account_closed" if failed else None,
                failure_message="The bank account has been closed." if failed else None,
            )
            snapshot = PayoutSnapshot(
                ref=record.id,
                account_ref=account.id,
                amount=amount,
                status=record.status,
                failure_code=record.failure_code,
            )
            self._enqueue(
                f"payout.{record.status}",
                sj.payout_json(record, livemode=self._livemode),
                snapshot,
                account=account.id,
            )
            return record.id

    def balance(self, account_ref: str, currency: str | None = None) -> Money:
        """The connected account's balance in `currency` (default: its default currency).

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        with self._lock:
            account = self._control_account(account_ref)
            code = currency or account.default_currency
            return Money(account.balance.get(code, 0), code)

    # --- controls: failures and refunds -----------------------------------------------------

    def fail_next(
        self, kind: FailureKind, error: FailureMode = "unavailable", times: int = 1
    ) -> None:
        """Make the next call(s) of `kind` fail.

        `kind` is ``payment`` (create_payment), ``cancel``, ``transfer``, ``refund``,
        ``reversal`` or ``account`` (create_account). `error`:

        - ``unavailable``: a connection error before Stripe saw anything; nothing is stored
          under the key (`GatewayUnavailableError`).
        - ``server_error``: a 500 with no effect, stored under the key and replayed
          (`GatewayUnavailableError`, ``replayed=True`` on the replay).
        - ``timeout_after_effect``: the call takes effect (object, movement, events), then the
          answer is lost (`GatewayUnavailableError`); a retry with the key gets the object.
        - ``declined``: `PaymentDeclinedError` for payments, else `GatewayRejectedError`;
          stored under the key.
        - ``invalid``: `GatewayRejectedError` (a validation error, not stored).
        - ``destination_not_ready`` (transfer): `DestinationNotReadyError`.
        - ``balance_insufficient`` (transfer): the platform balance does not cover the
          transfer, `PlatformBalanceInsufficientError` (not stored: the same key works once
          the balance is topped up).
        - ``insufficient_balance`` (transfer: the same as ``balance_insufficient``; refund:
          the platform balance, `GatewayRejectedError`; reversal: the payee's balance,
          `InsufficientPayeeBalanceError`).
        - ``idempotency_mismatch``: `IdempotencyMismatchError`.
        - ``key_in_use``: `IdempotencyKeyInUseError`, Stripe's 409 for a key whose first
          request is still running; nothing happens and nothing is stored.
        - ``pending`` (refund only): the refund is created ``pending``.

        ``unavailable``, ``idempotency_mismatch`` and ``key_in_use`` hit the very next call;
        the others hit the next call Stripe would execute (a replay of a stored answer does not
        use them up).

        Raises:
            ValueError: unknown kind, or an error that does not apply to it.
        """
        allowed = _MODES_BY_KIND.get(kind)
        if allowed is None:
            raise ValueError(f"unknown kind {kind!r}: use one of {sorted(_MODES_BY_KIND)}")
        if error not in allowed:
            raise ValueError(f"{error!r} does not apply to {kind!r}: use one of {sorted(allowed)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._failures[kind].extend([error] * times)

    def hold_refunds(self, hold: bool = True) -> None:
        """While on, refunds are created ``pending`` (settle them with `settle_refund`)."""
        with self._lock:
            self._hold_refunds = hold

    def settle_refund(
        self,
        refund_ref: str,
        succeeded: bool = True,
        *,
        failure_reason: str = "expired_or_canceled_card",
    ) -> None:
        """Finish a refund: ``pending`` -> ``succeeded`` (``refund.updated``,
        ``charge.refund.updated``) or -> ``failed`` (``refund.failed``,
        ``charge.refund.updated``). A succeeded refund may still fail late.

        Raises:
            FakeControlError: unknown refund, or it is already in the asked state or failed.
        """
        with self._lock:
            refund = self._refunds.get(refund_ref)
            if refund is None:
                _control_error(f"no refund {refund_ref!r}", "resource_missing")
            if refund.status in ("failed", "canceled") or (
                succeeded and refund.status == "succeeded"
            ):
                _control_error(
                    f"cannot settle {refund_ref}: it is {refund.status}", "refund_unexpected_state"
                )
            if succeeded:
                refund.status = "succeeded"
                self._queue_refund_events(refund, ("refund.updated", "charge.refund.updated"))
            else:
                refund.status = "failed"
                refund.failure_reason = failure_reason
                refund.failure_balance_transaction = self._next_id("txn")
                self._queue_refund_events(refund, ("refund.failed", "charge.refund.updated"))

    # --- controls: disputes, fraud, changes made outside ------------------------------------

    def open_dispute(
        self,
        payment_ref: str,
        amount: Money | None = None,
        inquiry: bool = False,
        reason: str = "fraudulent",
    ) -> str:
        """The payer disputes the payment: queues ``charge.dispute.created`` and, unless it is
        an inquiry, ``charge.dispute.funds_withdrawn`` (a balance transaction of ``-amount``
        plus a 1500 fee, the fee excluded from `DisputeSnapshot.funds_withdrawn`).

        Returns:
            The dispute's id (``dp_0001``).

        Raises:
            FakeControlError: the PaymentIntent has no successful charge.
            ValueError: a bad amount.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            charge = self._control_charge(pi)
            disputed = self._control_amount(pi, amount) if amount is not None else charge.amount
            dispute = DisputeRecord(
                id=self._next_id("dp"),
                amount=disputed,
                charge=charge.id,
                payment_intent=pi.id,
                created=self._ts(),
                reason=reason,
                status="warning_needs_response" if inquiry else "needs_response",
                inquiry=inquiry,
            )
            self._disputes[dispute.id] = dispute
            charge.disputes.append(dispute)
            self._queue_dispute(dispute, "charge.dispute.created")
            if not inquiry:
                self._dispute_txn(dispute, -disputed.amount, DISPUTE_FEE, "dispute")
                self._queue_dispute(dispute, "charge.dispute.funds_withdrawn")
            return dispute.id

    def close_dispute(
        self, payment_ref: str, won: bool = False, *, dispute_ref: str | None = None
    ) -> None:
        """Close the PaymentIntent's latest open dispute (or `dispute_ref`).

        Won: ``charge.dispute.funds_reinstated`` then ``charge.dispute.closed`` (``won``);
        lost: ``charge.dispute.closed`` (``lost``); an inquiry closes as ``warning_closed``.

        Raises:
            FakeControlError: no open dispute on that PaymentIntent.
        """
        with self._lock:
            candidates = [
                d
                for d in self._disputes.values()
                if d.payment_intent == payment_ref
                and d.open
                and (dispute_ref is None or d.id == dispute_ref)
            ]
            if not candidates:
                _control_error(f"no open dispute on {payment_ref}", "resource_missing")
            dispute = candidates[-1]
            if dispute.inquiry:
                dispute.status = "warning_closed"
            elif won:
                self._dispute_txn(dispute, dispute.amount.amount, 0, "dispute_reversal")
                dispute.status = "won"
                self._queue_dispute(dispute, "charge.dispute.funds_reinstated")
            else:
                dispute.status = "lost"
            self._queue_dispute(dispute, "charge.dispute.closed")

    def early_fraud_warning(self, payment_ref: str) -> str:
        """Radar flags the charge; queues ``radar.early_fraud_warning.created``.

        Returns:
            The warning's id (``issfr_0001``).

        Raises:
            FakeControlError: the PaymentIntent has no successful charge.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            charge = self._control_charge(pi)
            warning = FraudWarningRecord(
                id=self._next_id("issfr"), charge=charge.id, payment_intent=pi.id,
                created=self._ts(),
            )  # fmt: skip
            snapshot = FraudWarningSnapshot(
                ref=warning.id, charge_ref=charge.id, payment_ref=pi.id, actionable=True
            )
            self._enqueue(
                "radar.early_fraud_warning.created",
                sj.fraud_warning_json(warning, livemode=self._livemode),
                snapshot,
            )
            return warning.id

    def refund_outside(
        self, payment_ref: str, amount: Money | None = None, *, pending: bool = False
    ) -> str:
        """Someone refunds in the Dashboard (no bountyescrow metadata), succeeded at once;
        queues ``charge.refunded``, ``refund.created`` and ``charge.refund.updated``.

        Args:
            amount: default: everything not refunded yet.
            pending: the refund is created ``pending`` (the bank has yet to confirm; Stripe
                has taken the money from the balance already); finish it with
                `settle_refund`.

        Returns:
            The refund's id.

        Raises:
            FakeControlError: Stripe would refuse it (see `create_refund`); `code` says why.
        """
        with self._lock, _as_control_error():
            pi = self._pi(payment_ref)
            if amount is None:
                charge = self._refundable_charge(pi)
                amount = Money(charge.amount.amount - charge.amount_refunded, pi.amount.currency)
            refund = self._refund(
                payment_ref, amount, {}, reason="requested_by_customer", pending=pending
            )
            self._queue_refund_events(
                refund, ("charge.refunded", "refund.created", "charge.refund.updated")
            )
            return refund.id

    def reverse_outside(self, transfer_ref: str, amount: Money | None = None) -> str:
        """Someone reverses a transfer in the Dashboard; queues ``transfer.reversed``.

        Args:
            amount: default: everything not reversed yet.

        Returns:
            The reversal's id.

        Raises:
            FakeControlError: Stripe would refuse it (see `create_reversal`); `code` says why
                (``balance_insufficient`` when the payee's balance does not cover it).
        """
        with self._lock, _as_control_error():
            transfer = self._get(self._transfers, transfer_ref, "transfer")
            if amount is None:
                amount = Money(
                    transfer.amount.amount - transfer.amount_reversed, transfer.amount.currency
                )
            return self._reverse(transfer_ref, amount, {}).id

    # --- what happened ----------------------------------------------------------------------

    @property
    def movements(self) -> list[Movement]:
        """Every transfer, refund and reversal that took effect, oldest first."""
        with self._lock:
            result = []
            for kind, record in self._movements:
                if isinstance(record, RefundRecord):
                    status = record.status
                    amount, metadata, ref = record.amount, record.metadata, record.id
                else:
                    obj = cast("TransferRecord | ReversalRecord", record)
                    status = "succeeded"
                    amount, metadata, ref = obj.amount, obj.metadata, obj.id
                result.append(Movement(kind, amount, _metadata_op(metadata), ref, status))
            return result

    @property
    def pending_events(self) -> tuple[GatewayEvent, ...]:
        """The queued events, oldest first, as the service receives them (read-only)."""
        with self._lock:
            return tuple(item.event for item in self._queue)

    @property
    def pending_payloads(self) -> tuple[JSON, ...]:
        """The queued events as Stripe-shaped JSON (copies), oldest first."""
        with self._lock:
            return tuple(copy.deepcopy(item.payload) for item in self._queue)

    def drop_events(self) -> int:
        """Discard the queued events (Stripe gave up on them); return how many there were."""
        with self._lock:
            count = len(self._queue)
            self._queue.clear()
            return count

    # --- webhooks ---------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """Return a ``Stripe-Signature`` header for `body`: ``t=<unix>,v1=<hex HMAC-SHA256>``.

        Args:
            timestamp: the signing time (default: now, by the signing clock).
            secret: the endpoint secret (default: the fake's `webhook_secret`).
        """
        if timestamp is None:
            timestamp = int(self._signing_clock.now().timestamp())
        key = (secret if secret is not None else self.webhook_secret).encode()
        signed = f"{timestamp}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={digest}"

    def webhook_request(
        self, payload: Mapping[str, Any], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Serialise and sign one event as Stripe posts it: ``(body, headers)``."""
        body = json.dumps(payload, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": self.sign(body, timestamp=timestamp, secret=secret),
        }
        return body, headers

    def deliver(
        self,
        target: object,
        *,
        duplicate: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        raise_errors: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> list[Any]:
        """Drain the queued events into `target` and return what it returned for each.

        A target with a ``handle`` method (a `WebhookDispatcher`) gets each event as Stripe
        posts it: ``target.handle(body=bytes, headers={"Stripe-Signature": ...})``. Any other
        target gets ``target.apply_event(GatewayEvent)`` (an `EscrowService`). Events queued
        while delivering stay queued for the next call.

        Args:
            duplicate: deliver every event twice (at-least-once delivery).
            shuffle: deliver in an order shuffled by ``random.Random(seed)``.
            raise_errors: when True an exception from the target propagates, and the event
                that raised plus those not yet delivered go back to the front of the queue
                (Stripe retries what was not acknowledged); when False the exception is
                returned in its place in the results.
            secret, timestamp: sign with another secret or at another time (signed delivery).
        """
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
        order = [item for item in batch for _ in range(2 if duplicate else 1)]
        if shuffle:
            random.Random(seed).shuffle(order)
        results: list[Any] = []
        for position, item in enumerate(order):
            try:
                results.append(self._send(target, item, secret=secret, timestamp=timestamp))
            except Exception as exc:
                if raise_errors:
                    rest = list({id(i): i for i in order[position:]}.values())
                    with self._lock:
                        self._queue[0:0] = rest
                    raise
                results.append(exc)
        return results

    def _send(
        self, target: object, item: _Queued, *, secret: str | None, timestamp: int | None
    ) -> Any:
        handle = getattr(target, "handle", None)
        if callable(handle):
            body, headers = self.webhook_request(item.payload, timestamp=timestamp, secret=secret)
            return handle(body=body, headers=headers)
        apply_event = getattr(target, "apply_event", None)
        if not callable(apply_event):
            raise TypeError(
                f"cannot deliver to {type(target).__name__}: it has neither handle(body=, "
                f"headers=) nor apply_event(event)"
            )
        return apply_event(item.event)

    # --- keyed-call machinery ---------------------------------------------------------------

    def _keyed(
        self,
        kind: str,
        key: str,
        request: Mapping[str, Any],
        execute: Callable[[str | None], _T],
    ) -> _T:
        """Run `execute` under idempotency key `key`, as Stripe runs a request.

        The key is in use from the moment the request is accepted until its answer is
        stored. The call hooks run in between (``"before"``) and once the answer is stored
        (``"after"``), without the lock: other threads, and the hook itself, may call the
        fake meanwhile, and a call with the same key gets `IdempotencyKeyInUseError` before,
        the stored answer after.
        """
        fingerprint = json.dumps(request, sort_keys=True, default=str)
        with self._lock:
            request_id = self._next_id("req")
            self._forget_old_keys()
            failures = self._failures[kind]
            if failures and failures[0] in _AT_ONCE:
                raise self._failure_at_once(failures.popleft(), key, request_id)
            entry = self._keys.get(key)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    raise IdempotencyMismatchError(
                        f"Keys for idempotent requests can only be used with the same "
                        f"parameters they were first used with. Try using a key other than "
                        f"{key!r} if you meant to execute a different request.",
                        code="idempotency_error",
                        request_id=request_id,
                    )
                if entry.error is not None:
                    raise entry.error.build(replayed=True, request_id=request_id)
                return cast(_T, entry.answer)
            if key in self._in_flight:
                raise self._failure_at_once("key_in_use", key, request_id)
            self._in_flight.add(key)
        try:
            self._run_call_hooks(kind, key, "before")
            with self._lock:
                answer = self._execute(kind, key, fingerprint, request_id, execute)
        finally:
            with self._lock:
                self._in_flight.discard(key)
        self._run_call_hooks(kind, key, "after")
        return answer()

    def _run_call_hooks(self, kind: str, key: str, phase: CallPhase) -> None:
        with self._lock:
            hooks = list(self._call_hooks)
        for hook in hooks:
            hook(kind, key, phase)

    def _execute(
        self,
        kind: str,
        key: str,
        fingerprint: str,
        request_id: str,
        execute: Callable[[str | None], _T],
    ) -> Callable[[], _T]:
        """Take effect (or fail) and store the answer; return what hands it to the caller."""
        failures = self._failures[kind]
        mode = failures.popleft() if failures else None
        if mode in _AT_ONCE:
            # Queued while the call waited in a hook: it fails as it would have on arrival.
            return _raising(self._failure_at_once(mode, key, request_id))
        try:
            self._refuse(kind, mode)
            answer = execute(mode)
        except _StoreError as stored:
            self._keys[key] = _KeyEntry(fingerprint, self._clock.now(), error=stored.error)
            return _raising(stored.error.build(replayed=False, request_id=request_id))
        except GatewayError as exc:
            exc.request_id = exc.request_id or request_id
            return _raising(exc)
        self._keys[key] = _KeyEntry(fingerprint, self._clock.now(), answer=answer)
        if mode == "timeout_after_effect":
            return _raising(
                GatewayUnavailableError(
                    "Request to Stripe timed out (simulated: it took effect, the answer was lost).",
                    code="timeout",
                    request_id=request_id,
                )
            )
        return lambda: answer

    @staticmethod
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

    def _refuse(self, kind: str, mode: str | None) -> None:
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
        if mode == "balance_insufficient" or (
            mode == "insufficient_balance" and kind == "transfer"
        ):
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

    def _forget_old_keys(self) -> None:
        now = self._clock.now()
        expired = [k for k, e in self._keys.items() if now - e.first_used >= KEY_LIFETIME]
        for key in expired:
            del self._keys[key]

    # --- effects ----------------------------------------------------------------------------

    def _transfer(self, request: CreateTransfer) -> TransferRecord:
        account = self._accounts.get(request.destination)
        if account is None:
            raise GatewayRejectedError(
                f"No such destination: '{request.destination}'",
                code="resource_missing",
            )
        amount = request.amount
        self._check_positive(amount, "transfer")
        if not account.ready:
            raise DestinationNotReadyError(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
            )
        if request.source_transaction is not None:
            charge = self._charges.get(request.source_transaction)
            if charge is None or charge.status == "failed":
                raise GatewayRejectedError(
                    f"No such charge: '{request.source_transaction}'", code="resource_missing"
                )
            if charge.amount.currency != amount.currency:
                raise GatewayRejectedError(
                    f"The currency of source_transaction's balance transaction "
                    f"({charge.amount.currency}) must be the same as the transfer currency "
                    f"({amount.currency})",
                    code="parameter_invalid",
                )
            used = sum(
                t.amount.amount - t.amount_reversed
                for t in self._transfers.values()
                if t.source_transaction == charge.id
            )
            if used + amount.amount > charge.amount.amount:
                raise GatewayRejectedError(
                    f"Insufficient funds in source_transaction {charge.id}: "
                    f"{charge.amount.amount - used} left, {amount.amount} asked",
                    code="balance_insufficient",
                )
        transfer = TransferRecord(
            id=self._next_id("tr"),
            amount=amount,
            destination=account.id,
            source_transaction=request.source_transaction,
            transfer_group=request.transfer_group,
            created=self._ts(),
            metadata=dict(request.metadata),
            balance_transaction=self._next_id("txn"),
            destination_payment=self._next_id("py"),
        )
        self._transfers[transfer.id] = transfer
        account.balance[amount.currency] = account.balance.get(amount.currency, 0) + amount.amount
        self._movements.append(("transfer", transfer))
        self._enqueue(
            "transfer.created",
            sj.transfer_json(transfer, livemode=self._livemode),
            self._transfer_snapshot(transfer),
        )
        return transfer

    def _reverse(
        self, transfer_ref: str, amount: Money, metadata: dict[str, str]
    ) -> ReversalRecord:
        transfer = self._get(self._transfers, transfer_ref, "transfer")
        self._check_positive(amount, "reversal")
        if amount.currency != transfer.amount.currency:
            raise GatewayRejectedError(
                f"A reversal of {transfer.id} must be in {transfer.amount.currency}",
                code="parameter_invalid",
            )
        left = transfer.amount.amount - transfer.amount_reversed
        if amount.amount > left:
            raise GatewayRejectedError(
                f"Amount ({amount.amount}) is greater than the remaining amount of the transfer "
                f"({left})",
                code="amount_too_large",
            )
        account = self._accounts[transfer.destination]
        have = account.balance.get(amount.currency, 0)
        if amount.amount > have:
            raise InsufficientPayeeBalanceError(
                f"Insufficient funds in the destination account {account.id} to reverse "
                f"{amount.amount} (balance {have})",
                code="balance_insufficient",
            )
        account.balance[amount.currency] = have - amount.amount
        reversal = ReversalRecord(
            id=self._next_id("trr"),
            amount=amount,
            transfer=transfer.id,
            created=self._ts(),
            metadata=metadata,
            balance_transaction=self._next_id("txn"),
        )
        transfer.reversals.append(reversal)
        self._reversals[reversal.id] = reversal
        self._movements.append(("reversal", reversal))
        self._enqueue(
            "transfer.reversed",
            sj.transfer_json(transfer, livemode=self._livemode),
            self._transfer_snapshot(transfer),
        )
        return reversal

    def _refundable_charge(self, pi: PaymentIntentRecord) -> ChargeRecord:
        charge = pi.latest_charge
        if pi.status != "succeeded" or charge is None or charge.status != "succeeded":
            raise GatewayRejectedError(
                f"This PaymentIntent ({pi.id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        return charge

    def _refund(
        self,
        payment_ref: str,
        amount: Money,
        metadata: dict[str, str],
        *,
        reason: str | None,
        pending: bool = False,
    ) -> RefundRecord:
        pi = self._pi(payment_ref)
        charge = self._refundable_charge(pi)
        self._check_positive(amount, "refund")
        if amount.currency != charge.amount.currency:
            raise GatewayRejectedError(
                f"A refund of {pi.id} must be in {charge.amount.currency}",
                code="parameter_invalid",
            )
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "requested_by_customer",
        ):
            raise GatewayRejectedError(
                f"Invalid refund reason: {reason!r}", code="parameter_invalid"
            )
        if any(d.blocks_refunds for d in charge.disputes):
            raise GatewayRejectedError(
                f"Charge {charge.id} has been charged back; create a refund is not possible.",
                code="charge_disputed",
            )
        left = charge.amount.amount - charge.amount_refunded
        if amount.amount > left:
            raise GatewayRejectedError(
                f"Refund amount ({amount.amount}) is greater than unrefunded amount on charge "
                f"({left})",
                code="amount_too_large" if left else "charge_already_refunded",
            )
        refund = RefundRecord(
            id=self._next_id("re"),
            amount=amount,
            charge=charge.id,
            payment_intent=pi.id,
            created=self._ts(),
            status="pending" if pending else "succeeded",
            metadata=metadata,
            balance_transaction=self._next_id("txn"),
            reason=reason,
        )
        charge.refunds.append(refund)
        self._refunds[refund.id] = refund
        self._movements.append(("refund", refund))
        return refund

    def _cancel(self, pi: PaymentIntentRecord, *, reason: str | None) -> None:
        pi.status = "canceled"
        pi.canceled_at = self._ts()
        pi.cancellation_reason = reason
        self._queue_payment(pi, "payment_intent.canceled")

    def _pending_charge(self, pi: PaymentIntentRecord) -> ChargeRecord:
        """The PaymentIntent's charge in flight, created if there is none."""
        charge = pi.latest_charge
        if charge is not None and charge.status == "pending":
            return charge
        charge = ChargeRecord(
            id=self._next_id("ch"),
            payment_intent=pi.id,
            amount=pi.amount,
            created=self._ts(),
            status="pending",
            payment_method=self._next_id("pm"),
            balance_transaction=None,
            transfer_group=pi.transfer_group,
        )
        self._charges[charge.id] = charge
        pi.latest_charge = charge
        pi.payment_method = charge.payment_method
        return charge

    def _succeed(self, pi: PaymentIntentRecord, amount: Money) -> None:
        charge = self._pending_charge(pi)
        charge.amount = amount
        charge.status = "succeeded"
        charge.balance_transaction = self._next_id("txn")
        pi.status = "succeeded"
        pi.amount_received = amount.amount
        pi.last_payment_error = None
        pi.canceled_at = None
        pi.cancellation_reason = None

    def _set_transfers(self, account_ref: str, status: str) -> None:
        with self._lock:
            account = self._control_account(account_ref)
            if account.transfers == status:
                return
            previous = account.transfers
            account.transfers = status
            snapshot = self._account_snapshot(account)
            self._enqueue(
                "account.updated",
                sj.account_json(account),
                snapshot,
                account=account.id,
                previous={"capabilities": {"transfers": previous}},
            )
            self._enqueue(
                "capability.updated",
                sj.capability_json(account),
                snapshot,
                account=account.id,
                previous={"status": previous},
            )

    def _dispute_txn(self, dispute: DisputeRecord, amount: int, fee: int, category: str) -> None:
        dispute.balance_transactions.append(
            BalanceTransactionRecord(
                id=self._next_id("txn"),
                amount=amount,
                fee=fee,
                currency=dispute.amount.currency,
                created=self._ts(),
                source=dispute.id,
                type="adjustment",
                reporting_category=category,
                description=(
                    f"Chargeback withdrawal for {dispute.charge}"
                    if amount < 0
                    else f"Chargeback reversal for {dispute.charge}"
                ),
            )
        )

    # --- events -----------------------------------------------------------------------------

    def _enqueue(
        self,
        type: str,
        obj: JSON,
        snapshot: GatewayObject,
        *,
        account: str | None = None,
        previous: JSON | None = None,
    ) -> None:
        event_id = self._next_id("evt")
        created = self._ts()
        payload = sj.event_json(
            event_id=event_id,
            type=type,
            obj=obj,
            created=created,
            livemode=self._livemode,
            account=account,
            previous_attributes=previous,
        )
        event = GatewayEvent(
            id=event_id,
            type=type,
            object=snapshot,
            created=created,
            livemode=self._livemode,
            account=account,
        )
        self._queue.append(_Queued(event, payload))

    def _queue_payment(self, pi: PaymentIntentRecord, type: str) -> None:
        self._enqueue(
            type, sj.payment_intent_json(pi, livemode=self._livemode), self._payment_snapshot(pi)
        )

    def _queue_refund_events(self, refund: RefundRecord, types: tuple[str, ...]) -> None:
        snapshot = self._refund_snapshot(refund)
        for type in types:
            if type == "charge.refunded":
                obj = sj.charge_json(self._charges[refund.charge], livemode=self._livemode)
            else:
                obj = sj.refund_json(refund)
            self._enqueue(type, obj, snapshot)

    def _queue_dispute(self, dispute: DisputeRecord, type: str) -> None:
        self._enqueue(
            type,
            sj.dispute_json(dispute, livemode=self._livemode),
            self._dispute_snapshot(dispute),
        )

    # --- snapshots --------------------------------------------------------------------------

    def _payment_snapshot(self, pi: PaymentIntentRecord) -> PaymentSnapshot:
        error = pi.last_payment_error
        return PaymentSnapshot(
            ref=pi.id,
            status=pi.status,
            amount=pi.amount,
            amount_received=Money(pi.amount_received, pi.amount.currency),
            charge_ref=pi.latest_charge.id if pi.latest_charge else None,
            metadata=pi.metadata,
            client_secret=pi.client_secret,
            last_error=str(error["message"]) if error else None,
            livemode=self._livemode,
        )

    @staticmethod
    def _reversal_snapshot(reversal: ReversalRecord) -> ReversalSnapshot:
        return ReversalSnapshot(
            ref=reversal.id,
            amount=reversal.amount,
            transfer_ref=reversal.transfer,
            metadata=reversal.metadata,
        )

    def _transfer_snapshot(self, transfer: TransferRecord) -> TransferSnapshot:
        return TransferSnapshot(
            ref=transfer.id,
            amount=transfer.amount,
            destination=transfer.destination,
            transfer_group=transfer.transfer_group,
            metadata=transfer.metadata,
            source_transaction=transfer.source_transaction,
            reversals=tuple(self._reversal_snapshot(r) for r in transfer.reversals),
        )

    @staticmethod
    def _refund_snapshot(refund: RefundRecord) -> RefundSnapshot:
        return RefundSnapshot(
            ref=refund.id,
            amount=refund.amount,
            status=refund.status,
            payment_ref=refund.payment_intent,
            metadata=refund.metadata,
            failure_reason=refund.failure_reason,
        )

    @staticmethod
    def _dispute_snapshot(dispute: DisputeRecord) -> DisputeSnapshot:
        currency = dispute.amount.currency
        amounts = [t.amount for t in dispute.balance_transactions]
        return DisputeSnapshot(
            ref=dispute.id,
            payment_ref=dispute.payment_intent,
            charge_ref=dispute.charge,
            amount=dispute.amount,
            status=dispute.status,
            reason=dispute.reason,
            funds_withdrawn=Money(sum(-a for a in amounts if a < 0), currency),
            funds_reinstated=Money(sum(a for a in amounts if a > 0), currency),
            charge_refundable=not dispute.blocks_refunds,
        )

    @staticmethod
    def _account_snapshot(account: AccountRecord) -> AccountSnapshot:
        return AccountSnapshot(
            ref=account.id,
            ready=account.ready,
            metadata=account.metadata,
            deauthorized=account.deauthorized,
        )

    # --- lookups and small helpers ----------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        number = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = number
        return f"{prefix}_{number:04d}"

    def _client_secret(self, ref: str) -> str:
        # Deterministic, and different per fake so a secret from another test never matches.
        tail = hashlib.sha256(f"{ref}:{self.webhook_secret}".encode()).hexdigest()[:24]
        return f"{ref}_secret_{tail}"

    def _ts(self) -> int:
        return int(self._clock.now().timestamp())

    @staticmethod
    def _get(table: Mapping[str, _T], ref: str, what: str) -> _T:
        record = table.get(ref)
        if record is None:
            raise GatewayRejectedError(f"No such {what}: '{ref}'", code="resource_missing")
        return record

    def _pi(self, ref: str) -> PaymentIntentRecord:
        return self._get(self._payments, ref, "payment_intent")

    def _account(self, ref: str) -> AccountRecord:
        return self._get(self._accounts, ref, "account")

    def _control_pi(self, ref: str) -> PaymentIntentRecord:
        pi = self._payments.get(ref)
        if pi is None:
            _control_error(
                f"no PaymentIntent {ref!r} (known: {sorted(self._payments)})", "resource_missing"
            )
        return pi

    def _control_account(self, ref: str) -> AccountRecord:
        account = self._accounts.get(ref)
        if account is None:
            _control_error(
                f"no connected account {ref!r} (known: {sorted(self._accounts)})",
                "resource_missing",
            )
        return account

    @staticmethod
    def _control_charge(pi: PaymentIntentRecord) -> ChargeRecord:
        charge = pi.latest_charge
        if pi.status != "succeeded" or charge is None:
            _control_error(
                f"{pi.id} has no successful charge: it is {pi.status} (pay it first)",
                _UNEXPECTED_STATE,
            )
        return charge

    @staticmethod
    def _control_amount(pi: PaymentIntentRecord, amount: Money | None) -> Money:
        if amount is None:
            return pi.amount
        if not isinstance(amount, Money) or amount.currency != pi.amount.currency:
            raise ValueError(f"amount must be Money in {pi.amount.currency}, got {amount!r}")
        if amount.amount <= 0:
            raise ValueError(f"amount must be positive, got {amount}")
        return amount

    @staticmethod
    def _check_positive(amount: Money, what: str) -> None:
        if amount.amount <= 0:
            raise GatewayRejectedError(
                f"Invalid positive integer: {what} amount {amount.amount}",
                code="parameter_invalid_integer",
            )


# --- latency and call hooks -------------------------------------------------------------------
#
# A real gateway call takes time: while one is in flight, webhooks arrive, `recover()` runs in
# another process and the clock moves on. `during_next_call` runs a test's code at that moment,
# once, deterministically, through the fake's call hooks.


def during_next_call(
    fake: FakeGateway,
    kind: FailureKind,
    callback: Callable[[], object],
    *,
    when: CallPhase = "before",
) -> None:
    """Run `callback` inside the next `kind` call Stripe executes, once.

    ``when="before"``: the request reached Stripe (its key is in use: another request with
    the same key gets ``idempotency_key_in_use``) and has not taken effect yet.
    ``when="after"``: it took effect or was refused, and its answer is stored under the key
    but has not reached the caller. A replayed answer does not count as a call.

    The callback may do anything a test does: deliver webhooks, run ``service.recover()``,
    move a `ManualClock` past the lease, a backoff or the 23 h key window, make other calls
    (they do not fire it again: it is used up before it runs).

    Raises:
        ValueError: unknown `kind` or `when`.
    """
    if kind not in _MODES_BY_KIND:
        raise ValueError(f"unknown kind {kind!r}: use one of {sorted(_MODES_BY_KIND)}")
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    used = threading.Event()

    def hook(call_kind: str, key: str, phase: CallPhase) -> None:
        if call_kind != kind or phase != when:
            return
        with fake._lock:
            if used.is_set():
                return
            used.set()
            fake._call_hooks.remove(hook)
        callback()

    with fake._lock:
        fake._call_hooks.append(hook)
