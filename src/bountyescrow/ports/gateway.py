"""The payment gateway port: single calls to the payment provider, nothing sequenced.

Sequencing (reversal before refund, retries, recovery) belongs to the service. Every method
either returns the provider's view of the object or raises a `bountyescrow.errors.GatewayError`
subclass; no provider exception crosses this boundary.
"""

from __future__ import annotations

from typing import Protocol

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


class PaymentGateway(Protocol):
    """Moves money at the payment provider (Stripe, or the in-memory `FakeGateway`).

    Money-moving calls take the stored request and an idempotency key; sending the same key
    and request again must not move money twice. Errors:

    - `GatewayUnavailableError`: the outcome is unknown (timeout, connection, 5xx, rate limit);
      `replayed` is set when the provider replayed a stored error for the key.
    - `GatewayRejectedError` and subclasses: definitive refusal, nothing happened.
    - `IdempotencyMismatchError`: the key was used with other parameters (a bug).
    - `GatewayAuthenticationError`: credentials refused.
    """

    @property
    def livemode(self) -> bool:
        """True when the gateway moves real money."""
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

    def get_dispute(self, dispute_ref: str) -> DisputeSnapshot:
        """Fetch a dispute with its withdrawn and reinstated totals."""
        ...

    def get_account(self, account_ref: str) -> AccountSnapshot:
        """Fetch a connected account's readiness."""
        ...

    def create_account(
        self, *, payee_id: str, email: str | None, country: str, idempotency_key: str
    ) -> AccountSnapshot:
        """Create a connected account able to receive transfers."""
        ...

    def create_onboarding_link(self, account_ref: str, *, return_url: str, refresh_url: str) -> str:
        """Return a one-time URL where the payee completes onboarding."""
        ...
