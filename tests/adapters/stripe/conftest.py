"""Fixtures for the Stripe adapter tests: the SDK's real httpx traffic, intercepted by respx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from bountyescrow.adapters.stripe import StripeGateway

from .stand_in import StripeStandIn
from .support import API, TEST_KEY


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """A respx router for api.stripe.com; a request no route answers fails the call."""
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def gateway() -> Iterator[StripeGateway]:
    """A test-mode gateway whose SDK does not retry, so each call is one request."""
    with StripeGateway(api_key=TEST_KEY, max_network_retries=0) as gw:
        yield gw


@pytest.fixture
def stand_in(router: respx.MockRouter) -> StripeStandIn:
    """The in-memory Stripe stand-in, answering every request to api.stripe.com."""
    return StripeStandIn(router)
