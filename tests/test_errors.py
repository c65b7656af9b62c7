"""The error hierarchy: one root, retryable flags, and errors that survive pickling."""

from __future__ import annotations

import pickle

import pytest

from bountyescrow import Money, errors

SAMPLES: list[errors.BountyEscrowError] = [
    errors.ValidationError("bad amount"),
    errors.EscrowNotFoundError("no escrow esc_1"),
    errors.EscrowExistsError("escrow esc_1 exists", existing_id="esc_1"),
    errors.InvalidTransitionError("cannot cancel", current="funded", attempted="cancel"),
    errors.InsufficientFundsError(
        "too much", available=Money(100, "usd"), requested=Money(500, "usd")
    ),
    errors.ReversalFailedError("no balance", shortfall=Money(9, "usd"), operation_id="op_1"),
    errors.GatewayUnavailableError("timeout", code="timeout", request_id="req_1", replayed=True),
    errors.DestinationNotReadyError("not ready", code="insufficient_capabilities_for_transfer"),
    errors.StorageError("locked", transient=True),
]


class TestHierarchy:
    def test_every_public_error_derives_from_the_root(self) -> None:
        for name in errors.__all__:
            assert issubclass(getattr(errors, name), errors.BountyEscrowError)

    def test_unknown_outcomes_are_retryable_and_definitive_refusals_are_not(self) -> None:
        assert errors.GatewayUnavailableError.outcome_unknown
        assert errors.GatewayUnavailableError.retryable
        assert not errors.GatewayRejectedError.outcome_unknown
        assert not errors.GatewayRejectedError.retryable
        assert errors.IdempotencyMismatchError.outcome_unknown


class TestPickling:
    """Hosts run the service in worker processes (Celery, process pools)."""

    @pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
    def test_an_error_survives_a_round_trip_with_its_details(
        self, error: errors.BountyEscrowError
    ) -> None:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.details == error.details
        assert vars(copy) == vars(error)
