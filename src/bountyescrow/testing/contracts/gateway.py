"""The contract every `PaymentGateway` adapter keeps, as a pytest test class.

Opt an adapter in with a subclass that provides two fixtures::

    class TestMyGateway(GatewayContract):
        @pytest.fixture
        def gateway(self) -> PaymentGateway:
            return MyGateway(...)

        @pytest.fixture
        def control(self, gateway) -> GatewayControl:
            return MyControl(gateway)  # pay(payment_ref), make_ready(account_ref)

The suite only uses the port and the two control verbs, with fresh idempotency keys and
operation ids on every run, so it can run against a real Stripe account in test mode. It
creates US accounts, so it assumes a platform in the regions Stripe's cross-border payouts
connect (the US, the UK, the EEA, Canada, Switzerland) and the full service agreement.
Nothing in it depends on the API accounts are made with: run it once per mode a gateway
offers (ours run with ``accounts="v1"`` and ``accounts="v2"``).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_OPERATION,
    META_PAYEE,
    AccountSnapshot,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    PaymentSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayRejectedError,
    IdempotencyMismatchError,
    PaymentAlreadySettledError,
)
from bountyescrow.ports.gateway import PaymentGateway, RequestRefusedError

__all__ = ["GatewayContract", "GatewayControl"]

_AMOUNT = 2_000


class GatewayControl(Protocol):
    """What the contract needs to do at the provider that the port cannot do itself."""

    def pay(self, payment_ref: str) -> None:
        """Make the PaymentIntent succeed for its full amount (the payer pays)."""
        ...

    def make_ready(self, account_ref: str) -> None:
        """Make the connected account able to receive transfers (onboarding complete)."""
        ...


def _key() -> str:
    return f"contract:{uuid.uuid4()}"


def _usd(amount: int) -> Money:
    return Money(amount, "usd")


class GatewayContract:
    """Behaviour every `PaymentGateway` must have. Subclass it and provide the fixtures
    ``gateway`` (the adapter under test) and ``control`` (a `GatewayControl`)."""

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def payment_request(amount: int = _AMOUNT) -> CreatePayment:
        """A fresh PaymentIntent request with bountyescrow metadata."""
        escrow_id = f"esc_{uuid.uuid4().hex[:12]}"
        return CreatePayment(
            amount=_usd(amount),
            transfer_group=escrow_id,
            metadata={META_ESCROW: escrow_id, META_OPERATION: f"op_{uuid.uuid4().hex[:12]}"},
        )

    def paid_payment(
        self, gateway: PaymentGateway, control: GatewayControl, amount: int = _AMOUNT
    ) -> tuple[CreatePayment, PaymentSnapshot]:
        """Create a PaymentIntent, have it paid, and return the request and fresh snapshot."""
        request = self.payment_request(amount)
        created = gateway.create_payment(request, idempotency_key=_key())
        control.pay(created.ref)
        return request, gateway.get_payment(created.ref)

    @staticmethod
    def account(gateway: PaymentGateway) -> AccountSnapshot:
        """A new connected account (not ready)."""
        return gateway.create_account(
            payee_id=f"payee-{uuid.uuid4().hex[:8]}",
            email="hunter@example.com",
            country="US",
            idempotency_key=_key(),
        )

    def ready_account(self, gateway: PaymentGateway, control: GatewayControl) -> str:
        """A new connected account that can receive transfers."""
        account = self.account(gateway)
        control.make_ready(account.ref)
        return account.ref

    @staticmethod
    def transfer_request(
        payment: CreatePayment, charge_ref: str | None, destination: str, amount: int
    ) -> CreateTransfer:
        """A release transfer for `payment`'s escrow with a fresh operation id."""
        return CreateTransfer(
            amount=_usd(amount),
            destination=destination,
            source_transaction=charge_ref,
            transfer_group=payment.transfer_group,
            metadata={
                META_ESCROW: payment.metadata[META_ESCROW],
                META_OPERATION: f"op_{uuid.uuid4().hex[:12]}",
            },
        )

    def made_transfer(
        self, gateway: PaymentGateway, control: GatewayControl, amount: int = _AMOUNT
    ) -> tuple[CreateTransfer, TransferSnapshot]:
        """Pay a PaymentIntent and transfer `amount` of it to a ready account."""
        payment, paid = self.paid_payment(gateway, control)
        request = self.transfer_request(
            payment, paid.charge_ref, self.ready_account(gateway, control), amount
        )
        return request, gateway.create_transfer(request, idempotency_key=_key())

    # --- payments ---------------------------------------------------------------------------

    def test_livemode_is_false_in_test_mode(self, gateway: PaymentGateway) -> None:
        """The contract runs against test mode only."""
        assert gateway.livemode is False

    def test_max_call_duration_is_a_positive_bound(self, gateway: PaymentGateway) -> None:
        """The service's lease must outlast it; an hour would stall recovery for hours."""
        duration = gateway.max_call_duration
        assert isinstance(duration, timedelta)
        assert timedelta(0) < duration < timedelta(hours=1)

    # --- requests the provider would refuse, refused before sending -------------------------

    def test_metadata_stripe_refuses_is_refused_and_leaves_the_key_free(
        self, gateway: PaymentGateway
    ) -> None:
        """A value over 500 characters (a long bounty id), a long key, too many keys."""
        key = _key()
        for metadata in (
            {"bounty_id": "b" * 501},
            {"k" * 41: "v"},
            {f"key_{n}": "v" for n in range(51)},
            {"tags[0]": "v"},
        ):
            refused = CreatePayment(amount=_usd(_AMOUNT), transfer_group="g", metadata=metadata)
            with pytest.raises(RequestRefusedError):
                gateway.create_payment(refused, idempotency_key=key)
        request = self.payment_request()
        assert gateway.create_payment(request, idempotency_key=key).amount == request.amount

    def test_a_payee_id_too_long_for_metadata_is_refused(self, gateway: PaymentGateway) -> None:
        with pytest.raises(RequestRefusedError):
            gateway.create_account(
                payee_id="p" * 501, email=None, country="US", idempotency_key=_key()
            )

    def test_three_decimal_amounts_not_ending_in_zero_are_refused(
        self, gateway: PaymentGateway
    ) -> None:
        """KWD, BHD, JOD, OMR and TND amounts must be multiples of 10 (checked before the
        objects named are looked at)."""
        for currency in ("kwd", "bhd", "jod", "omr", "tnd"):
            odd = Money(1_005, currency)
            with pytest.raises(RequestRefusedError):
                gateway.create_transfer(
                    CreateTransfer(
                        amount=odd,
                        destination="acct_contract",
                        source_transaction=None,
                        transfer_group="g",
                        metadata={},
                    ),
                    idempotency_key=_key(),
                )
            with pytest.raises(RequestRefusedError):
                gateway.create_refund(
                    CreateRefund(amount=odd, payment_ref="pi_contract", metadata={}),
                    idempotency_key=_key(),
                )
            with pytest.raises(RequestRefusedError):
                gateway.create_reversal(
                    CreateReversal(amount=odd, transfer_ref="tr_contract", metadata={}),
                    idempotency_key=_key(),
                )

    def test_create_payment_returns_ref_and_client_secret(self, gateway: PaymentGateway) -> None:
        """A new PaymentIntent awaits the payer and carries its client secret and metadata."""
        request = self.payment_request()
        payment = gateway.create_payment(request, idempotency_key=_key())
        assert payment.ref
        assert payment.status != "succeeded"
        assert payment.amount == request.amount
        assert payment.amount_received == _usd(0)
        assert payment.client_secret is not None
        assert payment.client_secret.startswith(f"{payment.ref}_secret_")
        assert dict(payment.metadata) == dict(request.metadata)

    def test_get_payment_after_pay_says_succeeded_with_charge(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        _, paid = self.paid_payment(gateway, control)
        assert paid.status == "succeeded"
        assert paid.amount_received == _usd(_AMOUNT)
        assert paid.charge_ref is not None

    def test_same_key_and_request_return_the_same_payment(self, gateway: PaymentGateway) -> None:
        request, key = self.payment_request(), _key()
        first = gateway.create_payment(request, idempotency_key=key)
        again = gateway.create_payment(request, idempotency_key=key)
        assert again.ref == first.ref

    def test_same_key_other_request_raises_idempotency_mismatch(
        self, gateway: PaymentGateway
    ) -> None:
        key = _key()
        gateway.create_payment(self.payment_request(), idempotency_key=key)
        with pytest.raises(IdempotencyMismatchError):
            gateway.create_payment(self.payment_request(_AMOUNT + 100), idempotency_key=key)

    def test_cancel_of_unpaid_payment_works(self, gateway: PaymentGateway) -> None:
        created = gateway.create_payment(self.payment_request(), idempotency_key=_key())
        cancelled = gateway.cancel_payment(CancelPayment(created.ref), idempotency_key=_key())
        assert cancelled.ref == created.ref
        assert cancelled.status == "canceled"
        assert gateway.get_payment(created.ref).status == "canceled"

    def test_cancel_of_paid_payment_raises_already_settled(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        _, paid = self.paid_payment(gateway, control)
        with pytest.raises(PaymentAlreadySettledError):
            gateway.cancel_payment(CancelPayment(paid.ref), idempotency_key=_key())
        assert gateway.get_payment(paid.ref).status == "succeeded"

    # --- accounts ---------------------------------------------------------------------------

    def test_new_account_is_not_ready_until_made_ready(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        account = self.account(gateway)
        assert account.ready is False
        assert gateway.get_account(account.ref).ready is False
        control.make_ready(account.ref)
        assert gateway.get_account(account.ref).ready is True

    def test_new_account_carries_the_payee_id(self, gateway: PaymentGateway) -> None:
        """Whichever API made the account (Accounts v1 or v2), its metadata names the payee,
        when created and when read again."""
        created = gateway.create_account(
            payee_id="payee-meta", email=None, country="US", idempotency_key=_key()
        )
        assert created.metadata.get(META_PAYEE) == "payee-meta"
        assert gateway.get_account(created.ref).metadata.get(META_PAYEE) == "payee-meta"

    def test_create_account_with_same_key_returns_the_same_account(
        self, gateway: PaymentGateway
    ) -> None:
        key = _key()
        first = gateway.create_account(
            payee_id="payee-x", email=None, country="US", idempotency_key=key
        )
        again = gateway.create_account(
            payee_id="payee-x", email=None, country="US", idempotency_key=key
        )
        assert again.ref == first.ref

    def test_payees_in_the_cross_border_regions_can_be_paid(self, gateway: PaymentGateway) -> None:
        """The platform is in the regions (its payees are US accounts): a payee in any of
        them can be paid, whatever the case of the code."""
        for country in ("US", "GB", "DE", "FR", "NO", "CA", "CH", "gb"):
            assert gateway.payee_country_problem(country) is None, country

    def test_a_payee_country_stripe_refuses_is_refused_before_anything(
        self, gateway: PaymentGateway
    ) -> None:
        """Brazil is outside the regions; a malformed code is refused too. The refusal says
        why, happens before anything is sent, and leaves the idempotency key free."""
        problem = gateway.payee_country_problem("BR")
        assert problem is not None
        assert "BR" in problem
        assert gateway.payee_country_problem("USA") is not None
        key = _key()
        for country in ("BR", "USA"):
            with pytest.raises(RequestRefusedError):
                gateway.create_account(
                    payee_id="payee-abroad", email=None, country=country, idempotency_key=key
                )
        account = gateway.create_account(
            payee_id="payee-abroad", email=None, country="DE", idempotency_key=key
        )
        assert gateway.get_account(account.ref).ready is False

    def test_onboarding_link_is_an_https_url(self, gateway: PaymentGateway) -> None:
        account = self.account(gateway)
        link = gateway.create_onboarding_link(
            account.ref,
            return_url="https://example.com/return",
            refresh_url="https://example.com/refresh",
        )
        assert link.startswith("https://")

    # --- transfers --------------------------------------------------------------------------

    def test_transfer_to_not_ready_account_raises_destination_not_ready(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        request = self.transfer_request(
            payment, paid.charge_ref, self.account(gateway).ref, _AMOUNT
        )
        with pytest.raises(DestinationNotReadyError):
            gateway.create_transfer(request, idempotency_key=_key())
        assert (
            gateway.find_transfer(
                transfer_group=request.transfer_group,
                operation_id=request.metadata[META_OPERATION],
            )
            is None
        )

    def test_transfer_with_source_transaction_to_ready_account_works(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        request, transfer = self.made_transfer(gateway, control, _AMOUNT - 200)
        assert transfer.ref
        assert transfer.amount == _usd(_AMOUNT - 200)
        assert transfer.destination == request.destination
        assert transfer.source_transaction == request.source_transaction
        assert transfer.transfer_group == request.transfer_group
        assert dict(transfer.metadata) == dict(request.metadata)
        assert transfer.reversals == ()

    def test_transfer_replayed_with_same_key_moves_money_once(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        request = self.transfer_request(
            payment, paid.charge_ref, self.ready_account(gateway, control), 500
        )
        key = _key()
        first = gateway.create_transfer(request, idempotency_key=key)
        again = gateway.create_transfer(request, idempotency_key=key)
        assert again.ref == first.ref
        found = gateway.find_transfer(
            transfer_group=request.transfer_group, operation_id=request.metadata[META_OPERATION]
        )
        assert found is not None
        assert found.ref == first.ref

    def test_transfer_same_key_other_amount_raises_idempotency_mismatch(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        request = self.transfer_request(
            payment, paid.charge_ref, self.ready_account(gateway, control), 500
        )
        key = _key()
        gateway.create_transfer(request, idempotency_key=key)
        other = CreateTransfer(
            amount=_usd(600),
            destination=request.destination,
            source_transaction=request.source_transaction,
            transfer_group=request.transfer_group,
            metadata=request.metadata,
        )
        with pytest.raises(IdempotencyMismatchError):
            gateway.create_transfer(other, idempotency_key=key)

    def test_find_transfer_returns_none_for_unknown_operation(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        request, _ = self.made_transfer(gateway, control, 500)
        assert (
            gateway.find_transfer(transfer_group=request.transfer_group, operation_id="op_none")
            is None
        )

    # --- refunds ----------------------------------------------------------------------------

    @staticmethod
    def refund_request(payment_ref: str, escrow_id: str, amount: int) -> CreateRefund:
        """A refund with a fresh operation id."""
        return CreateRefund(
            amount=_usd(amount),
            payment_ref=payment_ref,
            metadata={META_ESCROW: escrow_id, META_OPERATION: f"op_{uuid.uuid4().hex[:12]}"},
        )

    def test_full_refund(self, gateway: PaymentGateway, control: GatewayControl) -> None:
        payment, paid = self.paid_payment(gateway, control)
        request = self.refund_request(paid.ref, payment.metadata[META_ESCROW], _AMOUNT)
        refund = gateway.create_refund(request, idempotency_key=_key())
        assert refund.amount == _usd(_AMOUNT)
        assert refund.payment_ref == paid.ref
        assert refund.status in ("pending", "succeeded")
        assert gateway.get_refund(refund.ref).ref == refund.ref
        found = gateway.find_refund(
            payment_ref=paid.ref, operation_id=request.metadata[META_OPERATION]
        )
        assert found is not None
        assert found.ref == refund.ref

    def test_partial_refunds_up_to_the_amount(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        escrow_id = payment.metadata[META_ESCROW]
        first = gateway.create_refund(
            self.refund_request(paid.ref, escrow_id, 700), idempotency_key=_key()
        )
        second = gateway.create_refund(
            self.refund_request(paid.ref, escrow_id, _AMOUNT - 700), idempotency_key=_key()
        )
        assert first.ref != second.ref
        assert (first.amount + second.amount) == _usd(_AMOUNT)

    def test_refund_beyond_the_amount_is_rejected(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        escrow_id = payment.metadata[META_ESCROW]
        gateway.create_refund(
            self.refund_request(paid.ref, escrow_id, 1_500), idempotency_key=_key()
        )
        with pytest.raises(GatewayRejectedError):
            gateway.create_refund(
                self.refund_request(paid.ref, escrow_id, _AMOUNT - 1_500 + 1),
                idempotency_key=_key(),
            )

    def test_find_refund_returns_none_for_unknown_operation(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        _, paid = self.paid_payment(gateway, control)
        assert gateway.find_refund(payment_ref=paid.ref, operation_id="op_none") is None

    # --- reversals --------------------------------------------------------------------------

    @staticmethod
    def reversal_request(
        transfer: CreateTransfer, transfer_ref: str, amount: int
    ) -> CreateReversal:
        """A reversal with a fresh operation id."""
        return CreateReversal(
            amount=_usd(amount),
            transfer_ref=transfer_ref,
            metadata={
                META_ESCROW: transfer.metadata[META_ESCROW],
                META_OPERATION: f"op_{uuid.uuid4().hex[:12]}",
            },
        )

    def test_full_reversal(self, gateway: PaymentGateway, control: GatewayControl) -> None:
        request, transfer = self.made_transfer(gateway, control, 1_000)
        reverse = self.reversal_request(request, transfer.ref, 1_000)
        reversal = gateway.create_reversal(reverse, idempotency_key=_key())
        assert reversal.amount == _usd(1_000)
        assert reversal.transfer_ref == transfer.ref
        found = gateway.find_reversal(
            transfer_ref=transfer.ref, operation_id=reverse.metadata[META_OPERATION]
        )
        assert found is not None
        assert found.ref == reversal.ref
        after = gateway.find_transfer(
            transfer_group=request.transfer_group, operation_id=request.metadata[META_OPERATION]
        )
        assert after is not None
        assert [r.ref for r in after.reversals] == [reversal.ref]

    def test_partial_reversals(self, gateway: PaymentGateway, control: GatewayControl) -> None:
        request, transfer = self.made_transfer(gateway, control, 1_000)
        first = gateway.create_reversal(
            self.reversal_request(request, transfer.ref, 300), idempotency_key=_key()
        )
        second = gateway.create_reversal(
            self.reversal_request(request, transfer.ref, 700), idempotency_key=_key()
        )
        after = gateway.find_transfer(
            transfer_group=request.transfer_group, operation_id=request.metadata[META_OPERATION]
        )
        assert after is not None
        assert {r.ref for r in after.reversals} == {first.ref, second.ref}
        assert sum(r.amount.amount for r in after.reversals) == 1_000

    def test_reversal_beyond_the_transfer_is_rejected(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        request, transfer = self.made_transfer(gateway, control, 1_000)
        with pytest.raises(GatewayRejectedError):
            gateway.create_reversal(
                self.reversal_request(request, transfer.ref, 1_001), idempotency_key=_key()
            )

    def test_find_reversal_returns_none_for_unknown_operation(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        _, transfer = self.made_transfer(gateway, control, 500)
        assert gateway.find_reversal(transfer_ref=transfer.ref, operation_id="op_none") is None

    # --- lists (what reconciliation reads) --------------------------------------------------

    #: How far into a list (newest first) the objects just made are looked for: a real test
    #: account may hold many older ones.
    RECENT = 100

    def test_iter_payments_lists_payments_with_our_metadata_only(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        """Newest first; a PaymentIntent without bountyescrow metadata is left out."""
        request, paid = self.paid_payment(gateway, control)
        unpaid = gateway.create_payment(self.payment_request(), idempotency_key=_key())
        other = gateway.create_payment(
            CreatePayment(amount=_usd(_AMOUNT), transfer_group="g", metadata={"order": "o-1"}),
            idempotency_key=_key(),
        )
        listed = {p.ref: p for p in itertools.islice(gateway.iter_payments(), self.RECENT)}
        assert paid.ref in listed
        assert unpaid.ref in listed
        assert other.ref not in listed
        assert listed[paid.ref].status == "succeeded"
        assert listed[paid.ref].amount_received == _usd(_AMOUNT)
        assert dict(listed[paid.ref].metadata) == dict(request.metadata)

    def test_lists_honour_their_window(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        """Nothing was created after 2100 or before 2000; a naive datetime is refused."""
        _, transfer = self.made_transfer(gateway, control, 500)
        future = datetime(2100, 1, 1, tzinfo=UTC)
        past = datetime(2000, 1, 1, tzinfo=UTC)
        for since, until in ((future, None), (None, past)):
            assert list(gateway.iter_payments(since=since, until=until)) == []
            assert list(gateway.iter_transfers(since=since, until=until)) == []
            assert list(gateway.iter_refunds(since=since, until=until)) == []
            assert list(gateway.iter_disputes(since=since, until=until)) == []
        listed = gateway.iter_transfers(since=past, until=future)
        assert transfer.ref in {t.ref for t in itertools.islice(listed, self.RECENT)}
        with pytest.raises(ValueError, match="since"):
            list(gateway.iter_transfers(since=datetime(2020, 1, 1)))
        with pytest.raises(ValueError, match="before"):
            list(gateway.iter_refunds(since=future, until=past))

    def test_iter_transfers_of_a_group_brings_every_reversal(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        request, transfer = self.made_transfer(gateway, control, 1_000)
        first = gateway.create_reversal(
            self.reversal_request(request, transfer.ref, 300), idempotency_key=_key()
        )
        second = gateway.create_reversal(
            self.reversal_request(request, transfer.ref, 200), idempotency_key=_key()
        )
        listed = list(gateway.iter_transfers(transfer_group=request.transfer_group))
        assert [t.ref for t in listed] == [transfer.ref]
        assert {r.ref for r in listed[0].reversals} == {first.ref, second.ref}
        assert listed[0].amount == _usd(1_000)
        assert dict(listed[0].metadata) == dict(request.metadata)

    def test_iter_refunds_of_a_payment_lists_each_refund(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        payment, paid = self.paid_payment(gateway, control)
        escrow_id = payment.metadata[META_ESCROW]
        made = [
            gateway.create_refund(
                self.refund_request(paid.ref, escrow_id, amount), idempotency_key=_key()
            )
            for amount in (700, 300)
        ]
        listed = list(gateway.iter_refunds(payment_ref=paid.ref))
        assert {r.ref for r in listed} == {r.ref for r in made}
        assert all(r.payment_ref == paid.ref for r in listed)
        assert sum(r.amount.amount for r in listed) == 1_000
        _, other = self.paid_payment(gateway, control)
        assert list(gateway.iter_refunds(payment_ref=other.ref)) == []

    def test_iter_disputes_of_an_undisputed_payment_is_empty(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        _, paid = self.paid_payment(gateway, control)
        assert list(gateway.iter_disputes(payment_ref=paid.ref)) == []

    def test_get_balance_is_per_currency_in_that_currency(
        self, gateway: PaymentGateway, control: GatewayControl
    ) -> None:
        """After a payment the balance has dollars (available or pending)."""
        self.paid_payment(gateway, control)
        balance = gateway.get_balance()
        assert "usd" in balance
        for currency, money in balance.items():
            assert currency == currency.lower()
            assert isinstance(money, Money)
            assert money.currency == currency
