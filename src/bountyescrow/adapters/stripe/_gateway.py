"""`StripeGateway`: the `PaymentGateway` port on Stripe (separate charges and transfers).

One class, longer than most modules, on purpose: it is the port's one implementation on
Stripe, method for method, and every method goes through the same few helpers (`translated`,
`_read`, `_find`, the parsers); request checks, error mapping and parsing live in `_checks`,
`_errors` and `_parse`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import httpx
import stripe
from stripe import StripeResponse

from bountyescrow._alerts import alert
from bountyescrow.adapters.stripe import _checks, _events_list
from bountyescrow.adapters.stripe._checks import RequestRefusedError
from bountyescrow.adapters.stripe._errors import header, reported_intent_status, translated
from bountyescrow.adapters.stripe._lists import ListCalls, Pacer
from bountyescrow.adapters.stripe._parse import (
    Json,
    parse_account,
    parse_account_v2,
    parse_dispute,
    parse_payment,
    parse_refund,
    parse_reversal,
    parse_transfer,
    reversals_incomplete,
)
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
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.errors import (
    ConfigurationError,
    GatewayUnavailableError,
    PaymentAlreadySettledError,
    ValidationError,
)
from bountyescrow.ports.gateway import cross_border_problem

if TYPE_CHECKING:
    from stripe.params import (
        AccountCreateParams,
        AccountLinkCreateParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
        RefundListParams,
        TransferCreateParams,
        TransferListParams,
        TransferReversalCreateParams,
        TransferReversalListParams,
    )
    from stripe.params.v2.core import AccountCreateParams as AccountV2CreateParams
    from stripe.params.v2.core import AccountLinkCreateParams as AccountLinkV2CreateParams

    from bountyescrow.ports.gateway import PaymentGateway

LOGGER: Final = logging.getLogger("bountyescrow.stripe")

#: Page size for the look-ups (Stripe's maximum).
PAGE_SIZE: Final = 100

#: The first API version (Stripe's "endive" release) whose PaymentIntents take
#: ``allowed_payment_method_types``; earlier versions call the parameter ``payment_method_types``.
ALLOWED_TYPES_SINCE: Final = "2026-09-30"

#: Seconds the gateway's own client waits for Stripe's answer to one HTTP request.
DEFAULT_TIMEOUT: Final = 30.0
#: Seconds the gateway's own client allows, at most, for each step before that wait: a free
#: connection from its pool, connecting, sending the (small) request.
SETUP_TIMEOUT: Final = 5.0
#: Added to `StripeGateway.max_call_duration` for the work around the HTTP requests.
CALL_MARGIN: Final = timedelta(seconds=10)
#: The SDK's own default timeout, assumed for a client whose timeout cannot be read.
_SDK_TIMEOUT: Final = 80.0

_KEY_MODE = re.compile(r"^(?:sk|rk)_(live|test)_")
_T = TypeVar("_T")

#: The service agreements a host may choose for payees in another country than the platform.
ServiceAgreement = Literal["full", "recipient"]
_AGREEMENTS: Final = ("full", "recipient")

#: Which Stripe API the gateway creates and reads connected accounts with.
AccountsApi = Literal["v1", "v2"]
_ACCOUNTS_APIS: Final = ("v1", "v2")
#: What `get_account` asks an Accounts v2 account to include: v2 leaves configurations out
#: of its answers unless asked, and readiness is read from the recipient configuration.
_V2_INCLUDE: Final = "configuration.recipient"


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, sending the form body as ``content=`` rather than ``data=``.

    stripe.HTTPXClient passes the already-encoded form string as httpx's ``data=``, which httpx
    deprecates with a DeprecationWarning on every POST. Where warnings are errors (our test
    settings, and many hosts' test suites) the warning is raised inside the request and the SDK
    reports it as a connection error, so every POST would look like an outage.
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, str | bytes):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return [args, kwargs]


class StripeGateway(ListCalls):
    """Moves money on Stripe for `EscrowService`: PaymentIntents, Transfers, Refunds, reversals.

    Give it either a ready `stripe.StripeClient` or an API key; with a key it builds its own
    client on the SDK's httpx transport. It never sets the SDK's module-level settings
    (``stripe.api_key``, ``stripe.default_http_client``...), so several gateways (test and
    live, two platforms) and the host's own Stripe code can coexist.
    All calls are made on the platform account (no ``Stripe-Account`` header).

    Args:
        client: a configured `stripe.StripeClient`. Its key must be a secret (``sk_``) or
            restricted (``rk_``) key; otherwise pass `livemode`.
        api_key: a secret or restricted key, used when `client` is not given.
        livemode: test or live mode, needed only when it cannot be read from the key.
        max_network_retries: how many times the SDK itself retries a request that failed on
            the network, with a 409 or a 5xx (always with the same idempotency key).
        timeout: seconds to wait for Stripe's answer to each HTTP request (the SDK's own
            default, 80 s, makes calls outlast reasonable leases). Getting a connection,
            connecting and sending take at most ``min(timeout, 5)`` seconds each.
        platform_country: the platform account's country (two letters). Unset (the default),
            the gateway asks Stripe once (``GET /v1/account``), when it first needs it.
        cross_border_agreement: the service agreement of payees in another country than the
            platform. ``"full"`` (the default; nothing is sent, Stripe's default) is what
            Stripe's cross-border payouts require, between the US, the UK, the EEA, Canada and
            Switzerland; payees outside those regions are refused (`payee_country_problem`).
            ``"recipient"`` sends ``tos_acceptance[service_agreement]=recipient`` for them and
            leaves the country to Stripe: only where Stripe allows it to your platform (its
            Global Payouts). Payees in the platform's country always get the full agreement.
            With ``accounts="v2"`` the account's recipient configuration is its agreement and
            `cross_border_agreement` only chooses which payee countries are refused.
        accounts: the API payees' connected accounts are created and read with. ``"v1"``
            (the default; ``/v1/accounts``, Express-like) keeps existing platforms as they are.
            ``"v2"`` (``/v2/core/accounts``, what Stripe tells new integrations to use) creates
            accounts with the ``recipient`` configuration requesting only
            ``stripe_balance.stripe_transfers``, and reads readiness from that capability.
            Transfers, reversals and events are the same either way: v1 transfers take a v2
            account's id as their destination. Every account is read with the API chosen
            here: a v1 account read through v2 may lack the recipient configuration and look
            not ready, so switch a platform with v1 payees only after checking them.

    Raises:
        ConfigurationError: neither or both of `client` and `api_key`, a publishable key, a
            mode that contradicts the key, or a client without a finite HTTP timeout.
    """

    def __init__(
        self,
        client: stripe.StripeClient | None = None,
        *,
        api_key: str | None = None,
        livemode: bool | None = None,
        max_network_retries: int = 2,
        timeout: float = DEFAULT_TIMEOUT,
        platform_country: str | None = None,
        cross_border_agreement: ServiceAgreement = "full",
        accounts: AccountsApi = "v1",
    ) -> None:
        if (client is None) == (api_key is None):
            raise ConfigurationError(
                "StripeGateway needs either a stripe.StripeClient or api_key=, not both"
            )
        if max_network_retries < 0:
            raise ConfigurationError("max_network_retries must be 0 or more")
        if timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if cross_border_agreement not in _AGREEMENTS:
            raise ConfigurationError(
                f"cross_border_agreement must be 'full' or 'recipient', "
                f"got {cross_border_agreement!r}"
            )
        if accounts not in _ACCOUNTS_APIS:
            raise ConfigurationError(f"accounts must be 'v1' or 'v2', got {accounts!r}")
        self._cross_border_agreement = cross_border_agreement
        self._accounts: AccountsApi = accounts
        self._list_pacer = Pacer()
        self._platform_country: str | None = None
        if platform_country is not None:
            try:
                self._platform_country = _checks.normalize_country(platform_country)
            except ValidationError as exc:
                raise ConfigurationError(f"platform_country: {exc.message}") from exc
        self._platform_lock = threading.Lock()

        self._http: _HTTPXClient | None = None
        key = api_key if api_key is not None else _client_attribute(client, "api_key")
        mode = _mode_of_key(key)
        if api_key is not None and mode is None:
            raise ConfigurationError(
                "api_key must be a secret key (sk_test_..., sk_live_...) or a restricted key "
                "(rk_test_..., rk_live_...); publishable keys cannot move money"
            )
        if livemode is not None and mode is not None and livemode != mode:
            raise ConfigurationError(
                f"livemode={livemode} contradicts the API key, which is a "
                f"{'live' if mode else 'test'} mode key"
            )
        if livemode is None and mode is None:
            raise ConfigurationError(
                "cannot tell test from live mode from the client's API key: pass livemode="
            )
        self._livemode = bool(mode if mode is not None else livemode)

        if client is None:
            assert api_key is not None
            setup = min(timeout, SETUP_TIMEOUT)
            self._http = _HTTPXClient(
                timeout=httpx.Timeout(timeout, connect=setup, write=setup, pool=setup),
                allow_sync_methods=True,
            )
            client = stripe.StripeClient(
                api_key, http_client=self._http, max_network_retries=max_network_retries
            )
        elif _client_attribute(client, "stripe_account"):
            raise ConfigurationError(
                "the StripeClient acts on a connected account (stripe_account=...); the "
                "gateway must act on the platform account"
            )
        self._client = client
        self._max_call_duration = call_budget(
            _client_attribute(client, "_client"), _client_retries(client)
        )
        version = _client_attribute(client, "stripe_version")
        self._api_version = version if isinstance(version, str) else stripe.api_version

    def __repr__(self) -> str:
        accounts = ", accounts='v2'" if self._accounts == "v2" else ""
        return (
            f"StripeGateway(livemode={self._livemode}, "
            f"platform_country={self._platform_country!r}{accounts})"
        )

    @property
    def livemode(self) -> bool:
        """True when the gateway moves real money (a live mode key)."""
        return self._livemode

    @property
    def max_call_duration(self) -> timedelta:
        """The longest one call can take: every attempt the SDK makes, its back-off, a margin.

        ``(max_network_retries + 1) * (timeout + 3 * min(timeout, 5 s)) + back-off + 10 s``;
        with the defaults (30 s, 2 retries) 146.5 s. For a client passed in, its own HTTP
        client's timeout and its retries count: the SDK's default client (requests, 80 s for
        connecting and 80 s for the answer, 2 retries) gives 491.5 s.
        """
        return self._max_call_duration

    @property
    def api_version(self) -> str:
        """The Stripe API version the gateway's requests use (the SDK's, unless pinned)."""
        return self._api_version

    @property
    def platform_country(self) -> str:
        """The platform account's country (two letters, upper case).

        The one the gateway was given; otherwise Stripe's (``GET /v1/account``), asked on first
        use and kept for the gateway's life.

        Raises:
            GatewayError: Stripe could not be asked (see `PaymentGateway`); the next use asks
                again.
        """
        if self._platform_country is None:
            # One request, however many threads want the country at once.
            with self._platform_lock:
                if self._platform_country is None:
                    action = "get_platform_account"
                    with translated(action):
                        account = self._client.v1.accounts.retrieve_current()
                    self._platform_country = self._read(action, account, _account_country)
        return self._platform_country

    @property
    def cross_border_agreement(self) -> ServiceAgreement:
        """The service agreement of payees in another country than the platform."""
        return self._cross_border_agreement

    @property
    def accounts(self) -> AccountsApi:
        """The API payees' connected accounts are created and read with: ``"v1"`` or ``"v2"``."""
        return self._accounts

    def close(self) -> None:
        """Close the HTTP connections the gateway opened (not those of a client passed in)."""
        if self._http is not None:
            self._http.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    def __enter__(self) -> StripeGateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- funding ---------------------------------------------------------------------------

    def create_payment(self, request: CreatePayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Create a PaymentIntent on the platform (``POST /v1/payment_intents``).

        The snapshot carries the client secret the host's frontend confirms the payment with.

        Raises:
            RequestRefusedError: (a `ValidationError` and a `GatewayRejectedError`) the amount
                breaks Stripe's rules (minimum charge, eight digits, three-decimal currencies)
                or another field is malformed; nothing was sent.
            GatewayError: see `PaymentGateway`.
        """
        action = request.action
        _checks.check_amount(action, request.amount, charge=True)
        _checks.check_idempotency_key(action, idempotency_key)
        _checks.check_text(action, "transfer_group", request.transfer_group)
        _checks.check_metadata(action, request.metadata)
        if not request.payment_method_types:
            raise RequestRefusedError(f"{action}: payment_method_types must name at least one")
        # A plain dict: the name of the payment method types parameter depends on the API
        # version, and the SDK's type describes only the version it pins.
        params: dict[str, Any] = {
            "amount": request.amount.amount,
            "currency": request.amount.currency,
            _method_types_parameter(self._api_version): list(request.payment_method_types),
            "transfer_group": request.transfer_group,
            "metadata": dict(request.metadata),
        }
        if request.description is not None:
            params["description"] = request.description
        if request.receipt_email is not None:
            params["receipt_email"] = request.receipt_email
        with translated(action, idempotency_key=idempotency_key):
            intent = self._client.v1.payment_intents.create(
                params=cast("PaymentIntentCreateParams", params),
                options={"idempotency_key": idempotency_key},
            )
        return self._read(action, intent, parse_payment, idempotency_key)

    def cancel_payment(self, request: CancelPayment, *, idempotency_key: str) -> PaymentSnapshot:
        """Cancel a PaymentIntent (``POST /v1/payment_intents/{id}/cancel``).

        An intent that is already cancelled is returned as it is.

        Raises:
            PaymentAlreadySettledError: the intent succeeded or is processing; fetch it and
                apply its state.
            GatewayError: see `PaymentGateway`.
        """
        action = request.action
        _checks.check_ref(action, "payment_ref", request.payment_ref)
        _checks.check_idempotency_key(action, idempotency_key)
        try:
            with translated(action, idempotency_key=idempotency_key):
                intent = self._client.v1.payment_intents.cancel(
                    request.payment_ref, options={"idempotency_key": idempotency_key}
                )
        except PaymentAlreadySettledError as exc:
            # Stripe answers "unexpected state" for an intent cancelled earlier (Dashboard, an
            # earlier key generation) too: that cancel has nothing left to do.
            if reported_intent_status(exc) == "canceled":
                return self.get_payment(request.payment_ref)
            raise
        return self._read(action, intent, parse_payment, idempotency_key)

    def get_payment(self, payment_ref: str) -> PaymentSnapshot:
        """Fetch a PaymentIntent (``GET /v1/payment_intents/{id}``)."""
        _checks.check_ref("get_payment", "payment_ref", payment_ref)
        with translated("get_payment"):
            intent = self._client.v1.payment_intents.retrieve(payment_ref)
        return self._read("get_payment", intent, parse_payment)

    # --- money movements -------------------------------------------------------------------

    def create_transfer(self, request: CreateTransfer, *, idempotency_key: str) -> TransferSnapshot:
        """Transfer to a connected account (``POST /v1/transfers``).

        Raises:
            DestinationNotReadyError: the account cannot receive transfers (yet).
            RequestRefusedError: malformed request; nothing was sent.
            GatewayError: see `PaymentGateway`.
        """
        action = request.action
        _checks.check_amount(action, request.amount)
        _checks.check_idempotency_key(action, idempotency_key)
        _checks.check_ref(action, "destination", request.destination)
        _checks.check_text(action, "transfer_group", request.transfer_group)
        _checks.check_metadata(action, request.metadata)
        params: TransferCreateParams = {
            "amount": request.amount.amount,
            "currency": request.amount.currency,
            "destination": request.destination,
            "transfer_group": request.transfer_group,
            "metadata": dict(request.metadata),
        }
        if request.source_transaction is not None:
            _checks.check_ref(action, "source_transaction", request.source_transaction)
            params["source_transaction"] = request.source_transaction
        with translated(action, idempotency_key=idempotency_key):
            transfer = self._client.v1.transfers.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return self._read(action, transfer, self._transfer_parser(action), idempotency_key)

    def create_refund(self, request: CreateRefund, *, idempotency_key: str) -> RefundSnapshot:
        """Refund (part of) a PaymentIntent (``POST /v1/refunds``); may come back ``pending``.

        Raises:
            RequestRefusedError: malformed request (a reason other than Stripe's three
                included); nothing was sent.
            GatewayError: see `PaymentGateway`.
        """
        action = request.action
        _checks.check_amount(action, request.amount)
        _checks.check_idempotency_key(action, idempotency_key)
        _checks.check_ref(action, "payment_ref", request.payment_ref)
        _checks.check_metadata(action, request.metadata)
        _checks.check_refund_reason(action, request.reason)
        params: RefundCreateParams = {
            "payment_intent": request.payment_ref,
            "amount": request.amount.amount,
            "metadata": dict(request.metadata),
        }
        if request.reason is not None:
            params["reason"] = request.reason
        with translated(action, idempotency_key=idempotency_key):
            refund = self._client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return self._read(action, refund, parse_refund, idempotency_key)

    def create_reversal(self, request: CreateReversal, *, idempotency_key: str) -> ReversalSnapshot:
        """Reverse (part of) a transfer (``POST /v1/transfers/{id}/reversals``).

        Raises:
            InsufficientPayeeBalanceError: the payee's Stripe balance does not cover it.
            RequestRefusedError: malformed request; nothing was sent.
            GatewayError: see `PaymentGateway`.
        """
        action = request.action
        _checks.check_amount(action, request.amount)
        _checks.check_idempotency_key(action, idempotency_key)
        _checks.check_ref(action, "transfer_ref", request.transfer_ref)
        _checks.check_metadata(action, request.metadata)
        params: TransferReversalCreateParams = {
            "amount": request.amount.amount,
            "metadata": dict(request.metadata),
        }
        with translated(action, idempotency_key=idempotency_key):
            reversal = self._client.v1.transfers.reversals.create(
                request.transfer_ref, params=params, options={"idempotency_key": idempotency_key}
            )
        return self._read(action, reversal, parse_reversal, idempotency_key)

    # --- look-ups for recovery (list endpoints; the Search API lags behind by minutes) -------

    def find_transfer(self, *, transfer_group: str, operation_id: str) -> TransferSnapshot | None:
        """Find the transfer an operation made (``GET /v1/transfers?transfer_group=...``)."""
        action = "find_transfer"
        _checks.check_text(action, "transfer_group", transfer_group)

        def page(after: str | None) -> stripe.StripeObject:
            params: TransferListParams = {"transfer_group": transfer_group, "limit": PAGE_SIZE}
            if after is not None:
                params["starting_after"] = after
            return self._client.v1.transfers.list(params=params)

        return self._find(action, page, operation_id, self._transfer_parser(action))

    def find_refund(self, *, payment_ref: str, operation_id: str) -> RefundSnapshot | None:
        """Find the refund an operation made (``GET /v1/refunds?payment_intent=...``)."""
        action = "find_refund"
        _checks.check_ref(action, "payment_ref", payment_ref)

        def page(after: str | None) -> stripe.StripeObject:
            params: RefundListParams = {"payment_intent": payment_ref, "limit": PAGE_SIZE}
            if after is not None:
                params["starting_after"] = after
            return self._client.v1.refunds.list(params=params)

        return self._find(action, page, operation_id, parse_refund)

    def find_reversal(self, *, transfer_ref: str, operation_id: str) -> ReversalSnapshot | None:
        """Find the reversal an operation made (``GET /v1/transfers/{id}/reversals``)."""
        action = "find_reversal"
        _checks.check_ref(action, "transfer_ref", transfer_ref)

        return self._find(action, self._reversal_pages(transfer_ref), operation_id, parse_reversal)

    # --- fetches ---------------------------------------------------------------------------

    def get_refund(self, refund_ref: str) -> RefundSnapshot:
        """Fetch a refund (``GET /v1/refunds/{id}``)."""
        _checks.check_ref("get_refund", "refund_ref", refund_ref)
        with translated("get_refund"):
            refund = self._client.v1.refunds.retrieve(refund_ref)
        return self._read("get_refund", refund, parse_refund)

    def get_transfer(self, transfer_ref: str) -> TransferSnapshot:
        """Fetch a transfer with every reversal (``GET /v1/transfers/{id}``)."""
        action = "get_transfer"
        _checks.check_ref(action, "transfer_ref", transfer_ref)
        with translated(action):
            transfer = self._client.v1.transfers.retrieve(transfer_ref)
        return self._read(action, transfer, self._transfer_parser(action))

    def get_dispute(self, dispute_ref: str) -> DisputeSnapshot:
        """Fetch a dispute with its withdrawn and reinstated totals (``GET /v1/disputes/{id}``)."""
        _checks.check_ref("get_dispute", "dispute_ref", dispute_ref)
        with translated("get_dispute"):
            dispute = self._client.v1.disputes.retrieve(dispute_ref)
        return self._read("get_dispute", dispute, parse_dispute)

    def get_account(self, account_ref: str) -> AccountSnapshot:
        """Fetch a connected account's readiness.

        With ``accounts="v1"``: ``GET /v1/accounts/{id}``, ready when ``capabilities.transfers``
        is ``active``. With ``accounts="v2"``: ``GET /v2/core/accounts/{id}`` with
        ``include=configuration.recipient``, ready when the recipient configuration's
        ``stripe_balance.stripe_transfers`` capability is ``active``; a closed account is
        reported as `AccountSnapshot.deauthorized`.
        """
        action = "get_account"
        _checks.check_ref(action, "account_ref", account_ref)
        if self._accounts == "v2":
            with translated(action):
                v2_account = self._client.v2.core.accounts.retrieve(
                    account_ref, params={"include": [_V2_INCLUDE]}
                )
            return self._read(action, v2_account, parse_account_v2)
        with translated(action):
            account = self._client.v1.accounts.retrieve(account_ref)
        return self._read(action, account, parse_account)

    # --- payees ----------------------------------------------------------------------------

    def payee_country_problem(self, country: str) -> str | None:
        """Why Stripe would refuse a payee in `country`, or None.

        With the full service agreement, a payee outside the platform's country must be, like
        the platform, in the US, the UK, the EEA, Canada or Switzerland
        (`bountyescrow.ports.gateway.cross_border_problem`); asks Stripe for the platform's
        country the first time (`platform_country`). With ``cross_border_agreement="recipient"``
        only the code's form is checked: Stripe decides.

        Raises:
            GatewayError: the platform's country could not be fetched.
        """
        try:
            country = _checks.normalize_country(country)
        except ValidationError as exc:
            return exc.message
        if self._cross_border_agreement == "recipient":
            return None
        return cross_border_problem(self.platform_country, country)

    def create_account(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """Create a connected account that can receive transfers (``POST /v1/accounts``).

        The account is Express-like and requests only the ``transfers`` capability, under the
        full service agreement (Stripe's default, so nothing is sent), which Stripe's
        cross-border payouts require; with ``cross_border_agreement="recipient"`` a payee in
        another country than the platform gets ``tos_acceptance[service_agreement]=recipient``.

        Raises:
            RequestRefusedError: a country that is not a two-letter code, or one
                `payee_country_problem` refuses (code ``country_unsupported``); nothing was
                sent.
            GatewayError: see `PaymentGateway`.
        """
        action = "create_account"
        _checks.check_text(action, "payee_id", payee_id)
        _checks.check_idempotency_key(action, idempotency_key)
        country = _checks.normalize_country(country)
        problem = self.payee_country_problem(country)
        if problem is not None:
            raise RequestRefusedError(f"{action}: {problem}", code="country_unsupported")
        if self._accounts == "v2":
            return self._create_account_v2(
                payee_id=payee_id, email=email, country=country, idempotency_key=idempotency_key
            )
        params: AccountCreateParams = {
            # The controller properties Stripe documents as the equivalent of an Express
            # account; the older `type=express` parameter is deprecated in Stripe's API
            # reference. Stripe collects the requirements and the payee gets the Express
            # Dashboard; the platform pays the fees and carries the losses, which it does for
            # separate charges and transfers anyway.
            "controller": {
                "stripe_dashboard": {"type": "express"},
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "requirement_collection": "stripe",
            },
            "country": country,
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {META_PAYEE: payee_id},
        }
        if email is not None:
            params["email"] = email
        if self._cross_border_agreement == "recipient" and country != self.platform_country:
            params["tos_acceptance"] = {"service_agreement": "recipient"}
        with translated(action, idempotency_key=idempotency_key):
            account = self._client.v1.accounts.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return self._read(action, account, parse_account, idempotency_key)

    def _create_account_v2(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """``POST /v2/core/accounts`` (a JSON body) with the recipient configuration."""
        action = "create_account"
        params: AccountV2CreateParams = {
            # Only what receiving v1 transfers into the account's Stripe balance needs; the
            # recipient configuration is also the account's (recipient) service agreement.
            # Stripe collects the requirements and the payee gets the Express Dashboard; the
            # platform pays the fees and carries the losses, as the v1 accounts' controller
            # properties say.
            "configuration": {
                "recipient": {
                    "capabilities": {"stripe_balance": {"stripe_transfers": {"requested": True}}}
                }
            },
            "dashboard": "express",
            "defaults": {
                "responsibilities": {
                    "fees_collector": "application",
                    "losses_collector": "application",
                }
            },
            "identity": {"country": country},
            "include": [_V2_INCLUDE],
            "metadata": {META_PAYEE: payee_id},
        }
        if email is not None:
            params["contact_email"] = email
        with translated(action, idempotency_key=idempotency_key):
            account = self._client.v2.core.accounts.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return self._read(action, account, parse_account_v2, idempotency_key)

    def create_onboarding_link(self, account_ref: str, *, return_url: str, refresh_url: str) -> str:
        """Return a one-time onboarding URL (``POST /v1/account_links``, account_onboarding;
        with ``accounts="v2"``, ``POST /v2/core/account_links``).

        The link expires after a few minutes and may be used once; when it has expired Stripe
        sends the payee to `refresh_url`, which should ask for a new link.
        """
        action = "create_onboarding_link"
        _checks.check_ref(action, "account_ref", account_ref)
        _checks.check_text(action, "return_url", return_url, max_length=2048)
        _checks.check_text(action, "refresh_url", refresh_url, max_length=2048)
        if self._accounts == "v2":
            v2_params: AccountLinkV2CreateParams = {
                "account": account_ref,
                "use_case": {
                    "type": "account_onboarding",
                    "account_onboarding": {
                        "return_url": return_url,
                        "refresh_url": refresh_url,
                    },
                },
            }
            with translated(action):
                v2_link = self._client.v2.core.account_links.create(params=v2_params)
            return self._read(action, v2_link, _link_url)
        params: AccountLinkCreateParams = {
            "account": account_ref,
            "type": "account_onboarding",
            "return_url": return_url,
            "refresh_url": refresh_url,
        }
        # No idempotency key of ours: a link is single-use, and a retry may make another.
        with translated(action):
            link = self._client.v1.account_links.create(params=params)
        return self._read(action, link, _link_url)

    # --- helpers ---------------------------------------------------------------------------

    def _reversal_pages(self, transfer_ref: str) -> Callable[[str | None], stripe.StripeObject]:
        def page(after: str | None) -> stripe.StripeObject:
            params: TransferReversalListParams = {"limit": PAGE_SIZE}
            if after is not None:
                params["starting_after"] = after
            return self._client.v1.transfers.reversals.list(transfer_ref, params=params)

        return page

    def _transfer_parser(self, action: str) -> Callable[[Json], TransferSnapshot]:
        """Parse a transfer, fetching its reversals when the embedded page is not all of them."""

        def parse(data: Json) -> TransferSnapshot:
            if not reversals_incomplete(data):
                return parse_transfer(data)
            reversals = list(_items(action, self._reversal_pages(_require_id(data))))
            return parse_transfer(data, reversals=reversals)

        return parse

    def _read(
        self,
        action: str,
        obj: stripe.StripeObject,
        parse: Callable[[Json], _T],
        idempotency_key: str | None = None,
    ) -> _T:
        response = _last_response(obj)
        if response is not None and header(response.headers, "idempotent-replayed") == "true":
            LOGGER.info("Stripe replayed its first answer to %s (key %s)", action, idempotency_key)
        return _parse_or_unknown(action, _body(action, obj), parse)

    def _find(
        self,
        action: str,
        page: Callable[[str | None], stripe.StripeObject],
        operation_id: str,
        parse: Callable[[Json], _T],
    ) -> _T | None:
        _checks.check_text(action, "operation_id", operation_id)
        matches = [
            item
            for item in _items(action, page)
            if isinstance(item.get("metadata"), Mapping)
            and item["metadata"].get(META_OPERATION) == operation_id
        ]
        if not matches:
            return None
        if len(matches) > 1:
            refs = [str(item.get("id")) for item in matches]
            alert(
                "second_gateway_object",
                "%d Stripe objects carry operation %s (%s): %s. At most one money movement "
                "per operation is expected; reconcile by hand.",
                len(matches),
                operation_id,
                action,
                ", ".join(refs),
                operation_id=operation_id,
                gateway_refs=refs,
            )
        # Lists come newest first: the oldest object is the one the first attempt made.
        return _parse_or_unknown(action, matches[-1], parse)

    # --- the events list (backfill) ----------------------------------------------------------

    def iter_events(
        self, *, since: datetime, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the platform's events created in ``[since, until]``, oldest first
        (``GET /v1/events``; Stripe keeps 30 days), as the raw JSON a webhook carries.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: see `PaymentGateway`.
        """
        return _events_list.iter_events(self._client, since=since, until=until)


def _items(action: str, page: Callable[[str | None], stripe.StripeObject]) -> Iterator[Json]:
    """Yield every object of a list endpoint, following ``has_more`` page by page."""
    after: str | None = None
    while True:
        with translated(action):
            listing = page(after)
        body = _body(action, listing)
        data = body.get("data")
        if not isinstance(data, list):
            raise GatewayUnavailableError(f"Stripe answered {action} without a list")
        items = [item for item in data if isinstance(item, Mapping)]
        yield from items
        if body.get("has_more") is not True or not items:
            return
        last = items[-1].get("id")
        if not isinstance(last, str):
            raise GatewayUnavailableError(f"Stripe answered {action} with an object without id")
        after = last


def _body(action: str, obj: stripe.StripeObject) -> Json:
    # The raw JSON of the answer: the same shape a webhook carries, so one parser serves both.
    response = _last_response(obj)
    data = response.data if response is not None else None
    if not isinstance(data, Mapping):
        raise GatewayUnavailableError(f"Stripe answered {action} without a JSON object")
    return data


def _last_response(obj: object) -> StripeResponse | None:
    # The SDK hands back whatever JSON came (a list, a number) when it is not an object.
    response = getattr(obj, "last_response", None)
    return response if isinstance(response, StripeResponse) else None


def _parse_or_unknown(action: str, data: Json, parse: Callable[[Json], _T]) -> _T:
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        # Stripe answered, so the request may well have taken effect: unknown, not refused.
        raise GatewayUnavailableError(
            f"Stripe answered {action} with an object bountyescrow cannot read ({exc!r}); "
            f"the outcome is unknown: look the object up."
        ) from exc


def _require_id(data: Json) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not value:
        raise TypeError("object without an id")
    return value


def _method_types_parameter(api_version: str) -> str:
    if api_version[:10] >= ALLOWED_TYPES_SINCE:
        return "allowed_payment_method_types"
    return "payment_method_types"


def _account_country(data: Json) -> str:
    country = data["country"]
    if not isinstance(country, str) or len(country) != 2 or not country.isalpha():
        raise ValueError(f"account country {country!r} is not a two-letter code")
    return country.upper()


def _link_url(data: Json) -> str:
    url = data["url"]
    if not isinstance(url, str) or not url:
        raise TypeError("account link without a url")
    return url


def _mode_of_key(key: object) -> bool | None:
    """True for a live key, False for a test key, None when the key says neither."""
    match = _KEY_MODE.match(key) if isinstance(key, str) else None
    return None if match is None else match.group(1) == "live"


def call_budget(http_client: object, retries: int) -> timedelta:
    """The longest a call can take through the SDK's `http_client` with `retries` (see
    `StripeGateway.max_call_duration`).

    Raises:
        ConfigurationError: the client's timeout leaves a step of the request unbounded.
    """
    attempt = _attempt_seconds(http_client)
    initial, cap = float(stripe.HTTPClient.INITIAL_DELAY), float(stripe.HTTPClient.MAX_DELAY)
    # The SDK sleeps min(initial * 2**(n-1), cap) before retry n, less a random jitter.
    backoff = sum(max(initial, min(initial * 2 ** (n - 1), cap)) for n in range(1, retries + 1))
    return timedelta(seconds=attempt * (retries + 1) + backoff) + CALL_MARGIN


def _attempt_seconds(http_client: object) -> float:
    """The longest one HTTP request can take through an SDK HTTP client, from its timeout."""
    timeout = getattr(http_client, "_timeout", None)
    if isinstance(timeout, httpx.Timeout):
        steps = (timeout.pool, timeout.connect, timeout.write, timeout.read)
        if any(step is None for step in steps):
            raise ConfigurationError(
                f"the Stripe client's HTTP timeout {timeout!r} leaves a step unbounded; a "
                f"gateway call must end before the operation's lease does"
            )
        return sum(cast("float", step) for step in steps)
    if isinstance(timeout, tuple) and all(isinstance(s, int | float) and s > 0 for s in timeout):
        return float(sum(timeout))  # requests' (connect, read)
    seconds = timeout if isinstance(timeout, int | float) and timeout > 0 else _SDK_TIMEOUT
    # requests applies a plain number to connecting and to reading; httpx (and, to be safe,
    # any other client) to each of its four steps.
    return (2.0 if isinstance(http_client, stripe.RequestsClient) else 4.0) * float(seconds)


def _client_retries(client: object) -> int:
    """How many times the client's SDK retries a request (the SDK's global default if unset)."""
    options = getattr(getattr(client, "_requestor", None), "_options", None)
    retries = getattr(options, "max_network_retries", None)
    if not isinstance(retries, int):
        retries = stripe.max_network_retries
    return retries if isinstance(retries, int) and retries > 0 else 0


def _client_attribute(client: object, name: str) -> object:
    # StripeClient has no public accessor for its settings; reading its requestor's options is
    # the only way to tell test from live mode and to refuse a connected-account client.
    return getattr(getattr(client, "_requestor", None), name, None)


if TYPE_CHECKING:

    def _conforms(gateway: StripeGateway) -> PaymentGateway:
        return gateway
