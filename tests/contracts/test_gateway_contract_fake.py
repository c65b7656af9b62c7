"""The gateway contract, run against `FakeGateway`."""

from __future__ import annotations

import pytest

from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.testing import FakeGateway, ManualClock
from bountyescrow.testing.contracts.gateway import GatewayContract, GatewayControl


class FakeControl:
    """`GatewayControl` for the fake: its own test controls."""

    def __init__(self, fake: FakeGateway) -> None:
        self.fake = fake

    def pay(self, payment_ref: str) -> None:
        self.fake.pay(payment_ref)

    def make_ready(self, account_ref: str) -> None:
        self.fake.complete_onboarding(account_ref)


class TestFakeGatewayContract(GatewayContract):
    @pytest.fixture
    def fake(self) -> FakeGateway:
        return FakeGateway(webhook_secret="whsec_test", clock=ManualClock())

    @pytest.fixture
    def gateway(self, fake: FakeGateway) -> PaymentGateway:
        return fake

    @pytest.fixture
    def control(self, fake: FakeGateway) -> GatewayControl:
        return FakeControl(fake)


class TestFakeGatewayAccountsV2Contract(TestFakeGatewayContract):
    """The same contract with the fake showing payees as Accounts v2 accounts."""

    @pytest.fixture
    def fake(self) -> FakeGateway:
        return FakeGateway(webhook_secret="whsec_test", clock=ManualClock(), accounts="v2")
