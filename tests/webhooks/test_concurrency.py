"""The same event delivered on several threads at once: every delivery answers 200 and the
money moves once (the service serialises units of work; the event log dedupes)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bountyescrow import EscrowService, EscrowStatus, OperationKind
from bountyescrow.testing import FakeGateway
from bountyescrow.webhooks import WebhookDispatcher, WebhookResponse

from .support import JSON, funded, open_escrow, payload_of, signed, usd

THREADS = 8


def hammer(
    dispatcher: WebhookDispatcher, fake: FakeGateway, payload: JSON
) -> list[WebhookResponse]:
    body, headers = signed(fake, payload)
    start = threading.Barrier(THREADS)

    def one(_: int) -> WebhookResponse:
        start.wait()
        return dispatcher.handle(body=body, headers=headers)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


class TestSameEventOnManyThreads:
    def test_a_payment_is_booked_once(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = open_escrow(service)
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        responses = hammer(dispatcher, fake, payload_of(fake, "payment_intent.succeeded"))
        assert [r.status for r in responses] == [200] * THREADS
        assert {r.json()["status"] for r in responses} == {"processed"}
        after = service.get(esc.id)
        assert after.status is EscrowStatus.FUNDED
        assert after.funded == usd(25_000)
        assert [e.type for e in service.events(limit=1000)].count("escrow.funded") == 1
        assert service.check_invariants() == []

    def test_a_dashboard_refund_is_adopted_once(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher
    ) -> None:
        esc = funded(service, fake, dispatcher)
        assert esc.payment_ref is not None
        fake.refund_outside(esc.payment_ref, amount=usd(6_000))
        responses = hammer(dispatcher, fake, payload_of(fake, "charge.refunded"))
        assert [r.status for r in responses] == [200] * THREADS
        external = [
            op for op in service.operations(esc.id) if op.kind is OperationKind.EXTERNAL_REFUND
        ]
        assert len(external) == 1
        assert service.get(esc.id).refunded == usd(6_000)
