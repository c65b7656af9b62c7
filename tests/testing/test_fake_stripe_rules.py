"""`FakeGateway` refuses what Stripe refuses, from the rules `StripeGateway` checks too."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_OPERATION,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import GatewayRejectedError, ValidationError
from bountyescrow.ports.gateway import RequestRefusedError
from bountyescrow.testing import FakeGateway, ManualClock

from .support import ESCROW, account, ready_account


def kwd(amount: int) -> Money:
    return Money(amount, "kwd")


def meta(op: str) -> dict[str, str]:
    return {META_ESCROW: ESCROW, META_OPERATION: op}


class TestMaxCallDuration:
    def test_is_five_seconds_unless_told(self) -> None:
        assert FakeGateway().max_call_duration == timedelta(seconds=5)
        told = FakeGateway(max_call_duration=timedelta(minutes=3))
        assert told.max_call_duration == timedelta(minutes=3)

    @pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1), 5])
    def test_must_be_a_positive_timedelta(self, value: object) -> None:
        with pytest.raises(ValueError, match="max_call_duration"):
            FakeGateway(max_call_duration=value)  # type: ignore[arg-type]


class TestThreeDecimalCurrencies:
    """Stripe takes KWD, BHD, JOD, OMR and TND amounts only in multiples of 10."""

    @pytest.fixture
    def kwd_transfer(self, fake: FakeGateway) -> tuple[str, str, str]:
        """A paid KWD PaymentIntent, its charge, and a transfer of 5.000 KWD from it."""
        payment = fake.create_payment(
            CreatePayment(amount=kwd(10_000), transfer_group=ESCROW, metadata=meta("op_f")),
            idempotency_key="k-pay",
        )
        fake.pay(payment.ref)
        charge = fake.get_payment(payment.ref).charge_ref
        assert charge is not None
        transfer = fake.create_transfer(
            CreateTransfer(
                amount=kwd(5_000),
                destination=ready_account(fake),
                source_transaction=charge,
                transfer_group=ESCROW,
                metadata=meta("op_t"),
            ),
            idempotency_key="k-tr",
        )
        return payment.ref, charge, transfer.ref

    def test_an_amount_not_ending_in_zero_is_refused_and_nothing_moves(
        self, fake: FakeGateway, kwd_transfer: tuple[str, str, str]
    ) -> None:
        payment_ref, charge, transfer_ref = kwd_transfer
        requests = {
            "k-1": CreateTransfer(
                amount=kwd(1_005),
                destination=ready_account(fake, payee="u3"),
                source_transaction=charge,
                transfer_group=ESCROW,
                metadata=meta("op_t2"),
            ),
            "k-2": CreateRefund(amount=kwd(1_005), payment_ref=payment_ref, metadata=meta("op_r")),
            "k-3": CreateReversal(
                amount=kwd(1_005), transfer_ref=transfer_ref, metadata=meta("op_v")
            ),
        }
        moved = list(fake.movements)
        for key, request in requests.items():
            with pytest.raises(RequestRefusedError, match="multiple of 10") as caught:
                send(fake, request, key)
            assert isinstance(caught.value, ValidationError | GatewayRejectedError)
            assert not caught.value.outcome_unknown
        assert fake.movements == moved

    def test_the_key_of_a_refused_request_stays_free(
        self, fake: FakeGateway, kwd_transfer: tuple[str, str, str]
    ) -> None:
        """Nothing reached Stripe: the corrected request may use the same key."""
        payment_ref, _, _ = kwd_transfer
        with pytest.raises(RequestRefusedError):
            fake.create_refund(
                CreateRefund(amount=kwd(995), payment_ref=payment_ref, metadata=meta("op_r")),
                idempotency_key="k-r",
            )
        refund = fake.create_refund(
            CreateRefund(amount=kwd(990), payment_ref=payment_ref, metadata=meta("op_r")),
            idempotency_key="k-r",
        )
        assert refund.amount == kwd(990)

    def test_a_payment_below_stripes_minimum_is_refused(self, fake: FakeGateway) -> None:
        with pytest.raises(RequestRefusedError, match="minimum charge"):
            fake.create_payment(
                CreatePayment(amount=Money(49, "usd"), transfer_group=ESCROW, metadata={}),
                idempotency_key="k",
            )


def send(fake: FakeGateway, request: object, key: str) -> object:
    if isinstance(request, CreateTransfer):
        return fake.create_transfer(request, idempotency_key=key)
    if isinstance(request, CreateRefund):
        return fake.create_refund(request, idempotency_key=key)
    assert isinstance(request, CreateReversal)
    return fake.create_reversal(request, idempotency_key=key)


class TestMetadata:
    """Stripe's limits: 50 keys, keys up to 40 characters without brackets, values up to 500."""

    @pytest.mark.parametrize(
        ("metadata", "named"),
        [
            ({"bounty_id": "b" * 501}, "501 characters"),
            ({"k" * 41: "v"}, "41 characters"),
            ({f"key_{n}": "v" for n in range(51)}, "51 keys"),
            ({"tags[0]": "v"}, "square brackets"),
        ],
        ids=["long_value", "long_key", "too_many_keys", "brackets"],
    )
    def test_a_payment_with_metadata_stripe_refuses_is_refused_naming_the_problem(
        self, metadata: dict[str, str], named: str
    ) -> None:
        """A bounty id over 500 characters used to give a PaymentIntent Stripe never makes."""
        fake = FakeGateway(clock=ManualClock())
        with pytest.raises(RequestRefusedError, match=named) as caught:
            fake.create_payment(
                CreatePayment(
                    amount=Money(10_000, "usd"), transfer_group=ESCROW, metadata=metadata
                ),
                idempotency_key="k",
            )
        assert "create_payment" in caught.value.message
        assert fake.pending_events == ()
        made = fake.create_payment(
            CreatePayment(amount=Money(10_000, "usd"), transfer_group=ESCROW, metadata={}),
            idempotency_key="k",
        )
        assert made.ref == "pi_0001"  # the refused request made nothing, used no key

    def test_every_money_movement_checks_its_metadata(self, fake: FakeGateway) -> None:
        too_long = {META_OPERATION: "o" * 501}
        requests = [
            CreateTransfer(
                amount=Money(1_000, "usd"),
                destination="acct_0001",
                source_transaction=None,
                transfer_group=ESCROW,
                metadata=too_long,
            ),
            CreateRefund(amount=Money(1_000, "usd"), payment_ref="pi_0001", metadata=too_long),
            CreateReversal(amount=Money(1_000, "usd"), transfer_ref="tr_0001", metadata=too_long),
        ]
        for n, request in enumerate(requests):
            with pytest.raises(RequestRefusedError, match="500"):
                send(fake, request, f"k{n}")

    def test_a_payee_id_too_long_for_metadata_is_refused(self, fake: FakeGateway) -> None:
        with pytest.raises(RequestRefusedError, match="500"):
            fake.create_account(
                payee_id="p" * 501, email=None, country="US", idempotency_key="acct:long"
            )
        assert account(fake, payee="p" * 500) == "acct_0001"
