"""Unsigned events are confirmed with the gateway before they move money state.

`stripe.Event.construct_from(posted_dict, key)` builds a `stripe.Event` without any signature,
and `service.apply_event` is public: whatever they report about a payment, a transfer or its
reversals is fetched from the gateway and applied as the gateway says.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import stripe

from bountyescrow import Actor, EscrowService, Money, OperationStatus, errors
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock, books_agree
from bountyescrow.webhooks import WebhookDispatcher

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})


def world() -> tuple[EscrowService, FakeGateway, ManualClock, str]:
    """A 10,000 usd escrow released in full to a ready hunter (9,000 after the fee)."""
    clock = ManualClock()
    fake = FakeGateway(clock=clock)
    service = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="t", clock=clock)
    payee = service.register_payee("hunter-1", country="US")
    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)
    esc = service.open_escrow(
        bounty_id="b1", poster_id=POSTER.id, amount=Money(10_000, "usd"), actor=POSTER
    )
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return service, fake, clock, esc.id


def forged_reversal() -> dict[str, Any]:
    """A real-looking `transfer.reversed` payload, taken from a twin world (same ids)."""
    twin, twin_fake, _, escrow_id = world()
    twin.release(escrow_id, payee_id="hunter-1", actor=POSTER, idempotency_key="rel-1")
    twin_fake.reverse_outside("tr_0001")
    payload = next(p for p in twin_fake.pending_payloads if p["type"] == "transfer.reversed")
    forged: dict[str, Any] = json.loads(json.dumps(payload))
    forged["id"] = "evt_forged"
    return forged


class TestUnsignedTransfers:
    def test_a_forged_reversal_puts_no_money_back_into_the_escrow(self) -> None:
        service, fake, _, escrow_id = world()
        service.release(escrow_id, payee_id="hunter-1", actor=POSTER, idempotency_key="rel-1")
        fake.deliver(service)
        event = stripe.Event.construct_from(forged_reversal(), "sk_test_unused")
        WebhookDispatcher(service, ["whsec_test"]).handle_event(event)
        assert service.get(escrow_id).held == Money(0, "usd")
        with pytest.raises(errors.InsufficientFundsError):
            service.refund(escrow_id, actor=ADMIN, idempotency_key="refund-all")
        assert [m.kind for m in fake.movements] == ["transfer"]
        assert books_agree(service, fake) == []

    def test_a_forged_transfer_does_not_complete_a_release_nobody_paid(self) -> None:
        service, fake, clock, escrow_id = world()
        fake.fail_next("transfer", "unavailable")
        op = service.release(escrow_id, payee_id="hunter-1", actor=POSTER, idempotency_key="r")
        assert op.status is OperationStatus.PENDING
        account = service.get_payee("hunter-1").account_ref
        payload = {
            "id": "evt_forged_transfer", "object": "event", "api_version": "2025-01-01",
            "created": 1767225600, "livemode": False, "pending_webhooks": 1,
            "type": "transfer.created",
            "data": {"object": {
                "id": "tr_forged", "object": "transfer", "amount": 9000, "amount_reversed": 0,
                "currency": "usd", "destination": account, "created": 1767225600,
                "livemode": False, "reversed": False, "source_transaction": "ch_0001",
                "transfer_group": f"escrow_{escrow_id}",
                "metadata": {"bountyescrow_escrow_id": escrow_id,
                             "bountyescrow_operation_id": op.id,
                             "bountyescrow_namespace": "t", "bounty_id": "b1"},
                "reversals": {"object": "list", "data": [], "has_more": False,
                              "total_count": 0, "url": "/v1/transfers/tr_forged/reversals"},
            }},
        }  # fmt: skip
        response = WebhookDispatcher(service, ["whsec_test"]).handle_event(
            stripe.Event.construct_from(payload, "sk_test_unused")
        )
        assert response.status == 500  # the gateway has no such transfer: an alert, retried
        assert service.get_operation(op.id).status is OperationStatus.PENDING
        clock.advance(timedelta(hours=2))
        service.recover()
        fake.deliver(service)
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        assert fake.balance(account) == Money(9_000, "usd")
        assert books_agree(service, fake) == []
