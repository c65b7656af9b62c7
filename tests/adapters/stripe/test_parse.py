"""Stripe JSON -> snapshots: the pure parsers the gateway (and webhook handling) rely on."""

from __future__ import annotations

from typing import Any

import pytest

from bountyescrow.adapters.stripe import _parse
from bountyescrow.domain.gateway_objects import (
    FraudWarningSnapshot,
    PayoutSnapshot,
    ReversalSnapshot,
)
from bountyescrow.domain.money import Money

from . import builders


def usd(amount: int) -> Money:
    return Money(amount, "usd")


class TestPayment:
    def test_an_expanded_latest_charge_gives_its_id(self) -> None:
        data = builders.payment_intent(latest_charge=builders.charge(id="ch_7"))

        assert _parse.parse_payment(data).charge_ref == "ch_7"

    def test_livemode_and_missing_optional_fields(self) -> None:
        data = builders.payment_intent(livemode=True)
        data["metadata"] = None
        data["client_secret"] = None

        snapshot = _parse.parse_payment(data)

        assert snapshot.livemode is True
        assert snapshot.metadata == {}
        assert snapshot.client_secret is None
        assert snapshot.last_error is None

    def test_a_currency_in_upper_case_is_lowered(self) -> None:
        data = builders.payment_intent(amount=500)
        data["currency"] = "USD"

        assert _parse.parse_payment(data).amount == usd(500)


class TestTransfer:
    def test_embedded_reversals_become_reversal_snapshots(self) -> None:
        reversal = builders.transfer_reversal(id="trr_1", amount=700, transfer="tr_1")
        data = builders.transfer(id="tr_1", reversals=[reversal], destination="acct_9")

        snapshot = _parse.parse_transfer(data)

        assert snapshot.destination == "acct_9"
        assert snapshot.reversals == (
            ReversalSnapshot(ref="trr_1", amount=usd(700), transfer_ref="tr_1", metadata={}),
        )
        assert not _parse.reversals_incomplete(data)

    def test_an_expanded_destination_and_source_transaction_give_their_ids(self) -> None:
        data = builders.transfer()
        data["destination"] = builders.account(id="acct_5")
        data["source_transaction"] = builders.charge(id="ch_5")

        snapshot = _parse.parse_transfer(data)

        assert (snapshot.destination, snapshot.source_transaction) == ("acct_5", "ch_5")

    @pytest.mark.parametrize(
        ("change", "incomplete"),
        [
            ({"reversals_have_more": True}, True),
            ({}, False),
        ],
    )
    def test_reversals_are_incomplete_when_stripe_says_there_are_more(
        self, change: dict[str, Any], incomplete: bool
    ) -> None:
        assert _parse.reversals_incomplete(builders.transfer(**change)) is incomplete

    def test_reversals_not_embedded_are_incomplete_only_if_something_was_reversed(self) -> None:
        data = builders.transfer(amount_reversed=0)
        del data["reversals"]
        assert not _parse.reversals_incomplete(data)

        data["amount_reversed"] = 100
        assert _parse.reversals_incomplete(data)

    def test_a_transfer_without_destination_is_malformed(self) -> None:
        data = builders.transfer()
        data["destination"] = None

        with pytest.raises(KeyError):
            _parse.parse_transfer(data)


class TestDispute:
    def test_an_inquiry_has_moved_no_money(self) -> None:
        data = builders.dispute(status="warning_needs_response")

        snapshot = _parse.parse_dispute(data)

        assert (snapshot.funds_withdrawn, snapshot.funds_reinstated) == (usd(0), usd(0))

    def test_the_dispute_fee_is_not_counted(self) -> None:
        data = builders.dispute(
            amount=10_000,
            balance_transactions=[builders.balance_transaction(amount=-10_000, fee=1_500)],
        )

        assert _parse.parse_dispute(data).funds_withdrawn == usd(10_000)

    def test_other_balance_transactions_are_ignored(self) -> None:
        data = builders.dispute(
            amount=10_000,
            balance_transactions=[
                builders.balance_transaction(amount=-10_000),
                builders.balance_transaction(amount=-1_500, reporting_category="fee"),
            ],
        )

        assert _parse.parse_dispute(data).funds_withdrawn == usd(10_000)

    def test_a_balance_transaction_in_another_currency_counts_as_the_disputed_amount(self) -> None:
        data = builders.dispute(
            amount=10_000,
            currency="eur",
            balance_transactions=[
                builders.balance_transaction(amount=-10_850, currency="usd"),
                builders.balance_transaction(
                    amount=10_790, currency="usd", reporting_category="dispute_reversal"
                ),
            ],
        )

        snapshot = _parse.parse_dispute(data)

        assert snapshot.funds_withdrawn == Money(10_000, "eur")
        assert snapshot.funds_reinstated == Money(10_000, "eur")

    def test_balance_transactions_given_as_ids_are_malformed(self) -> None:
        data = builders.dispute()
        data["balance_transactions"] = ["txn_1"]

        with pytest.raises(TypeError):
            _parse.parse_dispute(data)


class TestAccount:
    def test_an_account_without_capabilities_is_not_ready(self) -> None:
        assert not _parse.parse_account(builders.account(transfers=None)).ready

    def test_metadata_is_kept(self) -> None:
        data = builders.account(transfers="active", metadata={"bountyescrow_payee_id": "u2"})

        snapshot = _parse.parse_account(data)

        assert snapshot.ready
        assert snapshot.metadata == {"bountyescrow_payee_id": "u2"}


class TestParseObject:
    def test_picks_the_parser_by_object_kind(self) -> None:
        assert _parse.parse_object(builders.refund(id="re_1")).ref == "re_1"
        assert _parse.parse_object(builders.dispute(id="dp_1")).ref == "dp_1"

    def test_an_early_fraud_warning(self) -> None:
        data = builders.early_fraud_warning(charge="ch_1", payment_intent="pi_1")

        snapshot = _parse.parse_object(data)

        assert snapshot == FraudWarningSnapshot(
            ref=data["id"], charge_ref="ch_1", payment_ref="pi_1", actionable=True
        )

    def test_a_payout_needs_the_events_account(self) -> None:
        data = builders.payout(amount=900, status="failed", failure_code="account_closed")

        with pytest.raises(ValueError, match="connected account"):
            _parse.parse_object(data)
        assert _parse.parse_object(data, account="acct_1") == PayoutSnapshot(
            ref=data["id"],
            account_ref="acct_1",
            amount=usd(900),
            status="failed",
            failure_code="account_closed",
        )

    def test_an_object_the_library_does_not_follow_is_refused(self) -> None:
        with pytest.raises(ValueError, match="'plan'"):
            _parse.parse_object({"object": "plan", "id": "price_1"})


class TestMalformed:
    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("amount", "25000", TypeError),
            ("amount", True, TypeError),
            ("id", "", TypeError),
            ("currency", None, TypeError),
            ("currency", "xyz", ValueError),
            ("metadata", ["a"], TypeError),
            ("latest_charge", 7, TypeError),
        ],
    )
    def test_a_field_of_the_wrong_type_raises(
        self, field: str, value: object, error: type[Exception]
    ) -> None:
        data = builders.payment_intent()
        data[field] = value

        with pytest.raises(error):
            _parse.parse_payment(data)

    def test_a_missing_field_raises(self) -> None:
        data = builders.payment_intent()
        del data["status"]

        with pytest.raises(KeyError):
            _parse.parse_payment(data)

    @pytest.mark.parametrize(
        ("parse", "data", "error"),
        [
            (_parse.parse_reversal, {**builders.transfer_reversal(), "transfer": None}, KeyError),
            (
                _parse.parse_account,
                {**builders.account(), "capabilities": ["transfers"]},
                TypeError,
            ),
            (
                _parse.parse_fraud_warning,
                {**builders.early_fraud_warning(), "charge": None},
                KeyError,
            ),
            (_parse.parse_refund, {**builders.refund(), "amount": None}, TypeError),
        ],
        ids=[
            "reversal_without_transfer",
            "capabilities_list",
            "warning_without_charge",
            "no_amount",
        ],
    )
    def test_an_object_missing_what_its_snapshot_needs_raises(
        self, parse: Any, data: dict[str, Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            parse(data)
