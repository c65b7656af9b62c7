"""pytest fixtures for a host's own test suite (registered through the `pytest11` entry point).

Fixtures: `escrow_clock` (a `ManualClock`), `fake_gateway` (a `FakeGateway` on that clock,
webhook secret ``whsec_test``), `escrow_store` (an `InMemoryStore`) and `escrow_service`
(an `EscrowService` over those three, namespace ``test``). Override any of them in your
own conftest.py, e.g. `escrow_store` to use your database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported lazily: pytest loads this plugin for every test session
    from bountyescrow.service import EscrowService
    from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock


@pytest.fixture
def escrow_clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    from bountyescrow.testing import ManualClock

    return ManualClock()


@pytest.fixture
def fake_gateway(escrow_clock: ManualClock) -> FakeGateway:
    """A fresh fake Stripe, on the test's clock, signing webhooks with ``whsec_test``."""
    from bountyescrow.testing import FakeGateway

    return FakeGateway(webhook_secret="whsec_test", clock=escrow_clock)


@pytest.fixture
def escrow_store() -> InMemoryStore:
    """A fresh in-memory store."""
    from bountyescrow.testing import InMemoryStore

    return InMemoryStore()


@pytest.fixture
def escrow_service(
    escrow_store: InMemoryStore, fake_gateway: FakeGateway, escrow_clock: ManualClock
) -> EscrowService:
    """An `EscrowService` over the fake gateway and the in-memory store (10 % fee)."""
    from bountyescrow.service import EscrowService

    return EscrowService(
        escrow_store, fake_gateway, fee_bps=1000, namespace="test", clock=escrow_clock
    )
