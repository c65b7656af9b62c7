"""Store contract: the audit repository (`uow.audit`)."""

from __future__ import annotations

import attrs

from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import make_audit, make_escrow


class AuditContract(StoreContractBase):
    """What `uow.audit` does: records round-trip per escrow, in order."""

    def test_audit_records_round_trip_in_order(self, store: EscrowStore) -> None:
        self.seed(store, make_escrow("esc_1"), make_escrow("esc_2"))
        first = make_audit()
        second = make_audit(
            action="refund",
            allowed=True,
            detail=None,
            correlation_id=None,
            operation_id=None,
            before={},
            after={},
        )
        with store.unit_of_work() as uow:
            uow.audit.add(first)
            uow.audit.add(make_audit("esc_2"))
            uow.audit.add(make_audit(None, action="payee.register"))
            uow.audit.add(second)
            uow.commit()
        with self.read(store) as uow:
            got = uow.audit.for_escrow("esc_1")
            assert uow.audit.for_escrow("esc_9") == []
        assert [attrs.evolve(r, seq=None) for r in got] == [first, second]
        seq_1, seq_2 = got[0].seq, got[1].seq
        assert seq_1 is not None
        assert seq_2 is not None
        assert seq_1 < seq_2
