"""Fixtures for the webhook tests: a service over the fake gateway, and its dispatcher."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bountyescrow import EscrowService
from bountyescrow.testing import InMemoryStore, ManualClock
from bountyescrow.webhooks import WebhookDispatcher

from .support import SECRET, RecordingFake


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> RecordingFake:
    return RecordingFake(webhook_secret=SECRET, clock=clock)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def service(
    store: InMemoryStore, fake: RecordingFake, clock: ManualClock
) -> Iterator[EscrowService]:
    svc = EscrowService(store, fake, fee_bps=1000, namespace="test", clock=clock)
    yield svc
    assert svc.check_invariants() == []


@pytest.fixture
def dispatcher(service: EscrowService) -> WebhookDispatcher:
    return WebhookDispatcher(service, secrets=[SECRET])
