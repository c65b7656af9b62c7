"""Helpers for the fake gateway's tests: requests, set-ups and stand-in webhook targets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_OPERATION,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    GatewayEvent,
    PaymentSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.testing import FakeGateway

ESCROW = "esc_1"


def usd(amount: int) -> Money:
    return Money(amount, "usd")


def payment_request(
    amount: int = 10_000, *, escrow: str = ESCROW, currency: str = "usd"
) -> CreatePayment:
    return CreatePayment(
        amount=Money(amount, currency),
        transfer_group=escrow,
        metadata={META_ESCROW: escrow, META_OPERATION: f"op_fund_{escrow}", "bounty_id": "b1"},
    )


def created(fake: FakeGateway, amount: int = 10_000, *, key: str = "k-pay") -> PaymentSnapshot:
    return fake.create_payment(payment_request(amount), idempotency_key=key)


def paid(fake: FakeGateway, amount: int = 10_000, *, key: str = "k-pay") -> PaymentSnapshot:
    payment = created(fake, amount, key=key)
    fake.pay(payment.ref)
    return fake.get_payment(payment.ref)


def account(fake: FakeGateway, *, payee: str = "u2", country: str = "US") -> str:
    return fake.create_account(
        payee_id=payee,
        email=f"{payee}@example.com",
        country=country,
        idempotency_key=f"acct:{payee}",
    ).ref


def ready_account(fake: FakeGateway, *, payee: str = "u2") -> str:
    ref = account(fake, payee=payee)
    fake.complete_onboarding(ref)
    return ref


def transfer_request(
    payment: PaymentSnapshot, destination: str, amount: int = 9_000, *, op: str = "op_t1"
) -> CreateTransfer:
    return CreateTransfer(
        amount=Money(amount, payment.amount.currency),
        destination=destination,
        source_transaction=payment.charge_ref,
        transfer_group=ESCROW,
        metadata={META_ESCROW: ESCROW, META_OPERATION: op},
    )


def refund_request(payment_ref: str, amount: int = 1_000, *, op: str = "op_r1") -> CreateRefund:
    return CreateRefund(
        amount=usd(amount),
        payment_ref=payment_ref,
        metadata={META_ESCROW: ESCROW, META_OPERATION: op},
    )


def reversal_request(
    transfer_ref: str, amount: int = 1_000, *, op: str = "op_v1"
) -> CreateReversal:
    return CreateReversal(
        amount=usd(amount),
        transfer_ref=transfer_ref,
        metadata={META_ESCROW: ESCROW, META_OPERATION: op},
    )


def funded_transfer(
    fake: FakeGateway, amount: int = 9_000
) -> tuple[PaymentSnapshot, TransferSnapshot]:
    """A paid PaymentIntent and a transfer of `amount` from it to a ready account."""
    payment = paid(fake)
    transfer = fake.create_transfer(
        transfer_request(payment, ready_account(fake), amount), idempotency_key="k-tr"
    )
    return payment, transfer


def types(fake: FakeGateway) -> list[str]:
    return [event.type for event in fake.pending_events]


class RecordingService:
    """Stands in for `EscrowService`: records what `apply_event` receives."""

    def __init__(self) -> None:
        self.events: list[GatewayEvent] = []

    def apply_event(self, event: GatewayEvent) -> str:
        self.events.append(event)
        return event.id


class RecordingDispatcher:
    """Stands in for `WebhookDispatcher`: checks each signature with the Stripe SDK."""

    def __init__(self, secret: str = "whsec_test") -> None:
        self.secret = secret
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[Mapping[str, str]] = []

    def handle(self, *, body: bytes, headers: Mapping[str, str]) -> int:
        import stripe

        try:
            stripe.WebhookSignature.verify_header(
                body.decode(), headers["Stripe-Signature"], self.secret, tolerance=300
            )
        except stripe.SignatureVerificationError:
            return 400
        self.bodies.append(json.loads(body))
        self.headers.append(headers)
        return 200
