"""Fixtures for the example apps' tests: the fake-backed dispatcher each example mounts, and
a signed ``payment_intent.succeeded`` request to post through each framework's test client."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

from bountyescrow import EscrowService, EscrowStatus
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher

from ..webhooks.support import SECRET, open_escrow, payload_of

EXAMPLES = Path(__file__).parents[2] / "examples"


def load_example(filename: str) -> ModuleType:
    """Import ``examples/<filename>`` (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"example_{Path(filename).stem}", EXAMPLES / filename
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@attrs.frozen
class Delivery:
    """One signed Stripe request, and how to see whether it was applied."""

    body: bytes
    signature: str
    service: EscrowService
    escrow_id: str

    @property
    def reserialised(self) -> bytes:
        """The body as a framework's JSON parser plus ``json.dumps`` would give it back."""
        return json.dumps(json.loads(self.body)).encode()

    def applied(self) -> bool:
        return self.service.get(self.escrow_id).status is EscrowStatus.FUNDED


@pytest.fixture
def service() -> Iterator[EscrowService]:
    clock = ManualClock()
    fake = FakeGateway(webhook_secret=SECRET, clock=clock)
    svc = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="test", clock=clock)
    yield svc
    assert svc.check_invariants() == []


@pytest.fixture
def dispatcher(service: EscrowService) -> WebhookDispatcher:
    return WebhookDispatcher(service, secrets=[SECRET])


@pytest.fixture
def delivery(service: EscrowService) -> Delivery:
    fake = service.gateway
    assert isinstance(fake, FakeGateway)
    esc = open_escrow(service)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    body, headers = fake.webhook_request(payload_of(fake, "payment_intent.succeeded"))
    return Delivery(body, headers["Stripe-Signature"], service, esc.id)


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What `dispatcher_from_env` reads; building it makes no call to Stripe."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'escrow.sqlite3'}")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_" + "x" * 24)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", "whsec_platform, whsec_connect")
