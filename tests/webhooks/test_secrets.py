"""Signing secrets, signatures and PaymentIntent client secrets never reach a log line, a
response body or the event log."""

from __future__ import annotations

import logging
import re
import time

import pytest

from bountyescrow import EscrowService
from bountyescrow.testing import FakeGateway, ManualClock
from bountyescrow.webhooks import WebhookDispatcher, WebhookResponse, asgi_app, wsgi_app

from .support import HidingStore, open_escrow, payload_of, signed
from .test_mounts import call_asgi, call_wsgi

NEW_SECRET = "whsec_NEWsecretVALUE0123456789"
OLD_SECRET = "whsec_test"


def test_nothing_secret_is_logged_or_answered(
    fake: FakeGateway, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = HidingStore()
    service = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)  # type: ignore[arg-type]
    dispatcher = WebhookDispatcher(service, secrets=[NEW_SECRET, OLD_SECRET])
    esc = open_escrow(service)
    assert esc.payment_ref is not None
    assert esc.client_secret is not None
    fake.pay(esc.payment_ref)
    event = payload_of(fake, "payment_intent.succeeded")
    body, headers = signed(fake, event)
    signature = headers["Stripe-Signature"]
    secret_looking = {NEW_SECRET, OLD_SECRET, esc.client_secret}
    secret_looking |= set(re.findall(r"v1=([0-9a-f]{64})", signature))
    secret_looking.add(fake.sign(body, secret=NEW_SECRET).split("v1=")[1])

    answers: list[WebhookResponse] = [
        dispatcher.handle(body=body, headers={}),
        dispatcher.handle(body=body, headers={"Stripe-Signature": "t=1,v1=" + "ab" * 32}),
        dispatcher.handle(body=body.replace(b"25000", b"25001"), headers=headers),
        dispatcher.handle(*signed(fake, event, secret="whsec_wrong")),
        dispatcher.handle(*signed(fake, event, timestamp=int(time.time()) - 3600)),
    ]
    with store.hiding(esc.id):
        answers.append(dispatcher.handle(body=body, headers=headers))  # 500, payload stored
    answers.append(dispatcher.replay(event["id"]))
    answers.append(dispatcher.handle(body=body, headers=headers))
    assert [a.status for a in answers] == [400, 400, 400, 400, 400, 500, 200, 200]
    mounted = [
        call_asgi(asgi_app(dispatcher), headers=[(b"stripe-signature", b"t=1,v1=00")]).body,
        call_wsgi(wsgi_app(dispatcher), body=body, headers={"Stripe-Signature": "v1=x"}).body,
    ]

    record = service.webhook_event(event["id"])
    assert record is not None
    texts = {
        "log": caplog.text + "".join(repr(r.__dict__) for r in caplog.records),
        "bodies": b"".join([*(a.body for a in answers), *mounted]).decode(),
        "headers": repr([a.headers for a in answers]),
        "dispatcher": repr(dispatcher),
        "event log": repr(record),
    }
    for where, text in texts.items():
        for secret in secret_looking:
            assert secret not in text, f"a secret appears in the {where}"
    assert "signature_mismatch" in caplog.text  # the failure class is logged, and only that
