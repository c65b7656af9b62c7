"""Fixtures for the fake gateway's tests: a fake on a manual clock."""

from __future__ import annotations

import pytest

from bountyescrow.testing import FakeGateway, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock)
