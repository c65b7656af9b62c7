"""Store contract: the idempotency repository (`uow.idempotency`)."""

from __future__ import annotations

from datetime import timedelta

from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import MINUTE, T0, make_idempotency


class IdempotencyContract(StoreContractBase):
    """What `uow.idempotency` does: per-actor records, updates, pruning expired ones."""

    def test_idempotency_record_round_trips_and_updates(self, store: EscrowStore) -> None:
        running = make_idempotency(
            result_kind=None, result_ref=None, error_type=None, error_message=None
        )
        with store.unit_of_work() as uow:
            assert uow.idempotency.get("poster_1", "bounty:b1", for_update=True) is None
            uow.idempotency.save(running)
            uow.commit()
        with self.read(store) as uow:
            assert uow.idempotency.get("poster_1", "bounty:b1") == running
        finished = make_idempotency()
        with store.unit_of_work() as uow:
            assert uow.idempotency.get("poster_1", "bounty:b1", for_update=True) == running
            uow.idempotency.save(finished)
            uow.commit()
        with self.read(store) as uow:
            assert uow.idempotency.get("poster_1", "bounty:b1") == finished

    def test_idempotency_keys_are_per_actor(self, store: EscrowStore) -> None:
        mine = make_idempotency("poster_1", "k")
        theirs = make_idempotency("poster_2", "k", fingerprint="sha256:other")
        with store.unit_of_work() as uow:
            uow.idempotency.save(mine)
            uow.idempotency.save(theirs)
            uow.commit()
        with self.read(store) as uow:
            assert uow.idempotency.get("poster_1", "k") == mine
            assert uow.idempotency.get("poster_2", "k") == theirs
            assert uow.idempotency.get("poster_3", "k") is None

    def test_prune_drops_expired_idempotency_records(self, store: EscrowStore) -> None:
        """Records whose `expires_at` is at or before `now` go; later ones stay."""
        now = T0 + timedelta(days=2)
        with store.unit_of_work() as uow:
            uow.idempotency.save(make_idempotency(key="old", expires_at=now - MINUTE))
            uow.idempotency.save(make_idempotency(key="now", expires_at=now))
            uow.idempotency.save(make_idempotency(key="later", expires_at=now + MINUTE))
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.idempotency.prune(now=now) == 2
            uow.commit()
        with self.read(store) as uow:
            assert uow.idempotency.get("poster_1", "old") is None
            assert uow.idempotency.get("poster_1", "now") is None
            assert uow.idempotency.get("poster_1", "later") is not None
