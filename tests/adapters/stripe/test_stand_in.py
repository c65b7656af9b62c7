"""The gateway against the in-memory Stripe stand-in: idempotency, recovery, a whole story.

The stand-in keeps state and honours idempotency keys the way Stripe does, so these tests
assert what exists at "Stripe" afterwards (how many transfers, which refunds), not call lists.
"""

from __future__ import annotations

import logging

import attrs
import pytest
import stripe

from bountyescrow import errors
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_OPERATION,
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
)
from bountyescrow.domain.money import Money

from .stand_in import Fault, StripeStandIn
from .support import TEST_KEY

GROUP = "bountyescrow:esc_1"


def usd(amount: int) -> Money:
    return Money(amount, "usd")


def key(operation: str, generation: int = 0) -> str:
    return f"bountyescrow:test:{operation}:{generation}"


def funded(
    stand_in: StripeStandIn, gateway: StripeGateway, amount: int = 25_000
) -> tuple[str, str]:
    """A succeeded PaymentIntent for escrow esc_1: (payment ref, charge ref)."""
    intent = gateway.create_payment(
        CreatePayment(amount=usd(amount), transfer_group=GROUP, metadata={META_ESCROW: "esc_1"}),
        idempotency_key=key("fund"),
    )
    return intent.ref, stand_in.succeed(intent.ref)


def ready_payee(stand_in: StripeStandIn, gateway: StripeGateway, payee: str = "u2") -> str:
    account = gateway.create_account(
        payee_id=payee, email=f"{payee}@example.com", country="US", idempotency_key=f"payee:{payee}"
    )
    stand_in.activate(account.ref)
    return account.ref


def release(
    account: str, charge: str | None, operation: str, amount: int = 22_500
) -> CreateTransfer:
    return CreateTransfer(
        amount=usd(amount),
        destination=account,
        source_transaction=charge,
        transfer_group=GROUP,
        metadata={META_ESCROW: "esc_1", META_OPERATION: operation},
    )


@pytest.fixture
def payout(stand_in: StripeStandIn, gateway: StripeGateway) -> CreateTransfer:
    """Operation op_1's transfer: 22,500 from a succeeded charge to a ready payee."""
    _, charge = funded(stand_in, gateway)
    return release(ready_payee(stand_in, gateway), charge, "op_1")


class TestIdempotentTransfers:
    def test_the_same_key_twice_makes_one_transfer_that_find_transfer_finds(
        self, stand_in: StripeStandIn, gateway: StripeGateway, payout: CreateTransfer
    ) -> None:

        first = gateway.create_transfer(payout, idempotency_key=key("op_1"))
        second = gateway.create_transfer(payout, idempotency_key=key("op_1"))

        assert first == second
        assert stand_in.responses[-1].headers["Idempotent-Replayed"] == "true"
        assert len(stand_in.transfers_in_group(GROUP)) == 1
        assert stand_in.transfers_in_group(GROUP)[0]["id"] == first.ref
        assert gateway.find_transfer(transfer_group=GROUP, operation_id="op_1") == first
        assert gateway.find_transfer(transfer_group=GROUP, operation_id="op_2") is None

    def test_the_same_key_with_other_parameters_is_a_mismatch_and_moves_nothing(
        self,
        stand_in: StripeStandIn,
        gateway: StripeGateway,
        payout: CreateTransfer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        gateway.create_transfer(payout, idempotency_key=key("op_1"))

        with (
            caplog.at_level(logging.ERROR, logger="bountyescrow.stripe"),
            pytest.raises(errors.IdempotencyMismatchError),
        ):
            gateway.create_transfer(
                attrs.evolve(payout, amount=usd(1_000)), idempotency_key=key("op_1")
            )

        assert len(stand_in.transfers_in_group(GROUP)) == 1
        assert key("op_1") in caplog.text

    @pytest.mark.parametrize(
        ("fault", "replayed"),
        [
            pytest.param("timeout_after_effect", "true", id="the_answer_was_lost_and_is_replayed"),
            pytest.param("rate_limit", None, id="a_rate_limited_request_is_not_stored"),
        ],
    )
    def test_the_retry_with_the_same_key_makes_one_transfer(
        self,
        stand_in: StripeStandIn,
        gateway: StripeGateway,
        payout: CreateTransfer,
        fault: Fault,
        replayed: str | None,
    ) -> None:
        stand_in.fail_next(fault)

        with pytest.raises(errors.GatewayUnavailableError):
            gateway.create_transfer(payout, idempotency_key=key("op_1"))
        retried = gateway.create_transfer(payout, idempotency_key=key("op_1"))

        assert stand_in.responses[-1].headers.get("Idempotent-Replayed") == replayed
        assert [t["id"] for t in stand_in.transfers_in_group(GROUP)] == [retried.ref]

    def test_the_sdks_own_retries_reuse_the_key(
        self, stand_in: StripeStandIn, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(stripe.HTTPXClient, "_sleep_time_seconds", lambda self, n: 0.0)
        with StripeGateway(api_key=TEST_KEY, max_network_retries=2) as gateway:
            _, charge = funded(stand_in, gateway)
            account = ready_payee(stand_in, gateway)
            stand_in.fail_next("timeout_after_effect")

            transfer = gateway.create_transfer(
                release(account, charge, "op_1"), idempotency_key=key("op_1")
            )

        assert [t["id"] for t in stand_in.transfers_in_group(GROUP)] == [transfer.ref]
        posts = [r for r in stand_in.requests if r.url.path == "/v1/transfers"]
        assert [r.headers["Idempotency-Key"] for r in posts] == [key("op_1")] * 2


class TestRecoveryAfterAReplayedServerError:
    """DESIGN §7: after a replayed 500, look the object up before sending a new generation."""

    def test_the_transfer_made_before_the_500_is_found(
        self, stand_in: StripeStandIn, gateway: StripeGateway, payout: CreateTransfer
    ) -> None:
        stand_in.fail_next("server_error_after_effect")

        with pytest.raises(errors.GatewayUnavailableError) as first:
            gateway.create_transfer(payout, idempotency_key=key("op_1"))
        with pytest.raises(errors.GatewayUnavailableError) as again:
            gateway.create_transfer(payout, idempotency_key=key("op_1"))

        assert not first.value.replayed
        assert again.value.replayed
        found = gateway.find_transfer(transfer_group=GROUP, operation_id="op_1")
        assert found is not None
        assert found.amount == usd(22_500)
        assert len(stand_in.transfers_in_group(GROUP)) == 1

    def test_when_nothing_was_made_a_new_generation_moves_the_money_once(
        self, stand_in: StripeStandIn, gateway: StripeGateway, payout: CreateTransfer
    ) -> None:
        stand_in.fail_next("server_error")

        with pytest.raises(errors.GatewayUnavailableError):
            gateway.create_transfer(payout, idempotency_key=key("op_1"))
        with pytest.raises(errors.GatewayUnavailableError) as replayed:
            gateway.create_transfer(payout, idempotency_key=key("op_1"))
        assert replayed.value.replayed
        assert gateway.find_transfer(transfer_group=GROUP, operation_id="op_1") is None

        made = gateway.create_transfer(payout, idempotency_key=key("op_1", generation=1))

        assert [t["id"] for t in stand_in.transfers_in_group(GROUP)] == [made.ref]


class TestStory:
    def test_fund_pay_out_pull_back_and_refund(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        payment, charge = funded(stand_in, gateway)
        funded_intent = gateway.get_payment(payment)
        assert (funded_intent.status, funded_intent.charge_ref) == ("succeeded", charge)

        # A payee who has not finished onboarding cannot receive yet.
        account = gateway.create_account(
            payee_id="u2", email="h@example.com", country="US", idempotency_key="payee:u2"
        )
        assert not account.ready
        with pytest.raises(errors.DestinationNotReadyError):
            gateway.create_transfer(
                release(account.ref, charge, "op_1"), idempotency_key=key("op_1")
            )
        link = gateway.create_onboarding_link(
            account.ref,
            return_url="https://app.example/done",
            refresh_url="https://app.example/again",
        )
        assert account.ref in link

        stand_in.activate(account.ref)
        assert gateway.get_account(account.ref).ready
        transfer = gateway.create_transfer(
            release(account.ref, charge, "op_1"), idempotency_key=key("op_1", generation=1)
        )
        assert transfer.source_transaction == charge

        # Pull part of it back, then more than the payee still holds.
        pulled = gateway.create_reversal(
            CreateReversal(
                amount=usd(2_500),
                transfer_ref=transfer.ref,
                metadata={META_ESCROW: "esc_1", META_OPERATION: "op_2"},
            ),
            idempotency_key=key("op_2"),
        )
        stand_in.set_payee_balance(account.ref, 1_000)
        with pytest.raises(errors.InsufficientPayeeBalanceError):
            gateway.create_reversal(
                CreateReversal(amount=usd(5_000), transfer_ref=transfer.ref, metadata={}),
                idempotency_key=key("op_3"),
            )
        assert gateway.find_reversal(transfer_ref=transfer.ref, operation_id="op_2") == pulled
        found = gateway.find_transfer(transfer_group=GROUP, operation_id="op_1")
        assert found is not None
        assert found.reversals == (pulled,)

        # Refund what the platform still holds.
        refund = gateway.create_refund(
            CreateRefund(
                amount=usd(5_000),
                payment_ref=payment,
                metadata={META_ESCROW: "esc_1", META_OPERATION: "op_4"},
                reason="requested_by_customer",
            ),
            idempotency_key=key("op_4"),
        )
        assert refund.status == "succeeded"
        assert gateway.find_refund(payment_ref=payment, operation_id="op_4") == refund
        assert gateway.get_refund(refund.ref) == refund

        # The intent succeeded: it can no longer be cancelled.
        with pytest.raises(errors.PaymentAlreadySettledError):
            gateway.cancel_payment(CancelPayment(payment_ref=payment), idempotency_key=key("op_5"))

    def test_a_pending_refund_stays_pending(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        payment, _ = funded(stand_in, gateway)
        stand_in.next_refund_status = "pending"

        refund = gateway.create_refund(
            CreateRefund(amount=usd(25_000), payment_ref=payment, metadata={}),
            idempotency_key=key("op_1"),
        )

        assert refund.status == "pending"

    def test_cancelling_twice_with_new_keys_returns_the_cancelled_intent(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        intent = gateway.create_payment(
            CreatePayment(amount=usd(1_000), transfer_group=GROUP, metadata={}),
            idempotency_key=key("fund"),
        )

        first = gateway.cancel_payment(
            CancelPayment(payment_ref=intent.ref), idempotency_key=key("op_1")
        )
        second = gateway.cancel_payment(
            CancelPayment(payment_ref=intent.ref), idempotency_key=key("op_1", generation=1)
        )

        assert first.status == second.status == "canceled"

    def test_a_dispute_is_withdrawn_then_reinstated(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        payment, charge = funded(stand_in, gateway)
        dispute_ref = stand_in.open_dispute(payment)

        opened = gateway.get_dispute(dispute_ref)
        stand_in.close_dispute(dispute_ref, won=True)
        closed = gateway.get_dispute(dispute_ref)

        assert (opened.payment_ref, opened.charge_ref) == (payment, charge)
        assert (opened.funds_withdrawn, opened.funds_reinstated) == (usd(25_000), usd(0))
        assert (closed.status, closed.funds_reinstated) == ("won", usd(25_000))

    def test_a_cross_border_payee_gets_the_full_agreement(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        """The platform (US, from ``GET /v1/account``) pays a DE payee under the full
        agreement, as Stripe's cross-border payouts require."""
        account = gateway.create_account(
            payee_id="u3", email=None, country="DE", idempotency_key="payee:u3"
        )

        assert stand_in.accounts[account.ref]["tos_acceptance"]["service_agreement"] == "full"
        assert stand_in.accounts[account.ref]["metadata"] == {"bountyescrow_payee_id": "u3"}
        assert gateway.platform_country == "US"

    def test_a_host_may_choose_the_recipient_agreement_for_payees_abroad(
        self, stand_in: StripeStandIn
    ) -> None:
        with StripeGateway(
            api_key=TEST_KEY, max_network_retries=0, cross_border_agreement="recipient"
        ) as gateway:
            abroad = gateway.create_account(
                payee_id="u3", email=None, country="BR", idempotency_key="payee:u3"
            )
            home = gateway.create_account(
                payee_id="u4", email=None, country="US", idempotency_key="payee:u4"
            )

        agreements = [
            stand_in.accounts[ref]["tos_acceptance"]["service_agreement"]
            for ref in (abroad.ref, home.ref)
        ]
        assert agreements == ["recipient", "full"]


class TestLookupsAtScale:
    def test_find_transfer_pages_through_more_than_a_hundred_transfers(
        self, stand_in: StripeStandIn, gateway: StripeGateway
    ) -> None:
        _, charge = funded(stand_in, gateway, amount=99_999_999)
        account = ready_payee(stand_in, gateway)
        for n in range(105):
            gateway.create_transfer(
                release(account, charge, f"op_{n}", amount=100), idempotency_key=key(f"op_{n}")
            )

        oldest = gateway.find_transfer(transfer_group=GROUP, operation_id="op_0")

        assert oldest is not None
        lists = [
            r for r in stand_in.requests if r.method == "GET" and r.url.path == "/v1/transfers"
        ]
        assert len(lists) == 2

    def test_a_transfer_with_many_reversals_reports_them_all(
        self, stand_in: StripeStandIn, gateway: StripeGateway, payout: CreateTransfer
    ) -> None:
        transfer = gateway.create_transfer(payout, idempotency_key=key("op_1"))
        for n in range(12):
            gateway.create_reversal(
                CreateReversal(amount=usd(100), transfer_ref=transfer.ref, metadata={}),
                idempotency_key=key(f"rev_{n}"),
            )

        found = gateway.find_transfer(transfer_group=GROUP, operation_id="op_1")

        assert found is not None
        assert len(found.reversals) == 12
