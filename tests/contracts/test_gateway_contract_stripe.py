"""The gateway contract, run against `StripeGateway` talking to the Stripe stand-in.

The same gateway and control as ``tests/adapters/stripe/test_contract.py``; here so that
``tests/contracts/`` runs the gateway contract against every gateway we ship.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.testing.contracts.gateway import GatewayContract, GatewayControl

from ..adapters.stripe.stand_in import StripeStandIn
from ..adapters.stripe.support import API, TEST_KEY
from ..adapters.stripe.test_contract import StandInControl


class TestStripeGatewayContract(GatewayContract):
    @pytest.fixture
    def stand_in(self) -> Iterator[StripeStandIn]:
        # As tests/adapters/stripe/conftest.py: every request to api.stripe.com is answered
        # by the stand-in, and any other request fails.
        with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
            yield StripeStandIn(router)

    @pytest.fixture
    def gateway(self, stand_in: StripeStandIn) -> Iterator[PaymentGateway]:
        with StripeGateway(api_key=TEST_KEY, max_network_retries=0) as gateway:
            yield gateway

    @pytest.fixture
    def control(self, stand_in: StripeStandIn) -> GatewayControl:
        return StandInControl(stand_in)


class TestStripeGatewayAccountsV2Contract(TestStripeGatewayContract):
    """The same contract with payees created and read as Accounts v2 accounts."""

    @pytest.fixture
    def gateway(self, stand_in: StripeStandIn) -> Iterator[PaymentGateway]:
        with StripeGateway(api_key=TEST_KEY, max_network_retries=0, accounts="v2") as gateway:
            yield gateway
