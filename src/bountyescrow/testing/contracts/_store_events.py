"""Store contract: the domain events repository (`uow.events`)."""

from __future__ import annotations

import attrs

from bountyescrow.domain.events import DomainEvent
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import make_event


class EventContract(StoreContractBase):
    """What `uow.events` does: increasing `seq`, reading after a cursor, round trips."""

    def test_add_returns_the_event_with_the_seq_it_was_stored_under(
        self, store: EscrowStore
    ) -> None:
        """Post-commit hooks get the stored event, so its seq matches `after(cursor)`."""
        with store.unit_of_work() as uow:
            added = [uow.events.add(make_event(f"event.{i}")) for i in range(3)]
            uow.commit()
        with self.read(store) as uow:
            stored = uow.events.after(0, limit=100)
        assert [e.seq for e in added] == [e.seq for e in stored]
        assert all(e.seq is not None for e in added)

    def test_events_get_increasing_seq_and_read_after_a_cursor(self, store: EscrowStore) -> None:
        """`after(cursor)` returns later events oldest first; their seq is the next cursor."""
        with store.unit_of_work() as uow:
            for i in range(5):
                uow.events.add(make_event(f"event.{i}"))
            uow.commit()
        with self.read(store) as uow:
            everything = uow.events.after(0, limit=100)
            first = uow.events.after(0, limit=2)
            assert first[-1].seq is not None
            rest = uow.events.after(first[-1].seq, limit=100)
            assert everything[-1].seq is not None
            assert uow.events.after(everything[-1].seq, limit=100) == []
        assert [e.type for e in everything] == [f"event.{i}" for i in range(5)]
        seqs = [e.seq for e in everything if e.seq is not None]
        assert len(seqs) == 5
        assert seqs == sorted(set(seqs))
        assert seqs[0] > 0
        assert first == everything[:2]
        assert rest == everything[2:]

    def test_event_round_trips(self, store: EscrowStore) -> None:
        event = make_event()
        bare = DomainEvent(type="payee.ready", escrow_id=None)
        with store.unit_of_work() as uow:
            uow.events.add(event)
            uow.events.add(bare)
            uow.commit()
        with self.read(store) as uow:
            got = uow.events.after(0, limit=10)
        assert [attrs.evolve(e, seq=None) for e in got] == [event, bare]

    def test_events_committed_later_come_after_earlier_ones(self, store: EscrowStore) -> None:
        """Events of a rolled-back unit never appear; later commits get higher numbers."""
        with store.unit_of_work() as uow:
            uow.events.add(make_event("first"))
            uow.commit()
        with store.unit_of_work() as uow:
            uow.events.add(make_event("rolled.back"))
        with store.unit_of_work() as uow:
            uow.events.add(make_event("second"))
            uow.commit()
        with self.read(store) as uow:
            got = uow.events.after(0, limit=10)
        assert [e.type for e in got] == ["first", "second"]
        seq_1, seq_2 = got[0].seq, got[1].seq
        assert seq_1 is not None
        assert seq_2 is not None
        assert seq_1 < seq_2
