"""`FakeGateway` itself: the class, assembled from the package's parts, with the calls of
the `PaymentGateway` port (reads, then keyed calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final
from urllib.parse import urlencode

from bountyescrow.domain.gateway_objects import (
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
    request_to_dict,
)
from bountyescrow.errors import GatewayRejectedError, PaymentAlreadySettledError
from bountyescrow.ports.gateway import (
    RequestRefusedError,
    check_amount,
    check_metadata,
    cross_border_problem,
)
from bountyescrow.testing._fake_gateway._controls_incidents import _IncidentControls
from bountyescrow.testing._fake_gateway._controls_parties import _PartyControls
from bountyescrow.testing._fake_gateway._idempotency import _KeyedCalls
from bountyescrow.testing._fake_gateway._lists import _Lists
from bountyescrow.testing._fake_gateway._state import _metadata_op
from bountyescrow.testing._fake_stripe_json import AccountRecord, PaymentIntentRecord

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


class FakeGateway(_PartyControls, _IncidentControls, _Lists, _KeyedCalls):
    """A deterministic, in-memory Stripe for tests: a `PaymentGateway` with test controls.

    Args:
        webhook_secret: the endpoint secret event bodies are signed with (give the same one to
            `WebhookDispatcher`).
        clock: the time used for ``created`` fields and to forget idempotency keys after 24 h
            (default: the wall clock).
        livemode: what the snapshots and events say; tests keep the default, False.
        platform_country: the platform's country. Payees elsewhere are refused as Stripe
            refuses them (`payee_country_problem`).
        cross_border_agreement: the service agreement of accounts in another country than the
            platform, as `StripeGateway` takes it: ``"full"`` (the default; payees outside the
            US, the UK, the EEA, Canada and Switzerland are refused) or ``"recipient"`` (any
            country; the accounts say ``recipient``). Accounts at home always say ``full``.
        accounts: the API payees' accounts are shown and read with, as `StripeGateway` takes
            it: ``"v1"`` (the default) or ``"v2"`` (Accounts v2 with the recipient
            configuration: readiness is read from its ``stripe_balance.stripe_transfers``
            capability, ``restricted`` until `complete_onboarding` makes it ``active``;
            `account_v2_json` shows the account as Stripe's v2 API would). Ids, transfers and
            events are the same either way.
        signing_clock: the time webhook signatures carry (default: the wall clock, which is
            what the Stripe SDK checks the 300 s tolerance against).
        max_call_duration: what `max_call_duration` says (default 5 s); the service's lease
            must be at least this long.
    """

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

    def payee_country_problem(self, country: str) -> str | None:
        """Why Stripe would refuse a payee in `country`, or None: not a two-letter code, or
        (with the full agreement) outside the regions Stripe's cross-border payouts connect
        (`bountyescrow.ports.gateway.cross_border_problem`)."""
        code = country.upper() if isinstance(country, str) else ""
        if len(code) != 2 or not code.isalpha():
            return f"country must be a two-letter ISO code such as 'US', got {country!r}"
        if self.cross_border_agreement == "recipient":
            return None
        return cross_border_problem(self.platform_country, code)

    def create_account(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """Create an Express account requesting ``transfers`` (with ``accounts="v2"``, a
        recipient account requesting ``stripe_balance.stripe_transfers``); it is not ready
        until onboarded.

        Raises:
            RequestRefusedError: `payee_id` does not fit in Stripe metadata, or
                `payee_country_problem` refuses `country` (code ``country_unsupported``);
                nothing happened.
        """
        check_metadata("create_account", {META_PAYEE: payee_id})
        problem = self.payee_country_problem(country)
        if problem is not None:
            raise RequestRefusedError(f"create_account: {problem}", code="country_unsupported")
        fingerprint = {
            "action": "create_account", "payee_id": payee_id, "email": email, "country": country
        }  # fmt: skip

        def execute(mode: str | None) -> AccountSnapshot:
            code = country.upper()
            cross_border = code != self.platform_country
            currency = "eur" if code in _EURO_COUNTRIES else _COUNTRY_CURRENCY.get(code, "usd")
            account = AccountRecord(
                id=self._next_id("acct"),
                country=code,
                email=email,
                default_currency=currency,
                created=self._ts(),
                metadata={META_PAYEE: payee_id},
                service_agreement=(
                    "recipient"
                    if cross_border and self.cross_border_agreement == "recipient"
                    else "full"
                ),
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
