"""examples/flask_app.py through Flask's own test client."""

from __future__ import annotations

import json
from types import ModuleType

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from bountyescrow.webhooks import WebhookDispatcher

from .conftest import Delivery, load_example


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("flask_app.py")


@pytest.fixture
def app(example: ModuleType, dispatcher: WebhookDispatcher) -> Flask:
    flask_app: Flask = example.create_app(dispatcher)
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class TestFlaskExample:
    @pytest.mark.parametrize("path", ["/stripe/webhooks", "/stripe/connect-webhooks"])
    def test_a_signed_event_is_applied(
        self, client: FlaskClient, delivery: Delivery, path: str
    ) -> None:
        response = client.post(
            path,
            data=delivery.body,
            content_type="application/json",
            headers={"Stripe-Signature": delivery.signature},
        )
        assert response.status_code == 200
        assert response.get_json() == {"status": "processed", "event": "evt_0001"}
        assert response.content_type == "application/json"
        assert delivery.applied()

    def test_a_bad_signature_is_refused(self, client: FlaskClient, delivery: Delivery) -> None:
        response = client.post(
            "/stripe/webhooks",
            data=delivery.body,
            content_type="application/json",
            headers={"Stripe-Signature": "t=1,v1=00"},
        )
        assert (response.status_code, response.get_json()) == (
            400,
            {"error": "signature_mismatch"},
        )
        assert not delivery.applied()

    def test_only_post(self, client: FlaskClient) -> None:
        assert client.get("/stripe/webhooks").status_code == 405

    def test_a_body_over_the_cap_is_refused_before_it_is_read(
        self, client: FlaskClient, delivery: Delivery
    ) -> None:
        response = client.post(
            "/stripe/webhooks",
            data=delivery.body + b" " * 300_000,
            content_type="application/json",
            headers={"Stripe-Signature": delivery.signature},
        )
        assert response.status_code == 413
        assert not delivery.applied()

    def test_the_raw_body_pitfall(
        self, app: Flask, dispatcher: WebhookDispatcher, delivery: Delivery
    ) -> None:
        """``request.json`` dumped again is not what Stripe signed; ``get_data()`` is."""

        @app.post("/naive")
        def naive() -> tuple[bytes, int]:
            answer = dispatcher.handle(json.dumps(request.json).encode(), request.headers)
            return answer.body, answer.status

        client = app.test_client()
        kwargs = {
            "data": delivery.body,
            "content_type": "application/json",
            "headers": {"Stripe-Signature": delivery.signature},
        }
        naive_answer = client.post("/naive", **kwargs)  # type: ignore[arg-type]
        assert (naive_answer.status_code, json.loads(naive_answer.data)) == (
            400,
            {"error": "signature_mismatch"},
        )
        assert not delivery.applied()
        example_answer = client.post("/stripe/webhooks", **kwargs)  # type: ignore[arg-type]
        assert example_answer.status_code == 200
        assert delivery.applied()

    @pytest.mark.usefixtures("production_env")
    def test_the_production_factory_builds_the_app(self, example: ModuleType) -> None:
        app = example.app_from_env()
        rules = {rule.rule for rule in app.url_map.iter_rules()}
        assert {"/stripe/webhooks", "/stripe/connect-webhooks"} <= rules
