"""`FakeGateway` idempotency keys and injected failures, as Stripe treats them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import get_args

import pytest

from bountyescrow.domain.gateway_objects import CancelPayment
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    IdempotencyKeyInUseError,
    IdempotencyMismatchError,
    InsufficientPayeeBalanceError,
    PaymentDeclinedError,
    PlatformBalanceInsufficientError,
)
from bountyescrow.testing import FakeGateway, ManualClock
from bountyescrow.testing._fake_gateway import _MODES_BY_KIND, FailureKind, FailureMode

from .support import (
    created,
    funded_transfer,
    paid,
    payment_request,
    ready_account,
    refund_request,
    reversal_request,
    transfer_request,
    usd,
)

Call = Callable[[str], object]


def make_call(fake: FakeGateway, kind: str) -> Call:
    """Set up what `kind` needs and return a call of that kind taking an idempotency key."""
    if kind == "payment":
        return lambda key: fake.create_payment(payment_request(), idempotency_key=key)
    if kind == "cancel":
        ref = created(fake).ref
        return lambda key: fake.cancel_payment(CancelPayment(ref), idempotency_key=key)
    if kind == "account":
        return lambda key: fake.create_account(
            payee_id="u9", email=None, country="US", idempotency_key=key
        )
    if kind == "transfer":
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake), 1_000)
        return lambda key: fake.create_transfer(request, idempotency_key=key)
    if kind == "refund":
        ref = paid(fake).ref
        return lambda key: fake.create_refund(refund_request(ref), idempotency_key=key)
    assert kind == "reversal"
    _, transfer = funded_transfer(fake)
    return lambda key: fake.create_reversal(reversal_request(transfer.ref), idempotency_key=key)


KINDS = sorted(_MODES_BY_KIND)


class TestReplay:
    def test_same_key_same_request_replays_the_first_answer(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake))
        first = fake.create_transfer(request, idempotency_key="k")
        again = fake.create_transfer(request, idempotency_key="k")
        assert again == first
        assert len(fake.movements) == 1

    def test_replay_returns_the_answer_as_first_given(self, fake: FakeGateway) -> None:
        """Like Stripe, a replay is the stored response, not the object's current state."""
        payment = created(fake, key="k")
        fake.pay(payment.ref)
        assert created(fake, key="k").status == "requires_payment_method"
        assert fake.get_payment(payment.ref).status == "succeeded"

    def test_same_key_other_request_raises_mismatch(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        destination = ready_account(fake)
        fake.create_transfer(transfer_request(payment, destination, 1_000), idempotency_key="k")
        with pytest.raises(IdempotencyMismatchError) as caught:
            fake.create_transfer(transfer_request(payment, destination, 1_001), idempotency_key="k")
        assert caught.value.outcome_unknown is True
        assert len(fake.movements) == 1

    def test_same_key_on_another_endpoint_raises_mismatch(self, fake: FakeGateway) -> None:
        payment = paid(fake, key="shared")
        with pytest.raises(IdempotencyMismatchError):
            fake.create_refund(refund_request(payment.ref), idempotency_key="shared")
        assert fake.movements == []

    def test_keys_are_forgotten_24_hours_after_first_use(
        self, fake: FakeGateway, clock: ManualClock
    ) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake), 1_000)
        first = fake.create_transfer(request, idempotency_key="k")
        clock.advance(timedelta(hours=23, minutes=59))
        assert fake.create_transfer(request, idempotency_key="k").ref == first.ref
        clock.advance(timedelta(minutes=1))
        second = fake.create_transfer(request, idempotency_key="k")
        assert second.ref != first.ref
        assert [m.ref for m in fake.movements] == [first.ref, second.ref]

    def test_a_forgotten_key_can_carry_another_request(
        self, fake: FakeGateway, clock: ManualClock
    ) -> None:
        fake.create_payment(payment_request(1_000), idempotency_key="k")
        clock.advance(timedelta(hours=24))
        assert fake.create_payment(payment_request(2_000), idempotency_key="k").amount == usd(2_000)


class TestFailures:
    def test_unavailable_has_no_effect_and_stores_nothing(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake))
        fake.fail_next("transfer", error="unavailable")
        with pytest.raises(GatewayUnavailableError) as caught:
            fake.create_transfer(request, idempotency_key="k")
        assert caught.value.replayed is False
        assert caught.value.retryable is True
        assert fake.movements == []
        assert fake.create_transfer(request, idempotency_key="k").ref == "tr_0001"
        assert len(fake.movements) == 1

    def test_server_error_is_stored_and_replayed(
        self, fake: FakeGateway, clock: ManualClock
    ) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake))
        fake.fail_next("transfer", error="server_error")
        with pytest.raises(GatewayUnavailableError) as first:
            fake.create_transfer(request, idempotency_key="k")
        with pytest.raises(GatewayUnavailableError) as again:
            fake.create_transfer(request, idempotency_key="k")
        assert (first.value.replayed, again.value.replayed) == (False, True)
        assert first.value.code == again.value.code == "api_error"
        assert fake.movements == []
        assert (
            fake.find_transfer(transfer_group=request.transfer_group, operation_id="op_t1") is None
        )
        clock.advance(timedelta(hours=24))
        assert fake.create_transfer(request, idempotency_key="k").ref == "tr_0001"

    def test_server_error_leaves_a_new_key_free(self, fake: FakeGateway) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake))
        fake.fail_next("transfer", error="server_error")
        with pytest.raises(GatewayUnavailableError):
            fake.create_transfer(request, idempotency_key="k1")
        assert fake.create_transfer(request, idempotency_key="k2").ref == "tr_0001"

    def test_timeout_after_effect_moves_money_then_loses_the_answer(
        self, fake: FakeGateway
    ) -> None:
        payment = paid(fake)
        request = transfer_request(payment, ready_account(fake))
        fake.drop_events()
        fake.fail_next("transfer", error="timeout_after_effect")
        with pytest.raises(GatewayUnavailableError) as caught:
            fake.create_transfer(request, idempotency_key="k")
        assert caught.value.outcome_unknown is True
        assert [(m.kind, m.ref, m.operation_id) for m in fake.movements] == [
            ("transfer", "tr_0001", "op_t1")
        ]
        assert [e.type for e in fake.pending_events] == ["transfer.created"]
        found = fake.find_transfer(transfer_group=request.transfer_group, operation_id="op_t1")
        assert found is not None
        assert fake.create_transfer(request, idempotency_key="k").ref == found.ref
        assert len(fake.movements) == 1

    def test_declined_payment_raises_payment_declined_and_is_stored(
        self, fake: FakeGateway
    ) -> None:
        fake.fail_next("payment", error="declined")
        with pytest.raises(PaymentDeclinedError) as first:
            fake.create_payment(payment_request(), idempotency_key="k")
        with pytest.raises(PaymentDeclinedError) as again:
            fake.create_payment(payment_request(), idempotency_key="k")
        assert (first.value.replayed, again.value.replayed) == (False, True)

    def test_declined_transfer_is_a_rejection_not_a_card_decline(self, fake: FakeGateway) -> None:
        call = make_call(fake, "transfer")
        fake.fail_next("transfer", error="declined")
        with pytest.raises(GatewayRejectedError) as caught:
            call("k")
        assert not isinstance(caught.value, PaymentDeclinedError)

    def test_invalid_is_rejected_and_not_stored(self, fake: FakeGateway) -> None:
        call = make_call(fake, "refund")
        fake.fail_next("refund", error="invalid")
        with pytest.raises(GatewayRejectedError) as caught:
            call("k")
        assert caught.value.outcome_unknown is False
        assert fake.movements == []
        call("k")
        assert len(fake.movements) == 1

    def test_destination_not_ready_on_demand(self, fake: FakeGateway) -> None:
        call = make_call(fake, "transfer")
        fake.fail_next("transfer", error="destination_not_ready")
        with pytest.raises(DestinationNotReadyError):
            call("k")
        assert fake.movements == []
        call("k")  # not stored: the same key works once the payee can receive
        assert len(fake.movements) == 1

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            ("transfer", PlatformBalanceInsufficientError),
            ("refund", GatewayRejectedError),
            ("reversal", InsufficientPayeeBalanceError),
        ],
    )
    def test_insufficient_balance(
        self, fake: FakeGateway, kind: FailureKind, expected: type[GatewayError]
    ) -> None:
        call = make_call(fake, kind)
        fake.fail_next(kind, error="insufficient_balance")
        with pytest.raises(expected) as caught:
            call("k")
        assert caught.value.code == "balance_insufficient"

    def test_a_platform_balance_short_of_a_transfer_moves_nothing_and_keeps_the_key_free(
        self, fake: FakeGateway
    ) -> None:
        """Stripe's ``balance_insufficient``: definitive, and the same key works once topped up."""
        call = make_call(fake, "transfer")
        fake.fail_next("transfer", error="balance_insufficient")
        with pytest.raises(PlatformBalanceInsufficientError) as caught:
            call("k")
        assert caught.value.code == "balance_insufficient"
        assert not caught.value.outcome_unknown
        assert fake.movements == []
        call("k")
        assert len(fake.movements) == 1

    @pytest.mark.parametrize("kind", ["payment", "cancel", "refund", "reversal", "account"])
    def test_balance_insufficient_applies_to_transfers_only(
        self, fake: FakeGateway, kind: FailureKind
    ) -> None:
        with pytest.raises(ValueError, match="does not apply"):
            fake.fail_next(kind, error="balance_insufficient")

    @pytest.mark.parametrize("kind", KINDS)
    def test_key_in_use_on_demand_is_unknown_and_stores_nothing(
        self, fake: FakeGateway, kind: FailureKind
    ) -> None:
        call = make_call(fake, kind)
        moved = len(fake.movements)
        fake.fail_next(kind, error="key_in_use")
        with pytest.raises(IdempotencyKeyInUseError) as caught:
            call("k")
        assert caught.value.outcome_unknown
        assert caught.value.code == "idempotency_key_in_use"
        assert len(fake.movements) == moved
        first = call("k")
        assert call("k") == first

    def test_key_in_use_on_demand_hits_even_a_replay(self, fake: FakeGateway) -> None:
        call = make_call(fake, "transfer")
        first = call("k")
        fake.fail_next("transfer", error="key_in_use")
        with pytest.raises(IdempotencyKeyInUseError):
            call("k")
        assert call("k") == first
        assert len(fake.movements) == 1

    def test_idempotency_mismatch_on_demand_hits_even_a_replay(self, fake: FakeGateway) -> None:
        call = make_call(fake, "payment")
        first = call("k")
        fake.fail_next("payment", error="idempotency_mismatch")
        with pytest.raises(IdempotencyMismatchError):
            call("k")
        assert call("k") == first

    def test_unavailable_hits_even_a_replay(self, fake: FakeGateway) -> None:
        call = make_call(fake, "payment")
        call("k")
        fake.fail_next("payment", error="unavailable")
        with pytest.raises(GatewayUnavailableError):
            call("k")

    def test_execution_failures_wait_for_a_call_that_executes(self, fake: FakeGateway) -> None:
        """A replay of a stored answer does not use up a queued `declined`."""
        call = make_call(fake, "payment")
        call("k1")
        fake.fail_next("payment", error="declined")
        call("k1")
        with pytest.raises(PaymentDeclinedError):
            call("k2")

    def test_pending_refund_on_demand(self, fake: FakeGateway) -> None:
        ref = paid(fake).ref
        fake.fail_next("refund", error="pending")
        first = fake.create_refund(refund_request(ref, op="a"), idempotency_key="a")
        second = fake.create_refund(refund_request(ref, op="b"), idempotency_key="b")
        assert (first.status, second.status) == ("pending", "succeeded")

    def test_times_fails_several_calls(self, fake: FakeGateway) -> None:
        call = make_call(fake, "account")
        fake.fail_next("account", error="unavailable", times=2)
        for _ in range(2):
            with pytest.raises(GatewayUnavailableError):
                call("k")
        assert call("k") == fake.get_account("acct_0001")

    def test_failures_are_per_kind(self, fake: FakeGateway) -> None:
        fake.fail_next("refund", error="unavailable")
        make_call(fake, "transfer")("k")
        assert len(fake.movements) == 1

    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize(
        ("error", "raised", "stored"),
        [
            ("unavailable", GatewayUnavailableError, False),
            ("server_error", GatewayUnavailableError, True),
            ("declined", GatewayRejectedError, True),
            ("invalid", GatewayRejectedError, False),
            ("idempotency_mismatch", IdempotencyMismatchError, False),
        ],
    )
    def test_every_kind_fails_as_asked(
        self,
        fake: FakeGateway,
        kind: str,
        error: FailureMode,
        raised: type[GatewayError],
        stored: bool,
    ) -> None:
        call = make_call(fake, kind)
        fake.fail_next(kind, error=error)  # type: ignore[arg-type]
        with pytest.raises(raised):
            call("k")
        if stored:
            with pytest.raises(raised) as replay:
                call("k")
            assert replay.value.replayed is True
        else:
            call("k")  # nothing stored: the key is still free

    @pytest.mark.parametrize("kind", KINDS)
    def test_every_kind_takes_effect_before_a_timeout(self, fake: FakeGateway, kind: str) -> None:
        call = make_call(fake, kind)
        fake.fail_next(kind, error="timeout_after_effect")  # type: ignore[arg-type]
        with pytest.raises(GatewayUnavailableError):
            call("k")
        first = call("k")
        assert call("k") == first

    def test_unknown_kind_or_error_is_refused(self, fake: FakeGateway) -> None:
        with pytest.raises(ValueError, match="unknown kind"):
            fake.fail_next("payout", error="unavailable")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="does not apply"):
            fake.fail_next("transfer", error="pending")
        with pytest.raises(ValueError, match="does not apply"):
            fake.fail_next("payment", error="destination_not_ready")
        with pytest.raises(ValueError, match="times"):
            fake.fail_next("payment", times=0)

    def test_the_literal_types_match_the_allowed_table(self) -> None:
        assert set(get_args(FailureKind)) == set(_MODES_BY_KIND)
        assert set(get_args(FailureMode)) == set().union(*_MODES_BY_KIND.values())
