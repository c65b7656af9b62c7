"""`register_payee` asks the gateway whether it can pay a payee in that country before it
writes anything or creates an account (`PaymentGateway.payee_country_problem`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bountyescrow import EscrowService, errors
from bountyescrow.domain.gateway_objects import AccountSnapshot
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock

from .conftest import POSTER, funded, usd


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    """A platform in France."""
    return FakeGateway(webhook_secret="whsec_test", clock=clock, platform_country="FR")


def accounts_created(fake: FakeGateway) -> int:
    """How many connected accounts the fake made (their ids are numbered from 1)."""
    count = 0
    while True:
        try:
            fake.get_account(f"acct_{count + 1:04d}")
        except errors.GatewayRejectedError:
            return count
        count += 1


class TestUnsupportedCountries:
    @pytest.mark.parametrize("country", ["BR", "jp"])
    def test_are_refused_naming_the_country_and_the_regions_and_nothing_is_written(
        self, service: EscrowService, store: InMemoryStore, fake: FakeGateway, country: str
    ) -> None:
        commits, events = store.commits, service.events(limit=10_000)

        with pytest.raises(errors.ValidationError) as refused:
            service.register_payee("hunter-9", country=country, idempotency_key="reg-9")

        message = refused.value.message
        assert "hunter-9" in message
        assert f"a payee in {country.upper()}" in message
        for region in ("US", "UK (GB)", "EEA", "Canada (CA)", "Switzerland (CH)"):
            assert region in message
        assert store.commits == commits, "a refused registration committed a unit of work"
        assert service.events(limit=10_000) == events
        with pytest.raises(errors.PayeeNotFoundError):
            service.get_payee("hunter-9")
        assert accounts_created(fake) == 0
        assert fake.pending_events == ()
        # The idempotency key was not stored: it serves the corrected call.
        payee = service.register_payee("hunter-9", country="DE", idempotency_key="reg-9")
        assert (payee.country, payee.account_ref) == ("DE", "acct_0001")

    def test_the_gateway_is_asked_before_the_account_is_created(
        self, store: InMemoryStore, clock: ManualClock
    ) -> None:
        """A gateway's own reason is enough: `create_account` is never called."""

        class Refusing(FakeGateway):
            def payee_country_problem(self, country: str) -> str | None:
                return f"this platform pays no one in {country}"

        gateway = Refusing(clock=clock)
        service = EscrowService(store, gateway, namespace="test", clock=clock)

        with pytest.raises(errors.ValidationError, match="pays no one in US"):
            service.register_payee("hunter-9", country="us")
        assert accounts_created(gateway) == 0
        assert store.commits == 0

    def test_a_registered_payee_is_returned_without_asking(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        first = service.register_payee("hunter-9", country="CH")
        asked: list[str] = []
        original = fake.payee_country_problem

        def spy(country: str) -> str | None:
            asked.append(country)
            return original(country)

        fake.payee_country_problem = spy  # type: ignore[method-assign]
        assert service.register_payee("hunter-9", country="CH") == first
        assert asked == []


class TestSupportedCountries:
    @pytest.mark.parametrize("country", ["FR", "DE", "gb", "US", "CA", "CH", "NO"])
    def test_are_registered_under_the_full_agreement(
        self, service: EscrowService, fake: FakeGateway, country: str
    ) -> None:
        payee = service.register_payee("hunter-9", country=country)
        assert payee.country == country.upper()
        fake.drop_events()
        fake.complete_onboarding(payee.account_ref)
        (body,) = [
            p["data"]["object"] for p in fake.pending_payloads if p["type"] == "account.updated"
        ]
        assert body["tos_acceptance"]["service_agreement"] == "full"

    def test_a_cross_border_payee_is_paid(self, service: EscrowService, fake: FakeGateway) -> None:
        """An FR platform's DE payee: the release goes out instead of waiting forever."""
        payee = service.register_payee("hunter-9", country="DE")
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        esc = funded(service, fake)

        operation = service.release(
            esc.id, payee_id="hunter-9", amount=usd(10_000), actor=POSTER, idempotency_key="r1"
        )

        assert operation.status.value == "succeeded"
        (moved,) = fake.movements
        assert (moved.kind, moved.operation_id, moved.amount) == (
            "transfer",
            operation.id,
            usd(9_000),
        )
        assert fake.get_transfer(moved.ref).destination == payee.account_ref


class TestGatewaysWithoutTheQuestion:
    def test_leave_the_country_to_create_account(
        self, store: InMemoryStore, clock: ManualClock
    ) -> None:
        """A gateway written before `payee_country_problem` existed still registers payees."""

        class Older:
            """Only what `register_payee` needs of a gateway, as an older adapter had it."""

            livemode = False
            max_call_duration = timedelta(seconds=5)

            def __init__(self) -> None:
                self.countries: list[str] = []

            def create_account(self, **request: Any) -> AccountSnapshot:
                self.countries.append(request["country"])
                return AccountSnapshot(ref="acct_old", ready=False, metadata={})

        older = Older()
        service = EscrowService(store, older, namespace="test", clock=clock)  # type: ignore[arg-type]

        payee = service.register_payee("hunter-9", country="br")

        assert (payee.account_ref, payee.country, older.countries) == ("acct_old", "BR", ["BR"])
