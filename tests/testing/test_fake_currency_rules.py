"""`FakeGateway` refuses the amounts Stripe refuses in each currency, from the shared table.

The rules are `bountyescrow.domain.currencies`; `StripeGateway` checks the same ones
(`tests/adapters/stripe/test_currency_rules.py`).
"""

from __future__ import annotations

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
from bountyescrow.ports.gateway import RequestRefusedError
from bountyescrow.testing import FakeGateway

from .support import ESCROW, ready_account


def meta(op: str) -> dict[str, str]:
    return {META_ESCROW: ESCROW, META_OPERATION: op}


def pay(fake: FakeGateway, amount: Money) -> tuple[str, str]:
    """A paid PaymentIntent of `amount`, and its charge."""
    payment = fake.create_payment(
        CreatePayment(amount=amount, transfer_group=ESCROW, metadata=meta("op_f")),
        idempotency_key="k-pay",
    )
    fake.pay(payment.ref)
    charge = fake.get_payment(payment.ref).charge_ref
    assert charge is not None
    return payment.ref, charge


def transfer(fake: FakeGateway, amount: Money, charge: str, key: str = "k-tr") -> str:
    return fake.create_transfer(
        CreateTransfer(
            amount=amount,
            destination=ready_account(fake, payee=f"u-{key}"),
            source_transaction=charge,
            transfer_group=ESCROW,
            metadata=meta(f"op_{key}"),
        ),
        idempotency_key=key,
    ).ref


@pytest.mark.parametrize("currency", ["ugx", "isk"])
class TestWholeUnitCurrencies:
    """UGX and ISK: two decimals in Stripe's amounts, always 00."""

    def test_a_payment_with_a_fraction_is_refused_and_makes_nothing(
        self, fake: FakeGateway, currency: str
    ) -> None:
        with pytest.raises(RequestRefusedError, match="multiple of 100") as caught:
            fake.create_payment(
                CreatePayment(
                    amount=Money(1_000_050, currency), transfer_group=ESCROW, metadata={}
                ),
                idempotency_key="k",
            )
        assert not caught.value.outcome_unknown
        assert fake.pending_events == ()

    def test_transfers_refunds_and_reversals_with_a_fraction_are_refused(
        self, fake: FakeGateway, currency: str
    ) -> None:
        payment_ref, charge = pay(fake, Money(1_000_000, currency))
        transfer_ref = transfer(fake, Money(500_000, currency), charge)
        moved = list(fake.movements)
        odd = Money(10_050, currency)
        with pytest.raises(RequestRefusedError, match=f"whole {currency.upper()}"):
            transfer(fake, odd, charge, key="k-tr2")
        with pytest.raises(RequestRefusedError, match=f"whole {currency.upper()}"):
            fake.create_refund(
                CreateRefund(amount=odd, payment_ref=payment_ref, metadata=meta("op_r")),
                idempotency_key="k-r",
            )
        with pytest.raises(RequestRefusedError, match=f"whole {currency.upper()}"):
            fake.create_reversal(
                CreateReversal(amount=odd, transfer_ref=transfer_ref, metadata=meta("op_v")),
                idempotency_key="k-v",
            )
        assert fake.movements == moved

    def test_whole_units_move(self, fake: FakeGateway, currency: str) -> None:
        payment_ref, charge = pay(fake, Money(1_000_000, currency))
        transfer(fake, Money(500_000, currency), charge)
        refund = fake.create_refund(
            CreateRefund(
                amount=Money(100_000, currency), payment_ref=payment_ref, metadata=meta("op_r")
            ),
            idempotency_key="k-r",
        )
        assert refund.amount == Money(100_000, currency)


@pytest.mark.parametrize("currency", ["huf", "twd"])
def test_huf_and_twd_charges_and_transfers_take_two_decimals(
    fake: FakeGateway, currency: str
) -> None:
    """Only their payouts are in whole units, and the library makes no payouts."""
    _, charge = pay(fake, Money(1_000_050, currency))
    transfer(fake, Money(500_025, currency), charge)
    assert [m.amount for m in fake.movements] == [Money(500_025, currency)]


def test_huf_below_the_minimum_charge_is_refused(fake: FakeGateway) -> None:
    with pytest.raises(RequestRefusedError, match=r"HUF 175\.00") as caught:
        pay(fake, Money(17_499, "huf"))
    assert caught.value.code == "amount_too_small"


def test_jpy_below_the_minimum_charge_is_refused(fake: FakeGateway) -> None:
    with pytest.raises(RequestRefusedError, match="¥50"):
        pay(fake, Money(49, "jpy"))
    pay(fake, Money(50, "jpy"))


def test_more_than_eight_digits_is_refused_in_every_currency(fake: FakeGateway) -> None:
    for n, currency in enumerate(["usd", "jpy", "ugx", "kwd"]):
        with pytest.raises(RequestRefusedError, match="eight digits") as caught:
            fake.create_payment(
                CreatePayment(
                    amount=Money(100_000_000, currency), transfer_group=ESCROW, metadata={}
                ),
                idempotency_key=f"k{n}",
            )
        assert caught.value.code == "amount_too_large"
