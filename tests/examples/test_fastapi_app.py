"""examples/fastapi_app.py through FastAPI's own test client."""

from __future__ import annotations

import json
import warnings
from types import ModuleType
from typing import Annotated, Any

import pytest
from fastapi import Body, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x warns at import that its TestClient wants the `httpx2` package; the
    # project's dev environment has httpx, which the TestClient still drives correctly.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from bountyescrow.webhooks import WebhookDispatcher

from .conftest import Delivery, load_example


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("fastapi_app.py")


@pytest.fixture
def client(example: ModuleType, dispatcher: WebhookDispatcher) -> TestClient:
    return TestClient(example.create_app(dispatcher))


class TestFastApiExample:
    @pytest.mark.parametrize("path", ["/stripe/webhooks", "/stripe/connect-webhooks"])
    def test_a_signed_event_is_applied(
        self, client: TestClient, delivery: Delivery, path: str
    ) -> None:
        response = client.post(
            path, content=delivery.body, headers={"Stripe-Signature": delivery.signature}
        )
        assert response.status_code == 200
        assert response.json() == {"status": "processed", "event": "evt_0001"}
        assert delivery.applied()

    def test_a_bad_signature_is_refused(self, client: TestClient, delivery: Delivery) -> None:
        response = client.post(
            "/stripe/webhooks", content=delivery.body, headers={"Stripe-Signature": "t=1,v1=00"}
        )
        assert (response.status_code, response.json()) == (400, {"error": "signature_mismatch"})
        assert not delivery.applied()

    def test_only_post(self, client: TestClient) -> None:
        assert client.get("/stripe/webhooks").status_code == 405

    def test_a_body_over_the_cap_is_refused(self, client: TestClient, delivery: Delivery) -> None:
        body = delivery.body + b" " * 300_000
        response = client.post(
            "/stripe/webhooks", content=body, headers={"Stripe-Signature": delivery.signature}
        )
        assert (response.status_code, response.json()) == (400, {"error": "body_too_large"})

    def test_the_raw_body_pitfall(
        self, example: ModuleType, dispatcher: WebhookDispatcher, delivery: Delivery
    ) -> None:
        """A route that lets FastAPI parse the JSON and dumps it again cannot verify anything;
        the example's mount, given the same request, can."""
        app = example.create_app(dispatcher)

        @app.post("/naive")
        def naive(request: Request, payload: Annotated[dict[str, Any], Body()]) -> Any:
            answer = dispatcher.handle(json.dumps(payload).encode(), request.headers)
            return JSONResponse(answer.json(), status_code=answer.status)

        client = TestClient(app)
        headers = {"Stripe-Signature": delivery.signature, "Content-Type": "application/json"}
        naive_answer = client.post("/naive", content=delivery.body, headers=headers)
        assert (naive_answer.status_code, naive_answer.json()) == (
            400,
            {"error": "signature_mismatch"},
        )
        reserialised = client.post(
            "/stripe/webhooks", content=delivery.reserialised, headers=headers
        )
        assert (reserialised.status_code, reserialised.json()) == (
            400,
            {"error": "signature_mismatch"},
        )
        assert not delivery.applied()
        raw = client.post("/stripe/webhooks", content=delivery.body, headers=headers)
        assert raw.status_code == 200
        assert delivery.applied()

    @pytest.mark.usefixtures("production_env")
    def test_the_production_factory_builds_the_app(self, example: ModuleType) -> None:
        app = example.app_from_env()
        paths = {getattr(route, "path", None) for route in app.routes}
        assert {"/stripe/webhooks", "/stripe/connect-webhooks"} <= paths
