"""The payment gateway port: single calls to the payment provider, nothing sequenced.

Sequencing (reversal before refund, retries, recovery) belongs to the service. Every method
either returns the provider's view of the object or raises a `bountyescrow.errors.GatewayError`
subclass; no provider exception crosses this boundary.

Requests the provider would refuse are refused before anything is sent, from the rules every
gateway shares (`check_amount`, `check_metadata`, `cross_border_problem`, with
`RequestRefusedError`), so that a test on `FakeGateway` fails where production on Stripe would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from bountyescrow.domain import amount_rules, metadata_rules
from bountyescrow.domain.gateway_objects import (
    AccountSnapshot,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import GatewayRejectedError, ValidationError

__all__ = [
    "CROSS_BORDER_COUNTRIES",
    "PaymentGateway",
    "RequestRefusedError",
    "check_amount",
    "check_metadata",
    "cross_border_problem",
    "window_bounds",
]

#: The countries Stripe's cross-border payouts connect: a platform in any of them can transfer
#: to connected accounts in any of them, under the full service agreement
#: (https://docs.stripe.com/connect/cross-border-payouts): the United States, the United
#: Kingdom (GB), the European Economic Area (the 27 EU countries, Iceland, Liechtenstein,
#: Norway), Canada and Switzerland.
CROSS_BORDER_COUNTRIES: Final = frozenset(
    {"US", "GB", "CA", "CH",
     "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
     "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
     "IS", "LI", "NO"}
)  # fmt: skip
_REGIONS: Final = "the US, the UK (GB), the EEA countries, Canada (CA) and Switzerland (CH)"


class RequestRefusedError(ValidationError, GatewayRejectedError):
    """A request the provider would refuse, refused by the gateway before anything was sent.

    It is a `ValidationError` (the input is wrong; say so to whoever supplied it) and a
    `GatewayRejectedError`, the port's definitive refusal: a service that stored the request
    before sending it fails the operation instead of retrying a request that cannot succeed.
    `code` is the code the provider would have answered with, where it has one.
    """


def check_amount(action: str, amount: Money, *, charge: bool = False) -> None:
    """Refuse an amount Stripe would refuse (`bountyescrow.domain.amount_rules`).

    The rules are the currency's row of `bountyescrow.domain.currencies`: every amount must be
    positive with at most eight digits (the library's cap) and a multiple of the currency's
    step (10 in KWD, BHD, JOD, OMR and TND; 100 in ISK and UGX, which Stripe represents with
    two decimals that are always 00); with `charge=True` the minimum charge applies.

    Raises:
        RequestRefusedError: the amount breaks one of the rules.
    """
    problem = amount_rules.problem(amount, charge=charge)
    if problem is not None:
        message, code = problem
        raise RequestRefusedError(f"{action}: {message}", code=code)


def check_metadata(action: str, metadata: Mapping[str, str]) -> None:
    """Refuse metadata Stripe would refuse (`bountyescrow.domain.metadata_rules`).

    At most 50 keys, keys of 1 to 40 characters without square brackets, string values of at
    most 500 characters.

    Raises:
        RequestRefusedError: the metadata breaks one of the rules; the message names which.
    """
    problem = metadata_rules.problem(metadata)
    if problem is None:
        for key, value in metadata.items():
            if not key:
                problem = "metadata keys must not be empty"
            elif not isinstance(value, str):
                problem = f"metadata value of {key!r} must be a string, got {value!r}"
    if problem is not None:
        raise RequestRefusedError(f"{action}: {problem}", code="parameter_invalid")


def cross_border_problem(platform_country: str, country: str) -> str | None:
    """Why Stripe would not pay a payee in `country` from a platform in `platform_country`
    under the full service agreement, or None.

    Both are two-letter ISO codes in upper case. A payee in the platform's own country is fine;
    so is one in another country of `CROSS_BORDER_COUNTRIES` when the platform is in one too.
    A platform outside those countries is left to Stripe, which offers it no self-serve
    cross-border payouts but may enable them for it.
    """
    if country == platform_country or platform_country not in CROSS_BORDER_COUNTRIES:
        return None
    if country in CROSS_BORDER_COUNTRIES:
        return None
    return (
        f"a payee in {country} cannot receive transfers from a platform in {platform_country}: "
        f"Stripe's cross-border payouts go only between {_REGIONS}. Payees elsewhere need "
        f"Stripe's Global Payouts (the recipient service agreement, where Stripe offers it "
        f"to the platform)"
    )


class PaymentGateway(Protocol):
    """Moves money at the payment provider (Stripe, or the in-memory `FakeGateway`).

    Money-moving calls take the stored request and an idempotency key; sending the same key
    and request again must not move money twice. Errors:

    - `GatewayUnavailableError`: the outcome is unknown (timeout, connection, 5xx, rate limit);
      `replayed` is set when the provider replayed a stored error for the key.
    - `GatewayRejectedError` and subclasses: definitive refusal, nothing happened.
      `RequestRefusedError` (also a `ValidationError`) when the gateway refused the request
      itself, before sending: an amount or metadata the provider would refuse.
    - `PlatformBalanceInsufficientError` (transfers): the platform's balance does not cover
      the transfer; definitive, nothing moved, but the money is owed: a reserve breach.
    - `IdempotencyKeyInUseError`: another request with the same key is still running at the
      provider; the outcome is unknown (that request may move the money).
    - `IdempotencyMismatchError`: the key was used with other parameters (a bug).
    - `GatewayAuthenticationError`: credentials refused.
    """

    @property
    def livemode(self) -> bool:
        """True when the gateway moves real money."""
        ...

    @property
    def max_call_duration(self) -> timedelta:
        """The longest one call can take, the client's own retries and back-off included.

        An upper bound plus a margin: by then the request that may move money has its answer
        or its error, and the client sends nothing more for it. The service's lease on an
        operation (``EscrowSettings.lease``) must be at least this long, or `recover()` could
        send again while a first call is still in flight. A call that reads more after that
        request (a look-up paging through a long list, a transfer whose reversals fill more
        than one page) may take longer, harmlessly: a resend with the same key replays.
        Gateways written before this property existed lack it; the service then assumes a
        conservative value.
        """
        ...

    def create_payment(self, request: CreatePayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Create a PaymentIntent; the snapshot carries the client secret."""
        ...

    def cancel_payment(self, request: CancelPayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Cancel a PaymentIntent. Raises `PaymentAlreadySettledError` if it succeeded."""
        ...

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        """Fetch a PaymentIntent."""
        ...

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        """Transfer to a connected account.

        Raises `DestinationNotReadyError` when the account cannot receive transfers yet.
        """
        ...

    def create_refund(self, request: CreateRefund, *, idempotency_key: str) -> RefundSnapshot:
        """Refund a PaymentIntent (the snapshot may say `pending`)."""
        ...

    def create_reversal(self, request: CreateReversal, *, idempotency_key: str) -> ReversalSnapshot:
        """Reverse a transfer.

        Raises `InsufficientPayeeBalanceError` when the payee's balance cannot cover it.
        """
        ...

    def find_transfer(self, *, transfer_group: str, operation_id: str) -> TransferSnapshot | None:
        """Look up the transfer an operation made, by transfer group and metadata."""
        ...

    def find_refund(self, *, payment_ref: str, operation_id: str) -> RefundSnapshot | None:
        """Look up the refund an operation made, among the PaymentIntent's refunds."""
        ...

    def find_reversal(self, *, transfer_ref: str, operation_id: str) -> ReversalSnapshot | None:
        """Look up the reversal an operation made, among the transfer's reversals."""
        ...

    def get_refund(self, refund_ref: str) -> RefundSnapshot:
        """Fetch a refund (re-fetched before applying: refunds change state)."""
        ...

    def get_transfer(self, transfer_ref: str) -> TransferSnapshot:
        """Fetch a transfer with all its reversals (to confirm an event that was not signed)."""
        ...

    def get_dispute(self, dispute_ref: str) -> DisputeSnapshot:
        """Fetch a dispute with its withdrawn and reinstated totals."""
        ...

    def get_account(self, account_ref: str) -> AccountSnapshot:
        """Fetch a connected account's readiness."""
        ...

    def payee_country_problem(self, country: str) -> str | None:
        """Why the provider would refuse a payee in `country`, or None when it can pay them.

        `country` is a two-letter ISO code. The service asks before it registers a payee and
        raises `ValidationError` with the reason, before anything is written; `create_account`
        refuses the same countries with `RequestRefusedError`. Gateways written before this
        method existed lack it; the service then leaves the country to `create_account`.
        """
        ...

    def create_account(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """Create a connected account able to receive transfers.

        Raises `RequestRefusedError` for a country `payee_country_problem` refuses.
        """
        ...

    def create_onboarding_link(self, account_ref: str, *, return_url: str, refresh_url: str) -> str:
        """Return a one-time URL where the payee completes onboarding."""
        ...

    # --- the events list (backfill after missed webhooks) -------------------------------------

    def iter_events(
        self, *, since: datetime, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the provider's events created in ``[since, until]``, oldest first.

        Each is the event's payload as a webhook would carry it (Stripe's ``event`` JSON,
        a fresh dict), read from the provider's events list with the secret key, so it is
        as trustworthy as a verified webhook. Stripe keeps events for 30 days: an older
        `since` yields what is left. `until` None means up to now. Pages are read as they
        are consumed, so memory stays flat in the number of events.

        Raises:
            ValueError: `since` or `until` is a naive datetime, or `until` is before `since`.
            GatewayError: the list could not be read (see the class docstring).
        """
        ...

    # --- lists (reconciliation reads the provider's objects in a window) ----------------------

    def iter_payments(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[PaymentSnapshot]:
        """Yield the PaymentIntents created in ``[since, until)`` that carry bountyescrow
        metadata (``bountyescrow_escrow_id``), newest first.

        None for `since` or `until` leaves that end open. Pages are read as they are consumed,
        so memory stays flat however many objects the window holds; the same holds for every
        list method below. Gateways written before the list methods existed lack them;
        `EscrowService.reconcile` then raises `ConfigurationError`.

        Raises:
            ValueError: `since` or `until` is a naive datetime, or `until` is before `since`.
            GatewayError: a page could not be read (see the class docstring).
        """
        ...

    def iter_transfers(
        self,
        *,
        transfer_group: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[TransferSnapshot]:
        """Yield the transfers created in ``[since, until)``, of `transfer_group` when given,
        newest first, each with all its reversals. Transfers without bountyescrow metadata
        are yielded too (a transfer made in the Dashboard into an escrow's group is one)."""
        ...

    def iter_refunds(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[RefundSnapshot]:
        """Yield the refunds created in ``[since, until)``, of the PaymentIntent `payment_ref`
        when given, newest first, whatever their status and metadata (a refund made in the
        Dashboard carries none)."""
        ...

    def iter_disputes(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[DisputeSnapshot]:
        """Yield the disputes created in ``[since, until)``, of the PaymentIntent
        `payment_ref` when given, newest first, with their withdrawn and reinstated totals."""
        ...

    def get_balance(self) -> dict[str, Money]:
        """The platform's balance per currency (lower case): available plus pending, the
        money the escrows' reserve must stay within (`EscrowService.required_reserve`)."""
        ...


def window_bounds(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """The Unix seconds a list window ``[since, until)`` covers, for the list methods.

    Providers stamp objects in whole seconds, so `since` is rounded down and `until` up: the
    window may take in an object of the second it starts or ends in, never leave one out.

    Raises:
        ValueError: `since` or `until` is a naive datetime, or `until` is before `since`.
    """
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime (with a time zone), got {moment}")
    if since is not None and until is not None and until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    start = None if since is None else math.floor(since.timestamp())
    end = None if until is None else math.ceil(until.timestamp())
    return start, end
