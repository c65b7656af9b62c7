"""Store contract: the payees repository (`uow.payees`)."""

from __future__ import annotations

import attrs

from bountyescrow.domain.payee import Payee
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import MINUTE, T0, make_payee


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
