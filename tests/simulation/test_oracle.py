"""The money oracle: `books_agree` reports every way the books can differ from the gateway."""

from __future__ import annotations

import pytest

from bountyescrow import Actor, Escrow, EscrowService, Money, OperationStatus
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
    CreatePayment,
    CreateTransfer,
)
from bountyescrow.testing import (
    FakeGateway,
    GatewayBooks,
    InMemoryStore,
    ManualClock,
    books_agree,
)
from tests.keys import new_key

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})


def usd(amount: int) -> Money:
    return Money(amount, "usd")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeGateway:
    return FakeGateway(clock=clock)


@pytest.fixture
def service(fake: FakeGateway, clock: ManualClock) -> EscrowService:
    svc = EscrowService(InMemoryStore(), fake, fee_bps=1000, namespace="oracle", clock=clock)
    for payee_id in ("hunter-1", "hunter-2"):
        payee = svc.register_payee(payee_id, country="US")
        fake.complete_onboarding(payee.account_ref)
    fake.deliver(svc)
    return svc


def funded(service: EscrowService, fake: FakeGateway, amount: int = 10_000) -> Escrow:
    esc = service.open_escrow(
        bounty_id=new_key(), poster_id=POSTER.id, amount=usd(amount), actor=POSTER
    )
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    fake.deliver(service)
    return service.get(esc.id)


class TestAgreement:
    def test_a_full_lifecycle_agrees(self, service: EscrowService, fake: FakeGateway) -> None:
        """Releases, a reversal, a refund, an outside refund and a won dispute all agree."""
        esc = funded(service, fake, 20_000)
        first = service.release(
            esc.id, payee_id="hunter-1", amount=usd(6_000), actor=POSTER, idempotency_key="r1"
        )
        service.release(
            esc.id, payee_id="hunter-2", amount=usd(4_000), actor=POSTER, idempotency_key="r2"
        )
        service.reverse(esc.id, first.id, amount=usd(1_000), actor=ADMIN, idempotency_key="v1")
        service.refund(esc.id, amount=usd(3_000), actor=ADMIN, idempotency_key="f1")
        assert esc.payment_ref is not None
        fake.refund_outside(esc.payment_ref, usd(500))
        fake.open_dispute(esc.payment_ref, usd(2_000))
        fake.close_dispute(esc.payment_ref, won=True)
        fake.deliver(service, duplicate=True, shuffle=True)

        assert service.check_invariants() == []
        assert books_agree(service, fake) == []

    def test_reads_what_moved_per_escrow_and_account(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake, 10_000)
        service.release(
            esc.id, payee_id="hunter-1", amount=usd(5_000), actor=POSTER, idempotency_key="r1"
        )
        assert esc.payment_ref is not None
        fake.open_dispute(esc.payment_ref, usd(1_000))

        money = GatewayBooks.of(fake).escrows[esc.id]
        account = service.get_payee("hunter-1").account_ref
        assert money.captured == {esc.payment_ref: 10_000}
        assert money.transferred == {account: 4_500}
        assert money.paid_out == 4_500
        assert money.dispute_lost == 1_000
        assert money.holds(fees=500) == 10_000 - 4_500 - 1_000 - 500

    def test_takes_the_books_read_elsewhere(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """A fake in another process: read `GatewayBooks` there, compare here."""
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        fake.refund_outside(esc.payment_ref, usd(1_000))
        books = GatewayBooks.of(fake, namespace="oracle")

        assert books_agree(service, books) == books_agree(service, fake)
        assert f"{esc.id}: refunded vs refunds: books 0, gateway 1000" in books_agree(
            service, books
        )


class TestDisagreement:
    def test_reports_a_capture_never_booked(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = service.open_escrow(bounty_id="b", poster_id=POSTER.id, amount=usd(10_000),
                                  actor=POSTER)  # fmt: skip
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)

        problems = books_agree(service, fake)

        assert f"{esc.id}: funded vs captured: books 0, gateway 10000" in problems
        assert books_agree(service, fake, settled=False) == []

    def test_reports_an_outside_refund_never_adopted(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        """The escrow still shows as held money the payer already got back."""
        esc = funded(service, fake)
        assert esc.payment_ref is not None
        ref = fake.refund_outside(esc.payment_ref)
        fake.drop_events()

        problems = books_agree(service, fake)

        assert f"{esc.id}: refunded vs refunds: books 0, gateway 10000" in problems
        assert any(f"refund {ref}" in p and "never adopted" in p for p in problems)
        assert any("shows 10000 held" in p and "holds 0" in p for p in problems)
        # In the middle of a run, with nothing left to deliver, phantom money is reported too.
        assert any("shows 10000 held" in p for p in books_agree(service, fake, settled=False))

    def test_reports_a_second_transfer_for_one_operation(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        op = service.release(
            esc.id, payee_id="hunter-1", amount=usd(5_000), actor=POSTER, idempotency_key="r1"
        )
        assert op.request is not None
        fake.create_transfer(op.request, idempotency_key="another-generation")  # type: ignore[arg-type]

        problems = books_agree(service, fake, settled=False)

        assert f"operation {op.id}: 2 gateway transfers (one at most)" in problems
        assert any("paid to hunter-1 (net): books 4500, gateway 9000" in p
                   for p in books_agree(service, fake))  # fmt: skip

    def test_reports_money_moved_for_a_cancelled_operation(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        service.register_payee("hunter-3", country="US")
        op = service.release(
            esc.id, payee_id="hunter-3", amount=usd(5_000), actor=POSTER, idempotency_key="r1"
        )
        assert op.status is OperationStatus.AWAITING_PAYEE
        service.cancel_operation(op.id, actor=POSTER)
        account = service.get_payee("hunter-3").account_ref
        fake.complete_onboarding(account)
        transfer = CreateTransfer(
            amount=usd(4_500),
            destination=account,
            source_transaction=esc.charge_ref,
            transfer_group=esc.transfer_group,
            metadata={META_ESCROW: esc.id, META_OPERATION: op.id},
        )
        ref = fake.create_transfer(transfer, idempotency_key="sent-anyway").ref

        problems = books_agree(service, fake, settled=False)

        assert any(
            f"transfer {ref}" in p and f"money moved, operation {op.id} is cancelled" in p
            for p in problems
        )

    def test_reports_a_movement_of_no_known_escrow(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        account = service.get_payee("hunter-1").account_ref
        transfer = CreateTransfer(
            amount=usd(100),
            destination=account,
            source_transaction=esc.charge_ref,
            transfer_group="someone-else",
            metadata={},
        )
        ref = fake.create_transfer(transfer, idempotency_key="stray").ref

        assert f"?: transfer {ref} (100, succeeded): belongs to no escrow the gateway knows" in (
            books_agree(service, fake, settled=False)
        )

    def test_ignores_objects_of_another_namespace(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        esc = funded(service, fake)
        account = service.get_payee("hunter-1").account_ref
        transfer = CreateTransfer(
            amount=usd(100),
            destination=account,
            source_transaction=esc.charge_ref,
            transfer_group="other",
            metadata={META_NAMESPACE: "another-deployment"},
        )
        fake.create_transfer(transfer, idempotency_key="theirs")

        assert books_agree(service, fake) == []

    def test_reports_gateway_objects_of_an_escrow_the_books_lack(
        self, service: EscrowService, fake: FakeGateway
    ) -> None:
        payment = CreatePayment(
            amount=usd(1_000), transfer_group="escrow_ghost", metadata={META_ESCROW: "ghost"}
        )
        fake.pay(fake.create_payment(payment, idempotency_key="ghost").ref)

        assert "ghost: the gateway has objects of it, the books no escrow" in books_agree(
            service, fake
        )
