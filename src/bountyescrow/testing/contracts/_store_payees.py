"""Store contract: the payees repository (`uow.payees`)."""

from __future__ import annotations

import attrs

from bountyescrow.domain.operation import OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import (
    MINUTE,
    T0,
    make_escrow,
    make_operation,
    make_payee,
)


class PayeeContract(StoreContractBase):
    """What `uow.payees` does: round trips and updates, lookup by account."""

    def test_payee_round_trips_and_updates(self, store: EscrowStore) -> None:
        payee = make_payee(ready=False)
        with store.unit_of_work() as uow:
            uow.payees.save(payee)
            uow.commit()
        with self.read(store) as uow:
            assert uow.payees.get("hunter_1") == payee
            assert uow.payees.by_account("acct_hunter_1") == payee
            assert uow.payees.by_account("acct_nobody") is None
            assert uow.payees.get("nobody") is None
        ready = attrs.evolve(payee, ready=True, updated_at=T0 + 3 * MINUTE)
        with store.unit_of_work() as uow:
            assert uow.payees.get("hunter_1", for_update=True) == payee
            uow.payees.save(ready)
            uow.commit()
        with self.read(store) as uow:
            assert uow.payees.get("hunter_1") == ready

    def test_payee_with_only_required_fields_round_trips(self, store: EscrowStore) -> None:
        payee = Payee(id="hunter_2", account_ref="acct_2", ready=False, country="JP")
        with store.unit_of_work() as uow:
            assert uow.payees.get("hunter_2", for_update=True) is None
            uow.payees.save(payee)
            uow.commit()
        with self.read(store) as uow:
            assert uow.payees.get("hunter_2") == payee

    def test_waited_for_lists_payees_not_ready_that_releases_wait_for_oldest_first(
        self, store: EscrowStore
    ) -> None:
        """So that recovery asks about every one of them in turns."""
        self.seed(store, make_escrow("esc_1"))
        waiting = OperationStatus.AWAITING_PAYEE
        with store.unit_of_work() as uow:
            uow.payees.save(make_payee("late", ready=False, updated_at=T0 + 2 * MINUTE))
            uow.payees.save(make_payee("early", ready=False, updated_at=T0))
            uow.payees.save(make_payee("fresh", ready=False, updated_at=T0 + 9 * MINUTE))
            uow.payees.save(make_payee("ready", ready=True, updated_at=T0))
            uow.payees.save(make_payee("idle", ready=False, updated_at=T0))  # nothing waits
            for n, payee in enumerate(("late", "early", "fresh", "ready")):
                uow.operations.add(make_operation(f"op_{n}", status=waiting, payee_id=payee))
            uow.commit()
        with self.read(store) as uow:
            due = uow.payees.waited_for(updated_before=T0 + 5 * MINUTE, limit=10)
            assert [p.id for p in due] == ["early", "late"]
            first = uow.payees.waited_for(updated_before=T0 + 5 * MINUTE, limit=1)
            assert [p.id for p in first] == ["early"]
