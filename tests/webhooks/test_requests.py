"""Requests the dispatcher refuses (400, nothing written), and the ones it must accept:
rotated secrets, any header spelling, its own mode only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from bountyescrow import EscrowService, EscrowStatus
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import ConfigurationError
from bountyescrow.testing import FakeGateway, InMemoryStore
from bountyescrow.webhooks import DEFAULT_MAX_BODY_BYTES, WebhookDispatcher, WebhookResponse

from .support import (
    JSON,
    SECRET,
    nothing_written,
    open_escrow,
    payload_of,
    post,
    signed,
    status_of,
    usd,
)

Request = tuple[bytes, Any]
Builder = Callable[[FakeGateway, JSON], Request]


@pytest.fixture
def paid(service: EscrowService, fake: FakeGateway) -> JSON:
    """A ``payment_intent.succeeded`` event not delivered yet (the escrow awaits funding)."""
    esc = open_escrow(service)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    return payload_of(fake, "payment_intent.succeeded")


def sign_body(fake: FakeGateway, body: bytes, **options: Any) -> Request:
    return body, {"Stripe-Signature": fake.sign(body, **options)}


def with_header(value: str) -> Builder:
    def build(fake: FakeGateway, payload: JSON) -> Request:
        body, _ = signed(fake, payload)
        return body, {"Stripe-Signature": value}

    return build


def without_header(fake: FakeGateway, payload: JSON) -> Request:
    body, headers = signed(fake, payload)
    del headers["Stripe-Signature"]
    return body, headers


def header_twice(fake: FakeGateway, payload: JSON) -> Request:
    body, headers = signed(fake, payload)
    value = headers["Stripe-Signature"]
    return body, [("Stripe-Signature", value), ("stripe-signature", value)]


def tampered(fake: FakeGateway, payload: JSON) -> Request:
    body, headers = signed(fake, payload)
    assert b'"amount_received": 25000' in body
    return body.replace(b'"amount_received": 25000', b'"amount_received": 99000'), headers


def wrong_secret(fake: FakeGateway, payload: JSON) -> Request:
    return signed(fake, payload, secret="whsec_someone_else")


def stale(fake: FakeGateway, payload: JSON) -> Request:
    return signed(fake, payload, timestamp=int(time.time()) - 301)


def too_large(fake: FakeGateway, payload: JSON) -> Request:
    body = json.dumps(payload).encode() + b" " * DEFAULT_MAX_BODY_BYTES
    return sign_body(fake, body)


def not_utf8(fake: FakeGateway, payload: JSON) -> Request:
    return sign_body(fake, b"\xff\xfe{}")


def not_json(fake: FakeGateway, payload: JSON) -> Request:
    return sign_body(fake, b"event=payment_intent.succeeded")


def json_of(change: Callable[[JSON], object]) -> Builder:
    def build(fake: FakeGateway, payload: JSON) -> Request:
        copy = json.loads(json.dumps(payload))
        document = change(copy)
        return sign_body(fake, json.dumps(copy if document is None else document).encode())

    return build


def _set(path: str, value: object) -> Callable[[JSON], None]:
    *parents, leaf = path.split(".")

    def change(document: JSON) -> None:
        for key in parents:
            document = document[key]
        document[leaf] = value

    return change


def _drop(path: str) -> Callable[[JSON], None]:
    *parents, leaf = path.split(".")

    def change(document: JSON) -> None:
        for key in parents:
            document = document[key]
        del document[leaf]

    return change


BAD_REQUESTS: list[tuple[str, Builder, str]] = [
    ("missing header", without_header, "missing_signature"),
    ("empty header", with_header(""), "missing_signature"),
    ("garbage header", with_header("garbage"), "malformed_signature"),
    ("no timestamp", with_header("v1=" + "0" * 64), "malformed_signature"),
    ("timestamp not a number", with_header("t=abc,v1=" + "0" * 64), "malformed_signature"),
    ("no v1 signature", with_header("t=1767225600,v0=" + "0" * 64), "malformed_signature"),
    ("header sent twice", header_twice, "malformed_signature"),
    ("tampered body", tampered, "signature_mismatch"),
    ("wrong secret", wrong_secret, "signature_mismatch"),
    ("stale timestamp", stale, "stale_timestamp"),
    ("body over the limit", too_large, "body_too_large"),
    ("not UTF-8", not_utf8, "invalid_body"),
    ("not JSON", not_json, "invalid_json"),
    ("a JSON array", json_of(lambda d: [d]), "malformed_event"),
    ("no event id", json_of(_drop("id")), "malformed_event"),
    ("event id with a colon", json_of(_set("id", "evt_1:re_1")), "malformed_event"),
    ("created as a string", json_of(_set("created", "1767225600")), "malformed_event"),
    ("livemode as a string", json_of(_set("livemode", "false")), "malformed_event"),
    ("not an event", json_of(_set("object", "payment_intent")), "malformed_event"),
    ("no data.object", json_of(_drop("data.object")), "malformed_event"),
    ("object of another kind", json_of(_set("data.object.object", "charge")), "malformed_event"),
    ("object without amount", json_of(_drop("data.object.amount")), "malformed_event"),
    ("boolean amount", json_of(_set("data.object.amount", True)), "malformed_event"),
    ("bad currency", json_of(_set("data.object.currency", "dollars!")), "malformed_event"),
    ("metadata not an object", json_of(_set("data.object.metadata", ["x"])), "malformed_event"),
    ("live mode event", json_of(_set("livemode", True)), "wrong_mode"),
]


class TestRefused:
    @pytest.mark.parametrize(
        ("build", "failure"),
        [pytest.param(build, failure, id=name) for name, build, failure in BAD_REQUESTS],
    )
    def test_bad_input_is_a_400_naming_only_the_failure_and_nothing_is_written(
        self,
        build: Builder,
        failure: str,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        body, headers = build(fake, paid)
        with nothing_written(store, service):
            response = dispatcher.handle(body=body, headers=headers)
        assert response.status == 400
        assert response.json() == {"error": failure}
        assert response.headers == {"Content-Type": "application/json"}
        assert status_of(service, paid["id"]) is None
        [esc] = service.find(bounty_id="b1")
        assert esc.status is EscrowStatus.AWAITING_FUNDING
        # The same event, correctly signed, still goes through afterwards.
        assert post(dispatcher, fake, paid).status == 200

    def test_a_str_body_is_a_programming_error(self, dispatcher: WebhookDispatcher) -> None:
        with pytest.raises(TypeError, match="raw request bytes"):
            dispatcher.handle(body="{}", headers={})  # type: ignore[arg-type]

    def test_headers_as_a_string_are_a_programming_error(
        self, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        body, headers = signed(fake, paid)
        with pytest.raises(TypeError, match="headers"):
            dispatcher.handle(body=body, headers=headers["Stripe-Signature"])  # type: ignore[arg-type]

    def test_a_smaller_body_limit(
        self, service: EscrowService, fake: FakeGateway, paid: JSON
    ) -> None:
        small = WebhookDispatcher(service, secrets=[SECRET], max_body_bytes=1_000)
        response = post(small, fake, paid)
        assert (response.status, response.json()) == (400, {"error": "body_too_large"})

    def test_a_longer_tolerance_accepts_an_older_signature(
        self, service: EscrowService, fake: FakeGateway, paid: JSON
    ) -> None:
        patient = WebhookDispatcher(service, secrets=[SECRET], tolerance=900)
        response = post(patient, fake, paid, timestamp=int(time.time()) - 600)
        assert response.status == 200


class TestSecrets:
    def test_old_and_new_secret_are_both_accepted_during_a_rotation(
        self, service: EscrowService, fake: FakeGateway, paid: JSON
    ) -> None:
        rotating = WebhookDispatcher(service, secrets=["whsec_new", SECRET])
        assert post(rotating, fake, paid).json()["status"] == "processed"
        assert post(rotating, fake, paid, secret="whsec_new").json()["status"] == "processed"
        refused = post(rotating, fake, paid, secret="whsec_retired")
        assert (refused.status, refused.json()) == (400, {"error": "signature_mismatch"})

    def test_a_header_with_several_signatures_passes_if_one_matches(
        self, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        """Stripe sends one v1 per secret while an endpoint secret is being rolled."""
        body, headers = signed(fake, paid)
        other = fake.sign(body, secret="whsec_other").split(",")[1]
        headers["Stripe-Signature"] = f"{headers['Stripe-Signature']},{other}"
        assert dispatcher.handle(body=body, headers=headers).status == 200

    @pytest.mark.parametrize(
        "secrets",
        [
            pytest.param("whsec_test", id="a single string"),
            pytest.param([], id="none"),
            pytest.param([""], id="an empty one"),
            pytest.param(["whsec_test", 3], id="not a string"),
        ],
    )
    def test_misconfigured_secrets_are_refused(self, service: EscrowService, secrets: Any) -> None:
        with pytest.raises(ConfigurationError, match="secret"):
            WebhookDispatcher(service, secrets=secrets)

    @pytest.mark.parametrize(
        "option", [{"tolerance": 0}, {"max_body_bytes": 0}, {"tolerance": True}]
    )
    def test_limits_must_be_positive(self, service: EscrowService, option: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            WebhookDispatcher(service, secrets=[SECRET], **option)

    def test_repr_hides_the_secrets(self, service: EscrowService) -> None:
        dispatcher = WebhookDispatcher(service, secrets=["whsec_abcdef", "whsec_ghijkl"])
        assert repr(dispatcher) == (
            "WebhookDispatcher(secrets=<2 hidden>, livemode=False, tolerance=300)"
        )


class TestHeaders:
    @pytest.mark.parametrize(
        "shape",
        [
            pytest.param(lambda v: {"Stripe-Signature": v}, id="as Stripe sends it"),
            pytest.param(lambda v: {"stripe-signature": v}, id="lower case"),
            pytest.param(lambda v: {"STRIPE-SIGNATURE": v}, id="upper case"),
            pytest.param(lambda v: [("Stripe-Signature", v)], id="str pairs"),
            pytest.param(lambda v: [(b"stripe-signature", v.encode())], id="ASGI byte pairs"),
            pytest.param(lambda v: (("Host", "x"), ("stripe-Signature", v)), id="a tuple"),
        ],
    )
    def test_the_signature_header_is_found_in_any_spelling(
        self,
        shape: Callable[[str], Any],
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        paid: JSON,
    ) -> None:
        body, headers = signed(fake, paid)
        response = dispatcher.handle(body=body, headers=shape(headers["Stripe-Signature"]))
        assert response.status == 200


class TestMode:
    def test_the_mode_comes_from_the_gateway(self, dispatcher: WebhookDispatcher) -> None:
        assert dispatcher.livemode is False

    def test_a_live_dispatcher_refuses_test_events(
        self,
        service: EscrowService,
        fake: FakeGateway,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        live = WebhookDispatcher(service, secrets=[SECRET], livemode=True)
        with nothing_written(store, service):
            response = post(live, fake, paid)
        assert (response.status, response.json()) == (400, {"error": "wrong_mode"})

    def test_the_service_refuses_an_event_of_the_other_mode_too(
        self,
        service: EscrowService,
        fake: FakeGateway,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        """A dispatcher told the wrong mode still cannot make a test gateway apply live events."""
        live = WebhookDispatcher(service, secrets=[SECRET], livemode=True)
        paid["livemode"] = True
        with nothing_written(store, service):
            response = post(live, fake, paid)
        assert (response.status, response.json()) == (400, {"error": "wrong_mode"})


class TestResponse:
    def test_a_200_names_the_status_and_the_event(
        self, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        response = post(dispatcher, fake, paid)
        assert response == WebhookResponse(
            200,
            b'{"status":"processed","event":"evt_0001"}',
            {"Content-Type": "application/json"},
        )
        assert response.ok


class TestServerErrors:
    def test_an_unexpected_failure_is_a_500_without_details(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        paid: JSON,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Re-fetching a refund Stripe does not know fails: Stripe should try again later, and
        the reason stays in our log and the event log, out of the response."""
        assert post(dispatcher, fake, paid).status == 200
        [esc] = service.find(bounty_id="b1")
        assert esc.payment_ref is not None
        fake.refund_outside(esc.payment_ref, amount=usd(1_000))
        event = payload_of(fake, "refund.created")
        event["data"]["object"]["id"] = "re_unknown"
        response = post(dispatcher, fake, event)
        assert (response.status, response.json()) == (500, {"error": "internal_error"})
        assert b"re_unknown" not in response.body
        record = service.webhook_event(event["id"])
        assert record is not None
        assert record.status is WebhookStatus.FAILED
        assert record.error is not None
        assert "No such refund" in record.error
        assert record.payload is not None
        assert "No such refund" in caplog.text
