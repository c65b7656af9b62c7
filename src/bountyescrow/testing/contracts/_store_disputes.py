"""Store contract: the disputes repository (`uow.disputes`)."""

from __future__ import annotations

import attrs

from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import (
    MINUTE,
    T0,
    jpy,
    make_dispute,
    make_escrow,
    usd,
)


class DisputeContract(StoreContractBase):
    """What `uow.disputes` does: round trips and updates, listing per escrow."""

    def test_dispute_round_trips_and_updates(self, store: EscrowStore) -> None:
        self.seed(store)
        dispute = make_dispute()
        with store.unit_of_work() as uow:
            uow.disputes.save(dispute)
            uow.commit()
        with self.read(store) as uow:
            assert uow.disputes.get("dp_1") == dispute
            assert uow.disputes.get("dp_9") is None
        won = attrs.evolve(
            dispute, status="won", reinstated=usd(25_000), reason=None, updated_at=T0 + 9 * MINUTE
        )
        with store.unit_of_work() as uow:
            uow.disputes.save(won)
            uow.commit()
        with self.read(store) as uow:
            assert uow.disputes.get("dp_1") == won
            assert uow.disputes.for_escrow("esc_1") == [won]

    def test_dispute_in_jpy_round_trips(self, store: EscrowStore) -> None:
        self.seed(store, make_escrow(currency="jpy"))
        dispute = make_dispute(
            amount=jpy(5_000),
            withdrawn=jpy(5_000),
            reinstated=jpy(0),
            from_held=jpy(5_000),
            from_shortfall=jpy(0),
        )
        with store.unit_of_work() as uow:
            uow.disputes.save(dispute)
            uow.commit()
        with self.read(store) as uow:
            assert uow.disputes.get("dp_1") == dispute

    def test_disputes_for_escrow_oldest_first(self, store: EscrowStore) -> None:
        self.seed(store, make_escrow("esc_1"), make_escrow("esc_2"))
        with store.unit_of_work() as uow:
            uow.disputes.save(make_dispute("dp_b", created_at=T0 + MINUTE))
            uow.disputes.save(make_dispute("dp_a", created_at=T0 + 2 * MINUTE))
            uow.disputes.save(make_dispute("dp_c", created_at=T0))
            uow.disputes.save(make_dispute("dp_x", "esc_2"))
            uow.commit()
        with self.read(store) as uow:
            assert [d.id for d in uow.disputes.for_escrow("esc_1")] == ["dp_c", "dp_b", "dp_a"]
