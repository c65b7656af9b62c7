"""`FakeGateway` as a `PaymentGateway`, and its controls: Stripe's rules where they matter."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    CancelPayment,
    CreateTransfer,
    FraudWarningSnapshot,
    PaymentSnapshot,
    PayoutSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayRejectedError,
    InsufficientPayeeBalanceError,
    PaymentAlreadySettledError,
)
from bountyescrow.ports.gateway import PaymentGateway, RequestRefusedError
from bountyescrow.testing import FakeGateway, ManualClock, Movement
from bountyescrow.testing._fake_gateway import FakeControlError

from .support import (
    ESCROW,
    account,
    created,
    funded_transfer,
    paid,
    payment_request,
    ready_account,
    refund_request,
    reversal_request,
    transfer_request,
    types,
    usd,
)


def test_is_a_payment_gateway() -> None:
    gateway: PaymentGateway = FakeGateway()
    assert gateway.livemode is False
    assert FakeGateway(livemode=True).livemode is True


def test_refuses_an_empty_webhook_secret() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        FakeGateway(webhook_secret="")


def test_ids_are_deterministic(fake: FakeGateway) -> None:
    payment, transfer = funded_transfer(fake)
    refund = fake.create_refund(refund_request(payment.ref), idempotency_key="k-re")
    reversal = fake.create_reversal(reversal_request(transfer.ref), idempotency_key="k-rv")
    dispute = fake.open_dispute(payment.ref, inquiry=True)
    warning = fake.early_fraud_warning(payment.ref)
    assert (payment.ref, payment.charge_ref, transfer.ref, transfer.destination) == (
        "pi_0001",
        "ch_0001",
        "tr_0001",
        "acct_0001",
    )
    assert (refund.ref, reversal.ref, dispute, warning) == (
        "re_0001",
        "trr_0001",
        "dp_0001",
        "issfr_0001",
    )
    assert fake.pending_events[0].id == "evt_0001"


class TestPayments:
    def test_create_payment_awaits_the_payer(self, fake: FakeGateway) -> None:
        payment = fake.create_payment(payment_request(25_000), idempotency_key="k")
        assert payment.status == "requires_payment_method"
        assert payment.amount == usd(25_000)
        assert payment.amount_received == usd(0)
        assert payment.charge_ref is None
        assert payment.client_secret is not None
        assert payment.client_secret.startswith("pi_0001_secret_")
        assert "secret" not in repr(payment)
        assert payment.metadata[META_ESCROW] == ESCROW
        assert fake.pending_events == ()

    def test_create_payment_refuses_a_non_positive_amount(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError):
            fake.create_payment(payment_request(0), idempotency_key="k")

    def test_get_payment_of_unknown_ref_is_resource_missing(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError) as caught:
            fake.get_payment("pi_nope")
        assert caught.value.code == "resource_missing"

    def test_pay_succeeds_with_a_charge(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.pay(payment.ref)
        after = fake.get_payment(payment.ref)
        assert (after.status, after.amount_received, after.charge_ref) == (
            "succeeded",
            usd(10_000),
            "ch_0001",
        )
        assert types(fake) == ["payment_intent.succeeded"]
        event = fake.pending_events[0].object
        assert isinstance(event, PaymentSnapshot)
        assert event.status == "succeeded"

    def test_pay_with_an_amount_receives_that_amount(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.pay(payment.ref, amount=usd(12_000))
        assert fake.get_payment(payment.ref).amount_received == usd(12_000)

    def test_pay_refuses_misuse(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        with pytest.raises(FakeControlError, match="pay_again"):
            fake.pay(payment.ref)
        with pytest.raises(FakeControlError, match="no PaymentIntent"):
            fake.pay("pi_nope")
        other = created(fake, key="k2")
        with pytest.raises(ValueError, match="usd"):
            fake.pay(other.ref, amount=Money(100, "eur"))
        with pytest.raises(ValueError, match="positive"):
            fake.pay(other.ref, amount=usd(0))

    def test_pay_force_pays_a_cancelled_payment_intent(self, fake: FakeGateway) -> None:
        """Stripe never does this; tests use it to reach "success after the library cancelled"."""
        payment = created(fake)
        fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c")
        fake.drop_events()
        fake.pay(payment.ref, force=True)
        assert fake.get_payment(payment.ref).status == "succeeded"
        assert types(fake) == ["payment_intent.succeeded"]
        assert fake.pending_payloads[0]["data"]["object"]["canceled_at"] is None

    def test_control_errors_carry_stripe_codes(self, fake: FakeGateway) -> None:
        with pytest.raises(ValueError, match="pi_nope") as missing:
            fake.pay("pi_nope")
        assert isinstance(missing.value, FakeControlError)
        assert missing.value.code == "resource_missing"
        with pytest.raises(FakeControlError) as state:
            fake.decline(paid(fake).ref)
        assert state.value.code == "payment_intent_unexpected_state"

    def test_decline_records_the_error_and_allows_a_later_payment(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.decline(payment.ref, message="Insufficient funds.")
        declined = fake.get_payment(payment.ref)
        assert declined.status == "requires_payment_method"
        assert declined.last_error == "Insufficient funds."
        assert declined.charge_ref == "ch_0001"  # the failed charge, as on Stripe
        assert types(fake) == ["payment_intent.payment_failed"]
        body = fake.pending_payloads[0]["data"]["object"]
        assert body["last_payment_error"]["code"] == "card_declined"
        assert body["last_payment_error"]["message"] == "Insufficient funds."
        fake.pay(payment.ref)
        after = fake.get_payment(payment.ref)
        assert (after.status, after.charge_ref, after.last_error) == ("succeeded", "ch_0002", None)

    def test_a_declined_charge_cannot_be_a_transfer_source(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.decline(payment.ref)
        with pytest.raises(GatewayRejectedError):
            fake.create_transfer(
                transfer_request(fake.get_payment(payment.ref), ready_account(fake)),
                idempotency_key="k",
            )

    def test_process_then_pay(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.process(payment.ref)
        assert fake.get_payment(payment.ref).status == "processing"
        fake.pay(payment.ref)
        assert fake.get_payment(payment.ref).status == "succeeded"
        assert types(fake) == ["payment_intent.processing", "payment_intent.succeeded"]

    def test_process_then_decline(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.process(payment.ref)
        fake.decline(payment.ref)
        assert fake.get_payment(payment.ref).status == "requires_payment_method"
        with pytest.raises(FakeControlError, match="cannot process"):
            fake.process(paid(fake, key="k2").ref)

    def test_pay_again_makes_a_second_succeeded_payment_intent(self, fake: FakeGateway) -> None:
        first = paid(fake)
        fake.drop_events()
        second_ref = fake.pay_again(first.ref)
        second = fake.get_payment(second_ref)
        assert second_ref != first.ref
        assert second.status == "succeeded"
        assert second.metadata == first.metadata
        assert second.charge_ref not in (None, first.charge_ref)
        assert types(fake) == ["payment_intent.succeeded"]
        assert fake.pending_payloads[0]["data"]["object"]["transfer_group"] == ESCROW
        assert fake.get_payment(fake.pay_again(first.ref, usd(50))).amount_received == usd(50)

    def test_cancel_payment_of_an_unpaid_payment(self, fake: FakeGateway) -> None:
        payment = created(fake)
        cancelled = fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c")
        assert cancelled.status == "canceled"
        assert types(fake) == ["payment_intent.canceled"]
        assert fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c") == cancelled

    @pytest.mark.parametrize("state", ["succeeded", "processing"])
    def test_cancel_of_a_settled_payment_is_refused(self, fake: FakeGateway, state: str) -> None:
        payment = created(fake)
        (fake.pay if state == "succeeded" else fake.process)(payment.ref)
        with pytest.raises(PaymentAlreadySettledError):
            fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c")
        assert fake.get_payment(payment.ref).status == state

    def test_cancel_of_a_cancelled_payment_is_rejected(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c1")
        with pytest.raises(GatewayRejectedError) as caught:
            fake.cancel_payment(CancelPayment(payment.ref), idempotency_key="c2")
        assert not isinstance(caught.value, PaymentAlreadySettledError)

    def test_cancel_outside(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.cancel_outside(payment.ref)
        assert fake.get_payment(payment.ref).status == "canceled"
        assert types(fake) == ["payment_intent.canceled"]
        with pytest.raises(FakeControlError, match="status of canceled"):
            fake.pay(payment.ref)
        with pytest.raises(FakeControlError, match="cannot cancel"):
            fake.cancel_outside(paid(fake, key="k2").ref)


class TestAccounts:
    def test_create_account_is_not_ready(self, fake: FakeGateway) -> None:
        created_account = fake.create_account(
            payee_id="u2", email="h@example.com", country="US", idempotency_key="a"
        )
        assert (created_account.ref, created_account.ready) == ("acct_0001", False)
        assert created_account.metadata == {"bountyescrow_payee_id": "u2"}
        assert fake.get_account("acct_0001") == created_account

    def test_create_account_refuses_a_bad_country(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError):
            fake.create_account(payee_id="u2", email=None, country="USA", idempotency_key="a")
        assert fake.payee_country_problem("USA") is not None

    def test_onboarding_link(self, fake: FakeGateway) -> None:
        ref = account(fake)
        link = fake.create_onboarding_link(
            ref, return_url="https://app.test/back", refresh_url="https://app.test/again"
        )
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.path) == (
            "https",
            "connect.fake.test",
            "/onboard/acct_0001",
        )
        assert parse_qs(parts.query) == {
            "return_url": ["https://app.test/back"],
            "refresh_url": ["https://app.test/again"],
        }
        with pytest.raises(GatewayRejectedError):
            fake.create_onboarding_link("acct_nope", return_url="x", refresh_url="y")

    def test_complete_onboarding_makes_it_ready_with_connect_events(
        self, fake: FakeGateway
    ) -> None:
        ref = account(fake)
        fake.complete_onboarding(ref)
        assert fake.get_account(ref).ready is True
        assert types(fake) == ["account.updated", "capability.updated"]
        assert {e.account for e in fake.pending_events} == {ref}
        account_body, capability_body = (p["data"]["object"] for p in fake.pending_payloads)
        assert account_body["capabilities"]["transfers"] == "active"
        assert capability_body["status"] == "active"
        fake.complete_onboarding(ref)
        assert len(fake.pending_events) == 2  # nothing changed, nothing sent

    def test_restrict_makes_it_not_ready_again(self, fake: FakeGateway) -> None:
        ref = ready_account(fake)
        fake.drop_events()
        fake.restrict(ref)
        assert fake.get_account(ref).ready is False
        assert types(fake) == ["account.updated", "capability.updated"]

    def test_deauthorize(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        ref = ready_account(fake)
        fake.drop_events()
        fake.deauthorize(ref)
        snapshot = fake.get_account(ref)
        assert (snapshot.ready, snapshot.deauthorized) == (False, True)
        assert types(fake) == ["account.application.deauthorized"]
        assert fake.pending_events[0].account == ref
        with pytest.raises(DestinationNotReadyError):
            fake.create_transfer(transfer_request(payment, ref), idempotency_key="k")

    def test_account_in_another_country_of_the_regions_gets_the_full_agreement(
        self, fake: FakeGateway
    ) -> None:
        """Stripe's cross-border payouts (US, UK, EEA, Canada, Switzerland) need ``full``."""
        home, abroad = account(fake, payee="u2"), account(fake, payee="u3", country="FR")
        bodies = onboarded(fake, home, abroad)
        assert [b["tos_acceptance"]["service_agreement"] for b in bodies] == ["full", "full"]
        assert [b["default_currency"] for b in bodies] == ["usd", "eur"]

    @pytest.mark.parametrize("country", ["BR", "jp", "AU"])
    def test_an_account_outside_the_regions_is_refused_before_anything(
        self, fake: FakeGateway, country: str
    ) -> None:
        """As `StripeGateway` refuses it; the key stays free."""
        problem = fake.payee_country_problem(country)
        assert problem is not None
        assert country.upper() in problem
        with pytest.raises(RequestRefusedError, match="cross-border") as refused:
            account(fake, country=country)
        assert refused.value.code == "country_unsupported"
        assert fake.pending_events == ()
        assert account(fake, country="DE") == "acct_0001"

    def test_the_platform_country_decides_what_is_abroad(self, clock: ManualClock) -> None:
        fake = FakeGateway(clock=clock, platform_country="jp")
        assert fake.platform_country == "JP"
        assert fake.payee_country_problem("JP") is None
        # A platform outside the regions is left to Stripe.
        assert fake.payee_country_problem("US") is None
        assert agreements(fake, account(fake, country="JP")) == ["full"]

    def test_the_recipient_agreement_goes_to_accounts_abroad_only(self, clock: ManualClock) -> None:
        fake = FakeGateway(clock=clock, cross_border_agreement="recipient")
        assert fake.payee_country_problem("BR") is None
        home, abroad = account(fake, payee="u2"), account(fake, payee="u3", country="BR")
        assert agreements(fake, home, abroad) == ["full", "recipient"]

    def test_an_unknown_agreement_is_refused(self) -> None:
        with pytest.raises(ValueError, match="cross_border_agreement"):
            FakeGateway(cross_border_agreement="express")  # type: ignore[arg-type]

    def test_controls_refuse_unknown_accounts(self, fake: FakeGateway) -> None:
        for control in (fake.complete_onboarding, fake.restrict, fake.deauthorize, fake.balance):
            with pytest.raises(FakeControlError, match="no connected account"):
                control("acct_nope")


class TestTransfers:
    def test_transfer_moves_money_to_the_account(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        destination = ready_account(fake)
        fake.drop_events()
        request = transfer_request(payment, destination, 9_000)
        transfer = fake.create_transfer(request, idempotency_key="k")
        assert (transfer.amount, transfer.destination, transfer.source_transaction) == (
            usd(9_000),
            destination,
            payment.charge_ref,
        )
        assert transfer.transfer_group == ESCROW
        assert fake.balance(destination) == usd(9_000)
        assert fake.movements == [Movement("transfer", usd(9_000), "op_t1", "tr_0001")]
        assert types(fake) == ["transfer.created"]

    def test_transfer_to_an_account_not_onboarded(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        with pytest.raises(DestinationNotReadyError):
            fake.create_transfer(transfer_request(payment, account(fake)), idempotency_key="k")
        assert fake.movements == []

    def test_transfer_to_an_unknown_account(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError) as caught:
            fake.create_transfer(transfer_request(paid(fake), "acct_nope"), idempotency_key="k")
        assert not isinstance(caught.value, DestinationNotReadyError)

    def test_source_transaction_must_be_an_existing_charge(self, fake: FakeGateway) -> None:
        request = CreateTransfer(
            amount=usd(100),
            destination=ready_account(fake),
            source_transaction="ch_nope",
            transfer_group=ESCROW,
            metadata={},
        )
        with pytest.raises(GatewayRejectedError, match="ch_nope"):
            fake.create_transfer(request, idempotency_key="k")

    def test_source_transaction_currency_must_match(self, fake: FakeGateway) -> None:
        eur = fake.create_payment(payment_request(5_000, currency="eur"), idempotency_key="p")
        fake.pay(eur.ref)
        request = CreateTransfer(
            amount=usd(100),
            destination=ready_account(fake),
            source_transaction=fake.get_payment(eur.ref).charge_ref,
            transfer_group=ESCROW,
            metadata={},
        )
        with pytest.raises(GatewayRejectedError, match="currency"):
            fake.create_transfer(request, idempotency_key="k")

    def test_source_transaction_must_cover_the_transfers(self, fake: FakeGateway) -> None:
        payment = paid(fake, 10_000)
        destination = ready_account(fake)
        fake.create_transfer(transfer_request(payment, destination, 6_000), idempotency_key="a")
        with pytest.raises(GatewayRejectedError):
            fake.create_transfer(
                transfer_request(payment, destination, 4_001, op="b"), idempotency_key="b"
            )
        fake.create_transfer(
            transfer_request(payment, destination, 4_000, op="c"), idempotency_key="c"
        )

    def test_transfer_without_source_transaction(self, fake: FakeGateway) -> None:
        request = CreateTransfer(
            amount=usd(100),
            destination=ready_account(fake),
            source_transaction=None,
            transfer_group="g",
            metadata={},
        )
        assert fake.create_transfer(request, idempotency_key="k").source_transaction is None

    def test_find_transfer(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake)
        assert fake.find_transfer(transfer_group=ESCROW, operation_id="op_t1") == transfer
        assert fake.find_transfer(transfer_group=ESCROW, operation_id="op_other") is None
        assert fake.find_transfer(transfer_group="other", operation_id="op_t1") is None
        assert fake.get_transfer(transfer.ref) == transfer


class TestRefunds:
    def test_full_and_partial_refunds(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.drop_events()
        first = fake.create_refund(refund_request(payment.ref, 4_000, op="a"), idempotency_key="a")
        second = fake.create_refund(refund_request(payment.ref, 6_000, op="b"), idempotency_key="b")
        assert (first.status, second.status) == ("succeeded", "succeeded")
        assert first.payment_ref == payment.ref
        assert [(m.kind, m.amount, m.operation_id) for m in fake.movements] == [
            ("refund", usd(4_000), "a"),
            ("refund", usd(6_000), "b"),
        ]
        assert types(fake) == ["refund.created", "charge.refunded"] * 2
        charge = fake.pending_payloads[-1]["data"]["object"]
        assert (charge["amount_refunded"], charge["refunded"]) == (10_000, True)
        assert [r["id"] for r in charge["refunds"]["data"]] == [first.ref, second.ref]

    def test_refund_beyond_what_is_left_is_rejected(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.create_refund(refund_request(payment.ref, 9_000, op="a"), idempotency_key="a")
        with pytest.raises(GatewayRejectedError, match="greater than unrefunded"):
            fake.create_refund(refund_request(payment.ref, 1_001, op="b"), idempotency_key="b")
        assert len(fake.movements) == 1

    def test_refund_counts_the_received_amount(self, fake: FakeGateway) -> None:
        payment = created(fake)
        fake.pay(payment.ref, amount=usd(12_000))
        fake.create_refund(refund_request(payment.ref, 12_000), idempotency_key="a")

    def test_refund_of_an_unpaid_payment_is_rejected(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError):
            fake.create_refund(refund_request(created(fake).ref), idempotency_key="a")

    def test_refund_with_a_bad_reason_or_currency_is_rejected(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        request = refund_request(payment.ref)
        bad_reason = type(request)(request.amount, request.payment_ref, request.metadata, "oops")
        with pytest.raises(GatewayRejectedError, match="reason"):
            fake.create_refund(bad_reason, idempotency_key="a")
        euros = type(request)(Money(100, "eur"), request.payment_ref, request.metadata)
        with pytest.raises(GatewayRejectedError, match="usd"):
            fake.create_refund(euros, idempotency_key="b")

    def test_hold_refunds_then_settle(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.hold_refunds(True)
        refund = fake.create_refund(refund_request(payment.ref), idempotency_key="a")
        assert refund.status == "pending"
        assert fake.movements[0].status == "pending"
        fake.drop_events()
        fake.settle_refund(refund.ref)
        assert fake.get_refund(refund.ref).status == "succeeded"
        assert fake.movements[0].status == "succeeded"
        assert types(fake) == ["refund.updated", "charge.refund.updated"]
        fake.hold_refunds(False)
        assert (
            fake.create_refund(refund_request(payment.ref, op="b"), idempotency_key="b").status
            == "succeeded"
        )

    def test_a_pending_refund_can_fail_and_frees_the_amount(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.hold_refunds()
        refund = fake.create_refund(refund_request(payment.ref, 10_000), idempotency_key="a")
        fake.drop_events()
        fake.settle_refund(refund.ref, succeeded=False)
        failed = fake.get_refund(refund.ref)
        assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
        assert types(fake) == ["refund.failed", "charge.refund.updated"]
        assert fake.movements[0].status == "failed"
        fake.create_refund(refund_request(payment.ref, 10_000, op="b"), idempotency_key="b")

    def test_a_succeeded_refund_can_fail_late(self, fake: FakeGateway) -> None:
        refund = fake.create_refund(refund_request(paid(fake).ref), idempotency_key="a")
        fake.settle_refund(refund.ref, succeeded=False, failure_reason="lost_or_stolen_card")
        assert fake.get_refund(refund.ref).failure_reason == "lost_or_stolen_card"

    def test_settle_refund_refuses_misuse(self, fake: FakeGateway) -> None:
        refund = fake.create_refund(refund_request(paid(fake).ref), idempotency_key="a")
        with pytest.raises(FakeControlError, match="succeeded"):
            fake.settle_refund(refund.ref)
        fake.settle_refund(refund.ref, succeeded=False)
        with pytest.raises(FakeControlError, match="failed"):
            fake.settle_refund(refund.ref, succeeded=False)
        with pytest.raises(FakeControlError, match="no refund"):
            fake.settle_refund("re_nope")

    def test_find_refund(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        refund = fake.create_refund(refund_request(payment.ref), idempotency_key="a")
        assert fake.find_refund(payment_ref=payment.ref, operation_id="op_r1") == refund
        assert fake.find_refund(payment_ref=payment.ref, operation_id="op_x") is None
        assert fake.find_refund(payment_ref="pi_nope", operation_id="op_r1") is None

    def test_refund_outside(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.create_refund(refund_request(payment.ref, 1_000), idempotency_key="a")
        fake.drop_events()
        ref = fake.refund_outside(payment.ref)
        refund = fake.get_refund(ref)
        assert (refund.amount, refund.status, dict(refund.metadata)) == (
            usd(9_000),
            "succeeded",
            {},
        )
        assert fake.movements[-1] == Movement("refund", usd(9_000), None, ref)
        assert types(fake) == ["charge.refunded", "refund.created", "charge.refund.updated"]
        assert {e.object.ref for e in fake.pending_events} == {ref}

    def test_refund_outside_beyond_what_is_left(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        with pytest.raises(FakeControlError) as caught:
            fake.refund_outside(payment.ref, amount=usd(10_001))
        assert caught.value.code == "amount_too_large"
        with pytest.raises(FakeControlError) as unpaid:
            fake.refund_outside(created(fake, key="k2").ref)
        assert unpaid.value.code == "charge_not_refundable"

    def test_refund_outside_with_an_amount_ignores_the_hold(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.hold_refunds()
        ref = fake.refund_outside(payment.ref, amount=usd(2_500))
        assert fake.get_refund(ref).status == "succeeded"
        assert fake.get_refund(ref).amount == usd(2_500)


class TestReversals:
    def test_reversals_full_and_partial(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        destination = transfer.destination
        fake.drop_events()
        first = fake.create_reversal(
            reversal_request(transfer.ref, 4_000, op="a"), idempotency_key="a"
        )
        second = fake.create_reversal(
            reversal_request(transfer.ref, 5_000, op="b"), idempotency_key="b"
        )
        assert first.transfer_ref == transfer.ref
        assert fake.balance(destination) == usd(0)
        after = fake.get_transfer(transfer.ref)
        assert after.reversals == (first, second)
        assert types(fake) == ["transfer.reversed"] * 2
        body = fake.pending_payloads[-1]["data"]["object"]
        assert (body["amount_reversed"], body["reversed"]) == (9_000, True)
        assert [r["id"] for r in body["reversals"]["data"]] == [first.ref, second.ref]
        assert [m.kind for m in fake.movements] == ["transfer", "reversal", "reversal"]

    def test_reversal_beyond_the_transfer_is_rejected(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 1_000)
        with pytest.raises(GatewayRejectedError) as caught:
            fake.create_reversal(reversal_request(transfer.ref, 1_001), idempotency_key="a")
        assert not isinstance(caught.value, InsufficientPayeeBalanceError)

    def test_reversal_after_a_payout_lacks_balance(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        fake.payout(transfer.destination, usd(8_500))
        assert fake.balance(transfer.destination) == usd(500)
        with pytest.raises(InsufficientPayeeBalanceError):
            fake.create_reversal(reversal_request(transfer.ref, 501), idempotency_key="a")
        fake.create_reversal(reversal_request(transfer.ref, 500), idempotency_key="b")
        assert [m.kind for m in fake.movements] == ["transfer", "reversal"]

    def test_find_reversal(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake)
        reversal = fake.create_reversal(reversal_request(transfer.ref), idempotency_key="a")
        assert fake.find_reversal(transfer_ref=transfer.ref, operation_id="op_v1") == reversal
        assert fake.find_reversal(transfer_ref=transfer.ref, operation_id="x") is None
        assert fake.find_reversal(transfer_ref="tr_nope", operation_id="op_v1") is None

    def test_reverse_outside(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        fake.create_reversal(reversal_request(transfer.ref, 1_000), idempotency_key="a")
        fake.drop_events()
        ref = fake.reverse_outside(transfer.ref)
        assert fake.movements[-1] == Movement("reversal", usd(8_000), None, ref)
        assert types(fake) == ["transfer.reversed"]
        with pytest.raises(FakeControlError) as caught:
            fake.reverse_outside(transfer.ref, usd(1))
        assert caught.value.code == "amount_too_large"

    def test_reverse_outside_needs_the_payee_balance(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        fake.payout(transfer.destination, usd(9_000))
        with pytest.raises(FakeControlError) as caught:
            fake.reverse_outside(transfer.ref)
        assert caught.value.code == "balance_insufficient"
        with pytest.raises(FakeControlError, match="tr_nope"):
            fake.reverse_outside("tr_nope")


class TestPayouts:
    def test_payout_drains_the_balance_with_a_connect_event(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        fake.drop_events()
        ref = fake.payout(transfer.destination, usd(9_000))
        assert ref == "po_0001"
        assert fake.balance(transfer.destination) == usd(0)
        assert types(fake) == ["payout.paid"]
        event = fake.pending_events[0]
        assert event.account == transfer.destination
        assert event.object == PayoutSnapshot(ref, transfer.destination, usd(9_000), "paid")

    def test_a_failed_payout_keeps_the_money(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 9_000)
        fake.drop_events()
        fake.payout(transfer.destination, usd(9_000), failed=True)
        assert fake.balance(transfer.destination) == usd(9_000)
        event = fake.pending_events[0]
        assert event.type == "payout.failed"
        assert isinstance(event.object, PayoutSnapshot)
        assert event.object.failure_code == "account_closed"

    def test_payout_beyond_the_balance_is_refused(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 1_000)
        with pytest.raises(FakeControlError, match="balance"):
            fake.payout(transfer.destination, usd(1_001))
        with pytest.raises(ValueError, match="positive"):
            fake.payout(transfer.destination, usd(0))

    def test_balance_in_another_currency(self, fake: FakeGateway) -> None:
        _, transfer = funded_transfer(fake, 1_000)
        assert fake.balance(transfer.destination, "eur") == Money(0, "eur")


class TestDisputes:
    def test_open_dispute_withdraws_the_amount(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.drop_events()
        ref = fake.open_dispute(payment.ref)
        dispute = fake.get_dispute(ref)
        assert (dispute.status, dispute.reason, dispute.amount) == (
            "needs_response",
            "fraudulent",
            usd(10_000),
        )
        assert (dispute.payment_ref, dispute.charge_ref) == (payment.ref, payment.charge_ref)
        assert (dispute.funds_withdrawn, dispute.funds_reinstated) == (usd(10_000), usd(0))
        assert types(fake) == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
        (txn,) = fake.pending_payloads[1]["data"]["object"]["balance_transactions"]
        assert (txn["amount"], txn["fee"], txn["net"]) == (-10_000, 1_500, -11_500)

    def test_partial_dispute(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        ref = fake.open_dispute(payment.ref, amount=usd(3_000), reason="product_not_received")
        assert fake.get_dispute(ref).funds_withdrawn == usd(3_000)

    def test_inquiry_takes_no_money(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.drop_events()
        ref = fake.open_dispute(payment.ref, inquiry=True)
        assert fake.get_dispute(ref).funds_withdrawn == usd(0)
        assert fake.get_dispute(ref).status == "warning_needs_response"
        assert types(fake) == ["charge.dispute.created"]
        fake.close_dispute(payment.ref)
        assert fake.get_dispute(ref).status == "warning_closed"

    def test_won_dispute_reinstates_the_funds(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        ref = fake.open_dispute(payment.ref)
        fake.drop_events()
        fake.close_dispute(payment.ref, won=True)
        dispute = fake.get_dispute(ref)
        assert (dispute.status, dispute.funds_withdrawn, dispute.funds_reinstated) == (
            "won",
            usd(10_000),
            usd(10_000),
        )
        assert types(fake) == ["charge.dispute.funds_reinstated", "charge.dispute.closed"]

    def test_lost_dispute(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        ref = fake.open_dispute(payment.ref)
        fake.drop_events()
        fake.close_dispute(payment.ref)
        assert fake.get_dispute(ref).status == "lost"
        assert types(fake) == ["charge.dispute.closed"]
        with pytest.raises(FakeControlError, match="no open dispute"):
            fake.close_dispute(payment.ref)

    def test_close_a_named_dispute(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        first = fake.open_dispute(payment.ref, amount=usd(1_000))
        second = fake.open_dispute(payment.ref, amount=usd(2_000))
        fake.close_dispute(payment.ref, won=True, dispute_ref=first)
        assert (fake.get_dispute(first).status, fake.get_dispute(second).status) == (
            "won",
            "needs_response",
        )

    def test_a_chargeback_blocks_refunds_an_inquiry_does_not(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        inquiry = fake.open_dispute(payment.ref, inquiry=True)
        fake.create_refund(refund_request(payment.ref, 1_000, op="a"), idempotency_key="a")
        fake.close_dispute(payment.ref, dispute_ref=inquiry)
        fake.open_dispute(payment.ref)
        with pytest.raises(GatewayRejectedError) as caught:
            fake.create_refund(refund_request(payment.ref, 1_000, op="b"), idempotency_key="b")
        assert caught.value.code == "charge_disputed"

    def test_dispute_needs_a_paid_payment(self, fake: FakeGateway) -> None:
        with pytest.raises(FakeControlError, match="pay it first"):
            fake.open_dispute(created(fake).ref)

    def test_get_dispute_of_unknown_ref(self, fake: FakeGateway) -> None:
        with pytest.raises(GatewayRejectedError):
            fake.get_dispute("dp_nope")
        with pytest.raises(GatewayRejectedError):
            fake.get_refund("re_nope")
        with pytest.raises(GatewayRejectedError):
            fake.get_account("acct_nope")
        with pytest.raises(GatewayRejectedError):
            fake.get_transfer("tr_nope")

    def test_early_fraud_warning(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        fake.drop_events()
        ref = fake.early_fraud_warning(payment.ref)
        assert types(fake) == ["radar.early_fraud_warning.created"]
        assert fake.pending_events[0].object == FraudWarningSnapshot(
            ref=ref, charge_ref=str(payment.charge_ref), payment_ref=payment.ref
        )
        body = fake.pending_payloads[0]["data"]["object"]
        assert (body["object"], body["charge"], body["actionable"]) == (
            "radar.early_fraud_warning",
            payment.charge_ref,
            True,
        )


def onboarded(fake: FakeGateway, *refs: str) -> list[dict[str, Any]]:
    """The accounts' JSON in the ``account.updated`` events their onboarding queues."""
    fake.drop_events()
    for ref in refs:
        fake.complete_onboarding(ref)
    return [p["data"]["object"] for p in fake.pending_payloads if p["type"] == "account.updated"]


def agreements(fake: FakeGateway, *refs: str) -> list[str]:
    """The service agreement each account's JSON says."""
    return [body["tos_acceptance"]["service_agreement"] for body in onboarded(fake, *refs)]
