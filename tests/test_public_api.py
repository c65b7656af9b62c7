"""The public names: `bountyescrow.__all__` and the binding names of DESIGN §4 and §14.

A name added to or removed from `__all__` must be added to or removed from `EXPECTED` here too,
on purpose: removing a public name breaks users.
"""

from __future__ import annotations

import importlib

import pytest

import bountyescrow

EXPECTED = [
    "Actor",
    "AuditRecord",
    "Decision",
    "Discrepancy",
    "DiscrepancyKind",
    "Dispute",
    "DomainEvent",
    "Escrow",
    "EscrowService",
    "EscrowSettings",
    "EscrowStatus",
    "FeeSchedule",
    "FeeSplit",
    "GatewayEvent",
    "JournalEntry",
    "Money",
    "Operation",
    "OperationKind",
    "OperationStatus",
    "Payee",
    "Posting",
    "ReconciliationReport",
    "RecoveryReport",
    "RoleBasedPolicy",
    "WebhookStatus",
    "__version__",
    "errors",
]

#: The error classes DESIGN §14 names, by category.
DESIGNED_ERRORS = [
    "BountyEscrowError",
    "EscrowNotFoundError",
    "EscrowExistsError",
    "InvalidTransitionError",
    "InsufficientFundsError",
    "EscrowFrozenError",
    "PermissionDeniedError",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "ReversalFailedError",
    "GatewayError",
    "StorageError",
    "WebhookError",
]


class TestAll:
    def test_lists_exactly_the_expected_names(self) -> None:
        assert sorted(bountyescrow.__all__) == sorted(EXPECTED)

    def test_has_no_duplicates(self) -> None:
        assert len(bountyescrow.__all__) == len(set(bountyescrow.__all__))

    @pytest.mark.parametrize("name", EXPECTED)
    def test_every_name_is_importable(self, name: str) -> None:
        module = importlib.import_module("bountyescrow")
        assert getattr(module, name) is not None

    def test_star_import_gives_the_listed_names(self) -> None:
        namespace: dict[str, object] = {}
        exec("from bountyescrow import *", namespace)
        assert {name for name in namespace if name != "__builtins__"} == set(EXPECTED)

    def test_version_is_a_string(self) -> None:
        assert isinstance(bountyescrow.__version__, str)


class TestBindingNames:
    def test_design_section_4_imports(self) -> None:
        from bountyescrow import (
            Actor,
            Escrow,
            EscrowService,
            EscrowStatus,
            FeeSchedule,
            GatewayEvent,
            Money,
            Operation,
            OperationStatus,
            RoleBasedPolicy,
        )

        assert EscrowStatus("awaiting_funding") is EscrowStatus.AWAITING_FUNDING
        assert {status.value for status in OperationStatus} == {
            "pending",
            "awaiting_payee",
            "succeeded",
            "failed",
            "cancelled",
        }
        assert Money(25_000, "usd").format() == "$250.00"
        assert FeeSchedule(1000).bps == 1000
        assert Actor("m1", roles={"admin"}).has("admin")
        for cls in (Escrow, EscrowService, Operation, RoleBasedPolicy, GatewayEvent):
            assert isinstance(cls, type)

    def test_escrow_statuses_are_the_designed_ones(self) -> None:
        from bountyescrow import EscrowStatus

        assert [status.value for status in EscrowStatus] == [
            "awaiting_funding",
            "funded",
            "partially_settled",
            "released",
            "refunded",
            "settled",
            "disputed",
            "cancelled",
        ]

    @pytest.mark.parametrize("name", DESIGNED_ERRORS)
    def test_errors_module_has_the_designed_error(self, name: str) -> None:
        from bountyescrow import errors

        error = getattr(errors, name)
        assert issubclass(error, errors.BountyEscrowError)
        assert name in errors.__all__

    def test_every_listed_error_derives_from_the_root(self) -> None:
        from bountyescrow import errors

        for name in errors.__all__:
            assert issubclass(getattr(errors, name), errors.BountyEscrowError), name

    def test_gateway_errors_say_whether_a_retry_may_succeed(self) -> None:
        from bountyescrow import errors

        assert errors.GatewayUnavailableError.retryable is True
        assert errors.GatewayRejectedError.retryable is False
        assert issubclass(errors.GatewayUnavailableError, errors.GatewayError)
        assert issubclass(errors.GatewayRejectedError, errors.GatewayError)
