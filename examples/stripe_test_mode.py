"""A whole escrow story against your Stripe account in test mode.

    STRIPE_API_KEY=sk_test_... python examples/stripe_test_mode.py

The poster opens an escrow and pays with a test card; the hunter gets a connected account; the
poster releases part of the bounty to the hunter and an admin refunds the rest. Webhooks are
not needed: where Stripe would send an event, the script fetches the object and hands it to
`service.apply_event` itself, as the webhook dispatcher would.

Onboarding a connected account needs a browser. When the script runs in a terminal it prints
the onboarding link and waits; complete it with Stripe's test data and press Enter. Otherwise
(or if you just press Enter) the release waits for the payee and is cancelled at the end.

Only test mode keys are accepted: nothing here moves real money.
"""

from __future__ import annotations

import os
import sys
import uuid

import stripe

from bountyescrow import (
    Actor,
    EscrowService,
    GatewayEvent,
    Money,
    OperationStatus,
    RoleBasedPolicy,
)
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.domain.gateway_objects import GatewayObject
from bountyescrow.testing import InMemoryStore

# A test card whose funds are available at once (no pending balance), so transfers and
# refunds work right away.
TEST_PAYMENT_METHOD = "pm_card_bypassPending"


def deliver(service: EscrowService, event_type: str, snapshot: GatewayObject) -> None:
    """Apply what a webhook about `snapshot` would carry (the dispatcher does this for real)."""
    event = GatewayEvent(
        id=f"evt_example_{uuid.uuid4().hex[:16]}",
        type=event_type,
        object=snapshot,
        livemode=False,
    )
    status = service.apply_event(event)
    print(f"  {event_type} for {snapshot.ref}: {status}")


def main() -> int:
    key = os.environ.get("STRIPE_API_KEY", "")
    if not key:
        print("Set STRIPE_API_KEY to a test mode secret key (sk_test_...) to run this example.")
        return 2
    if not key.startswith(("sk_test_", "rk_test_")):
        print("This example only runs with a test mode key (sk_test_... or rk_test_...).")
        return 2

    run = uuid.uuid4().hex[:8]
    poster = Actor("poster-1")
    admin = Actor("admin-1", roles={"admin"})
    hunter_id = f"hunter-{run}"

    with StripeGateway(api_key=key, platform_country="US") as gateway:
        service = EscrowService(
            store=InMemoryStore(),
            gateway=gateway,
            policy=RoleBasedPolicy(),
            fee_bps=1_000,
            namespace=f"example-{run}",
        )

        print("1. The poster opens an escrow of $250.00")
        escrow = service.open_escrow(
            bounty_id=f"bounty-{run}",
            poster_id=poster.id,
            amount=Money(25_000, "usd"),
            actor=poster,
            idempotency_key=f"open:{run}",
        )
        payment_ref = escrow.payment_ref
        if payment_ref is None or escrow.client_secret is None:
            print("  Stripe's answer was lost; run the example again.")
            return 1
        print(f"  escrow {escrow.id}: {escrow.status.value}, PaymentIntent {payment_ref}")

        print("2. The poster pays (the frontend would confirm with the client secret)")
        browser = stripe.StripeClient(key, http_client=stripe.HTTPXClient(allow_sync_methods=True))
        browser.v1.payment_intents.confirm(
            payment_ref, params={"payment_method": TEST_PAYMENT_METHOD}
        )
        deliver(service, "payment_intent.succeeded", gateway.get_payment(payment_ref))
        escrow = service.get(escrow.id)
        print(f"  escrow {escrow.status.value}, holding {escrow.held}")

        print("3. The hunter gets a connected account")
        payee = service.register_payee(hunter_id, email="hunter@example.com", country="US")
        link = service.onboarding_link(
            hunter_id,
            return_url="https://example.com/onboarding/done",
            refresh_url="https://example.com/onboarding/again",
        )
        print(f"  account {payee.account_ref}, ready: {payee.ready}")
        if sys.stdin.isatty():
            print(f"  Complete onboarding with Stripe's test data:\n  {link}")
            input("  Press Enter when done (or now, to skip): ")
        deliver(service, "account.updated", gateway.get_account(payee.account_ref))

        print("4. The poster releases $150.00 to the hunter (10% platform fee)")
        release = service.release(
            escrow.id,
            payee_id=hunter_id,
            amount=Money(15_000, "usd"),
            actor=poster,
            idempotency_key=f"release:{run}",
        )
        print(f"  release {release.id}: {release.status.value}, net {release.net}")
        if release.status is OperationStatus.AWAITING_PAYEE:
            print("  The hunter is not onboarded: the release waits; cancel it for this demo")
            service.cancel_operation(release.id, actor=poster, idempotency_key=f"cancel:{run}")

        print("5. An admin refunds whatever the escrow still holds")
        refund = service.refund(
            escrow.id, amount=None, actor=admin, idempotency_key=f"refund:{run}"
        )
        print(f"  refund {refund.id}: {refund.status.value}, {refund.gross}")
        if refund.status is OperationStatus.PENDING and refund.gateway_ref is not None:
            deliver(service, "refund.updated", gateway.get_refund(refund.gateway_ref))

        escrow = service.get(escrow.id)
        print("6. Where the money is")
        print(
            f"  status {escrow.status.value}: funded {escrow.funded}, held {escrow.held}, "
            f"released {escrow.released} (fees {escrow.fees}), refunded {escrow.refunded}"
        )
        for operation in service.operations(escrow.id):
            print(
                f"  {operation.kind.value:<10} {operation.status.value:<15} "
                f"{operation.gross} -> {operation.gateway_ref}"
            )
        print(f"  ledger entries: {len(service.ledger(escrow.id))}")
        print(f"  required reserve now: {service.required_reserve('usd')}")
        problems = service.check_invariants()
        print(f"  invariants: {problems or 'all hold'}")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
