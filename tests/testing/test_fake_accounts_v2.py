"""`FakeGateway(accounts="v2")`: payees as Accounts v2 accounts, in step with `StripeGateway`.

Readiness comes from the v2 shape (the recipient configuration's ``stripe_transfers``),
``restricted`` until `complete_onboarding`; ids, transfers and events are the v1 ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bountyescrow import Actor, EscrowService, Money, OperationStatus
from bountyescrow.domain.gateway_objects import AccountSnapshot
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .support import account, paid, ready_account, transfer_request, types

POSTER = Actor("poster-1")
HUNTER = "hunter-1"


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(webhook_secret="whsec_test", clock=clock, accounts="v2")


def stripe_transfers(fake: FakeGateway, ref: str) -> str:
    body = fake.account_v2_json(ref)
    status = body["configuration"]["recipient"]["capabilities"]["stripe_balance"]
    return str(status["stripe_transfers"]["status"])


class TestAccountsV2:
    def test_v1_is_the_default_and_another_value_is_refused(self) -> None:
        assert FakeGateway().accounts == "v1"
        with pytest.raises(ValueError, match="accounts must be 'v1' or 'v2'"):
            FakeGateway(accounts="v3")  # type: ignore[arg-type]

    def test_a_new_account_is_restricted_and_not_ready(self, fake: FakeGateway) -> None:
        created = fake.create_account(
            payee_id="u2", email="h@example.com", country="US", idempotency_key="a"
        )

        assert created == AccountSnapshot(
            ref="acct_0001", ready=False, metadata={"bountyescrow_payee_id": "u2"}
        )
        assert fake.get_account(created.ref) == created
        body = fake.account_v2_json(created.ref)
        assert (body["object"], body["contact_email"], body["identity"]) == (
            "v2.core.account",
            "h@example.com",
            {"country": "US"},
        )
        assert body["applied_configurations"] == ["recipient"]
        assert stripe_transfers(fake, created.ref) == "restricted"

    def test_complete_onboarding_makes_stripe_transfers_active_and_the_account_ready(
        self, fake: FakeGateway
    ) -> None:
        ref = account(fake)
        fake.complete_onboarding(ref)

        assert stripe_transfers(fake, ref) == "active"
        assert fake.get_account(ref).ready is True
        # The Connect events are the same as for a v1 account.
        assert types(fake) == ["account.updated", "capability.updated"]

    def test_restrict_makes_it_restricted_again(self, fake: FakeGateway) -> None:
        ref = ready_account(fake)
        fake.restrict(ref)

        assert stripe_transfers(fake, ref) == "restricted"
        assert fake.get_account(ref).ready is False

    def test_a_closed_account_is_gone(self, fake: FakeGateway) -> None:
        ref = ready_account(fake)
        fake.deauthorize(ref)

        assert fake.account_v2_json(ref)["closed"] is True
        assert fake.get_account(ref) == AccountSnapshot(
            ref=ref, ready=False, metadata={"bountyescrow_payee_id": "u2"}, deauthorized=True
        )

    def test_a_v1_transfer_reaches_a_ready_v2_account(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        ref = ready_account(fake)

        transfer = fake.create_transfer(transfer_request(payment, ref), idempotency_key="k")

        assert transfer.destination == ref
        assert fake.balance(ref) == Money(9_000, "usd")

    def test_a_v1_fake_shows_its_accounts_in_the_v2_shape_too(self) -> None:
        v1 = FakeGateway()
        ref = account(v1)

        assert stripe_transfers(v1, ref) == "restricted"
        assert v1.get_account(ref).ready is False


class TestServiceWithAccountsV2:
    @pytest.fixture
    def service(self, fake: FakeGateway, clock: ManualClock) -> Iterator[EscrowService]:
        svc = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="test", clock=clock)
        yield svc
        assert svc.check_invariants() == []

    def test_a_release_waits_for_onboarding_then_goes_as_a_transfer(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """The host's test suite can run the v2 path offline, end to end."""
        esc = service.open_escrow(
            bounty_id="b1", poster_id=POSTER.id, amount=Money(25_000, "usd"), actor=POSTER
        )
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        fake.deliver(service)
        payee = service.register_payee(HUNTER, email="h@example.com", country="US")
        assert payee.ready is False

        op = service.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert op.status is OperationStatus.AWAITING_PAYEE

        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)

        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED
        (movement,) = fake.movements
        assert movement.kind == "transfer"
        transfer = fake.get_transfer(movement.ref)
        assert transfer.destination == payee.account_ref
