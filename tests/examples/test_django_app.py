"""examples/django_app through Django's own test client."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from bountyescrow.webhooks import WebhookDispatcher

from .conftest import EXAMPLES, Delivery

DJANGO_PROJECT = EXAMPLES / "django_app"


@pytest.fixture(scope="module", autouse=True)
def django_site() -> None:
    """Configure Django once from the example's own settings module."""
    if str(DJANGO_PROJECT) not in sys.path:
        sys.path.insert(0, str(DJANGO_PROJECT))
    import django
    from django.conf import settings

    if not settings.configured:
        from webhook_site import settings as site_settings

        settings.configure(
            **{name: getattr(site_settings, name) for name in dir(site_settings) if name.isupper()}
        )
        django.setup()


@pytest.fixture
def client(dispatcher: WebhookDispatcher) -> Iterator[object]:
    from django.test import Client, override_settings

    with override_settings(BOUNTYESCROW_WEBHOOK_DISPATCHER=lambda: dispatcher):
        yield Client()


def post(client: object, path: str, body: bytes, signature: str) -> object:
    return client.post(  # type: ignore[attr-defined]
        path, data=body, content_type="application/json", headers={"Stripe-Signature": signature}
    )


class TestDjangoExample:
    @pytest.mark.parametrize("path", ["/stripe/webhooks", "/stripe/connect-webhooks"])
    def test_a_signed_event_is_applied_without_a_csrf_token(
        self, client: object, delivery: Delivery, path: str
    ) -> None:
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        response = post(strict, path, delivery.body, delivery.signature)
        assert response.status_code == 200  # type: ignore[attr-defined]
        assert json.loads(response.content) == {"status": "processed", "event": "evt_0001"}  # type: ignore[attr-defined]
        assert response["Content-Type"] == "application/json"  # type: ignore[index]
        assert delivery.applied()

    def test_a_bad_signature_is_refused(self, client: object, delivery: Delivery) -> None:
        response = post(client, "/stripe/webhooks", delivery.body, "t=1,v1=00")
        assert response.status_code == 400  # type: ignore[attr-defined]
        assert json.loads(response.content) == {"error": "signature_mismatch"}  # type: ignore[attr-defined]
        assert not delivery.applied()

    def test_only_post(self, client: object) -> None:
        assert client.get("/stripe/webhooks").status_code == 405  # type: ignore[attr-defined]

    def test_a_body_over_the_cap_is_refused(self, client: object, delivery: Delivery) -> None:
        body = delivery.body + b" " * 300_000
        response = post(client, "/stripe/webhooks", body, delivery.signature)
        assert response.status_code == 400  # type: ignore[attr-defined]
        assert not delivery.applied()

    def test_the_raw_body_pitfall(self, client: object, delivery: Delivery) -> None:
        """A body parsed and dumped again is refused; ``request.body`` as sent is applied."""
        reserialised = post(client, "/stripe/webhooks", delivery.reserialised, delivery.signature)
        assert reserialised.status_code == 400  # type: ignore[attr-defined]
        assert json.loads(reserialised.content) == {"error": "signature_mismatch"}  # type: ignore[attr-defined]
        assert not delivery.applied()
        raw = post(client, "/stripe/webhooks", delivery.body, delivery.signature)
        assert raw.status_code == 200  # type: ignore[attr-defined]
        assert delivery.applied()

    @pytest.mark.usefixtures("production_env")
    def test_the_production_factory_builds_the_dispatcher(self) -> None:
        from webhook_site.escrow import dispatcher_from_env

        dispatcher_from_env.cache_clear()
        try:
            built = dispatcher_from_env()
            assert isinstance(built, WebhookDispatcher)
            assert built is dispatcher_from_env()  # once per process
            assert repr(built) == (
                "WebhookDispatcher(secrets=<2 hidden>, livemode=False, tolerance=300)"
            )
        finally:
            dispatcher_from_env.cache_clear()
