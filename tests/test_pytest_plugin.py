"""The pytest plugin a host's own test suite gets through the ``pytest11`` entry point.

Each test writes a small test suite, as a host app would, and runs it with `pytester`.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

STORY = """
from datetime import timedelta

from bountyescrow import Actor, EscrowStatus, Money, OperationStatus


def usd(amount):
    return Money(amount, "usd")


def test_open_pay_release(escrow_service, fake_gateway, escrow_clock, escrow_store):
    poster = Actor("u1")
    esc = escrow_service.open_escrow(
        bounty_id="b1", poster_id="u1", amount=usd(25_000), actor=poster
    )
    assert esc.status is EscrowStatus.AWAITING_FUNDING
    assert esc.client_secret
    fake_gateway.pay(esc.payment_ref)
    fake_gateway.deliver(escrow_service)
    assert escrow_service.get(esc.id).status is EscrowStatus.FUNDED
    payee = escrow_service.register_payee("u2", email="h@example.com", country="US")
    fake_gateway.complete_onboarding(payee.account_ref)
    fake_gateway.deliver(escrow_service)
    op = escrow_service.release(esc.id, payee_id="u2", actor=poster, idempotency_key="k1")
    assert op.status is OperationStatus.SUCCEEDED
    assert (op.gross, op.fee, op.net) == (usd(25_000), usd(2_500), usd(22_500))
    assert [(m.kind, m.amount) for m in fake_gateway.movements] == [("transfer", usd(22_500))]
    assert escrow_service.get(esc.id).status is EscrowStatus.RELEASED
    assert escrow_service.check_invariants() == []
    # The fixtures are wired together: one store, one clock, one fake.
    assert escrow_service.store is escrow_store
    assert escrow_service.gateway is fake_gateway
    assert escrow_service.namespace == "test"
    assert fake_gateway.webhook_secret == "whsec_test"
    before = escrow_service.now()
    escrow_clock.advance(timedelta(hours=1))
    assert escrow_service.now() - before == timedelta(hours=1)
"""


def test_the_fixtures_run_a_full_story(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_story=STORY)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


def test_each_test_gets_fresh_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fresh="""
        from bountyescrow import Actor, Money

        def open_one(service):
            return service.open_escrow(
                bounty_id="b1", poster_id="u1", amount=Money(1_000, "usd"), actor=Actor("u1")
            )

        def test_first(escrow_service, fake_gateway):
            assert open_one(escrow_service).payment_ref == "pi_0001"

        def test_second(escrow_service, fake_gateway):
            assert escrow_service.find(bounty_id="b1") == []
            assert open_one(escrow_service).payment_ref == "pi_0001"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_a_conftest_can_override_the_store(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        from bountyescrow.testing import InMemoryStore


        class HostStore(InMemoryStore):
            '''Stands for the host's own database store.'''


        @pytest.fixture
        def escrow_store():
            return HostStore()
        """
    )
    pytester.makepyfile(
        test_story=STORY
        + """

def test_the_service_uses_the_overridden_store(escrow_service, escrow_store):
    assert type(escrow_store).__name__ == "HostStore"
    assert escrow_service.store is escrow_store
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_a_conftest_can_override_the_clock_and_the_fake_follows(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        from datetime import datetime, timezone

        import pytest

        from bountyescrow.testing import ManualClock


        @pytest.fixture
        def escrow_clock():
            return ManualClock(datetime(2030, 6, 1, tzinfo=timezone.utc))
        """
    )
    pytester.makepyfile(
        test_clock="""
        from datetime import datetime, timezone

        from bountyescrow import Actor, Money

        def test_clock(escrow_service, fake_gateway):
            assert escrow_service.now() == datetime(2030, 6, 1, tzinfo=timezone.utc)
            esc = escrow_service.open_escrow(
                bounty_id="b1", poster_id="u1", amount=Money(1_000, "usd"), actor=Actor("u1")
            )
            fake_gateway.pay(esc.payment_ref)
            (event,) = fake_gateway.pending_events
            assert event.created == int(datetime(2030, 6, 1, tzinfo=timezone.utc).timestamp())
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


def test_a_failing_host_test_is_reported_as_failing(pytester: pytest.Pytester) -> None:
    """The plugin does not swallow failures of the host's tests."""
    pytester.makepyfile(
        test_fail="""
        from bountyescrow import Actor, Money

        def test_release_before_funding(escrow_service):
            esc = escrow_service.open_escrow(
                bounty_id="b1", poster_id="u1", amount=Money(1_000, "usd"), actor=Actor("u1")
            )
            assert escrow_service.get(esc.id).status.value == "funded"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
