"""The shared gateway contract, run against `StripeGateway` talking to the Stripe stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.testing.contracts.gateway import GatewayContract, GatewayControl

from .stand_in import StripeStandIn
from .support import TEST_KEY


class StandInControl:
    """`GatewayControl` on the stand-in: the payer pays, the payee finishes onboarding."""

    def __init__(self, stand_in: StripeStandIn) -> None:
        self.stand_in = stand_in

    def pay(self, payment_ref: str) -> None:
        self.stand_in.succeed(payment_ref)

    def make_ready(self, account_ref: str) -> None:
        self.stand_in.activate(account_ref)


class TestStripeGatewayContract(GatewayContract):
    @pytest.fixture
    def gateway(self, stand_in: StripeStandIn) -> Iterator[PaymentGateway]:
        with StripeGateway(api_key=TEST_KEY, max_network_retries=0) as gateway:
            yield gateway

    @pytest.fixture
    def control(self, stand_in: StripeStandIn) -> GatewayControl:
        return StandInControl(stand_in)
