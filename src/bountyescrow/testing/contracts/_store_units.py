"""Store contract: units of work commit all or nothing and see their own writes."""

from __future__ import annotations

import pytest

from bountyescrow.errors import StorageError
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import (
    make_audit,
    make_dispute,
    make_entry,
    make_escrow,
    make_event,
    make_idempotency,
    make_operation,
    make_payee,
    make_webhook_event,
    usd,
)


class UnitOfWorkContract(StoreContractBase):
    """What every `UnitOfWork` does: roll back unless committed, see its own writes."""

    def test_uncommitted_changes_are_rolled_back(self, store: EscrowStore) -> None:
        """A unit of work left without commit() leaves no trace in any repository."""
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_2"))
            uow.escrows.save(make_escrow(held=usd(5_000)))
            uow.operations.add(make_operation())
            uow.disputes.save(make_dispute())
            uow.payees.save(make_payee())
            uow.ledger.add(make_entry())
            uow.audit.add(make_audit())
            uow.events.add(make_event())
            uow.webhook_events.save(make_webhook_event())
            uow.idempotency.save(make_idempotency())
        with self.read(store) as uow:
            assert uow.escrows.get("esc_2") is None
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.get("op_1") is None
            assert uow.disputes.get("dp_1") is None
            assert uow.payees.get("hunter_1") is None
            assert not uow.ledger.exists("release", "tr_1")
            assert uow.audit.for_escrow("esc_1") == []
            assert uow.events.after(0, limit=10) == []
            assert uow.webhook_events.get("evt_1") is None
            assert uow.idempotency.get("poster_1", "bounty:b1") is None

    def test_an_exception_rolls_back_and_propagates(self, store: EscrowStore) -> None:
        """An exception inside the with block undoes the unit of work and is not swallowed."""

        def fail_halfway() -> None:
            with store.unit_of_work() as uow:
                uow.escrows.add(make_escrow())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail_halfway()
        with self.read(store) as uow:
            assert uow.escrows.get("esc_1") is None

    def test_changes_are_visible_inside_the_unit_of_work(self, store: EscrowStore) -> None:
        """Reads see the unit of work's own writes before it commits."""
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.for_escrow("esc_1") == [make_operation()]

    def test_committed_changes_are_seen_by_later_units_of_work(self, store: EscrowStore) -> None:
        """After commit() the changes are durable and visible to every later unit of work."""
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            uow.events.add(make_event())
            uow.commit()
        with self.read(store) as uow:
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.get("op_1") == make_operation()
            assert [e.type for e in uow.events.after(0, limit=10)] == ["operation.created"]

    def test_a_refused_write_leaves_the_unit_of_work_usable(self, store: EscrowStore) -> None:
        """After a uniqueness refusal the rest of the unit of work still commits."""
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.ledger.add(make_entry())
            uow.commit()
        with store.unit_of_work() as uow:
            with pytest.raises(StorageError):
                uow.ledger.add(make_entry())
            with pytest.raises(StorageError):
                uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.get("op_1") == make_operation()
            assert len(uow.ledger.for_escrow("esc_1")) == 1
