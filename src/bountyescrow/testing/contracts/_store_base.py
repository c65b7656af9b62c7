"""The base of every store contract class: the ``store`` fixture and the `seed`/`read` helpers."""

from __future__ import annotations

import pytest

from bountyescrow.domain.escrow import Escrow
from bountyescrow.ports.store import EscrowStore, UnitOfWork
from bountyescrow.testing.contracts._store_builders import make_escrow


class StoreContractBase:
    """The fixture and helpers the per-repository contracts share; not a test class itself."""

    @pytest.fixture
    def store(self) -> EscrowStore:
        """An empty store, ready to use. Subclasses must override this fixture."""
        raise NotImplementedError("override the `store` fixture to return your EscrowStore")

    # helpers

    @staticmethod
    def seed(store: EscrowStore, *escrows: Escrow) -> None:
        """Commit escrows (default: one called ``esc_1``) for records to refer to."""
        with store.unit_of_work() as uow:
            for escrow in escrows or (make_escrow(),):
                uow.escrows.add(escrow)
            uow.commit()

    @staticmethod
    def read(store: EscrowStore) -> UnitOfWork:
        """A unit of work for looking at committed state (entered by the caller)."""
        return store.unit_of_work()
