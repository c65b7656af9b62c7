"""The `EscrowStore` contract: what every store must do, as pytest tests.

The reference behaviour is `bountyescrow.testing.InMemoryStore`. To check your own store,
subclass `StoreContract` in a test module and override the ``store`` fixture::

    import pytest
    from bountyescrow.testing.contracts.store import StoreContract


    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)  # empty, ready to use
            yield store
            store.close()

Each test gets a fresh, empty store. Records always refer to an escrow that exists (SQL stores
enforce that with foreign keys). Times are UTC-aware; amounts use `usd` and `jpy` (a zero-decimal
currency) so minor units are not confused with major ones.

The suite is composed from one contract class per repository (``_store_escrows.py``,
``_store_operations.py``...), with the record builders in ``_store_builders.py``; this module
is the public face and re-exports the builders that tests of a store may use.
"""

from __future__ import annotations

from bountyescrow.testing.contracts._store_audit import AuditContract
from bountyescrow.testing.contracts._store_builders import (
    MINUTE,
    T0,
    due_operation,
    gateway_requests,
    jpy,
    make_audit,
    make_dispute,
    make_entry,
    make_escrow,
    make_event,
    make_idempotency,
    make_operation,
    make_payee,
    make_webhook_event,
    new_escrow,
    usd,
)
from bountyescrow.testing.contracts._store_disputes import DisputeContract
from bountyescrow.testing.contracts._store_escrows import EscrowContract
from bountyescrow.testing.contracts._store_events import EventContract
from bountyescrow.testing.contracts._store_idempotency import IdempotencyContract
from bountyescrow.testing.contracts._store_ledger import LedgerContract
from bountyescrow.testing.contracts._store_operations import OperationContract
from bountyescrow.testing.contracts._store_payees import PayeeContract
from bountyescrow.testing.contracts._store_units import UnitOfWorkContract
from bountyescrow.testing.contracts._store_webhook_events import WebhookEventContract

__all__ = [
    "MINUTE",
    "T0",
    "StoreContract",
    "due_operation",
    "gateway_requests",
    "jpy",
    "make_audit",
    "make_dispute",
    "make_entry",
    "make_escrow",
    "make_event",
    "make_idempotency",
    "make_operation",
    "make_payee",
    "make_webhook_event",
    "new_escrow",
    "usd",
]


class StoreContract(
    UnitOfWorkContract,
    EscrowContract,
    OperationContract,
    DisputeContract,
    PayeeContract,
    LedgerContract,
    AuditContract,
    EventContract,
    WebhookEventContract,
    IdempotencyContract,
):
    """Every `EscrowStore` passes these tests. Override the ``store`` fixture to opt in."""
