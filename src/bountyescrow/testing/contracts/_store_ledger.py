"""Store contract: the ledger repository (`uow.ledger`)."""

from __future__ import annotations

import attrs
import pytest

from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import T0, jpy, make_entry, make_escrow, usd


class LedgerContract(StoreContractBase):
    """What `uow.ledger` does: entries in booking order, each (kind, ref) booked once."""

    def test_ledger_entries_round_trip_in_booking_order(self, store: EscrowStore) -> None:
        """Entries come back in booking order with postings in order and `seq` assigned."""
        self.seed(store, make_escrow("esc_1"), make_escrow("esc_2"))
        funding = JournalEntry.of(
            "esc_1",
            "funding",
            "pi_esc_1",
            ("gateway:usd", usd(-25_000)),
            ("escrow:esc_1", usd(25_000)),
            operation_id="op_0",
        )
        mixed = JournalEntry.of(
            "esc_1",
            "adjustment",
            "adj_1",
            ("gateway:usd", usd(-5)),
            ("platform:shortfall", usd(5)),
            ("gateway:jpy", jpy(-7)),
            ("platform:shortfall", jpy(7)),
        )
        empty = JournalEntry.of("esc_1", "note", "nothing", ("escrow:esc_1", usd(0)))
        release = make_entry()
        other = make_entry(ref="tr_9", escrow_id="esc_2")
        with store.unit_of_work() as uow:
            for entry in (funding, release, other, mixed, empty):
                uow.ledger.add(entry)
            uow.commit()
        with self.read(store) as uow:
            got = uow.ledger.for_escrow("esc_1")
            assert uow.ledger.for_escrow("esc_9") == []
        assert [attrs.evolve(e, seq=None) for e in got] == [funding, release, mixed, empty]
        seqs = [e.seq for e in got if e.seq is not None]
        assert len(seqs) == 4
        assert seqs == sorted(set(seqs))
        assert got[1].created_at == T0

    def test_ledger_books_each_kind_and_ref_once(self, store: EscrowStore) -> None:
        """I4: a second entry of the same (kind, ref) is refused; another kind is not."""
        self.seed(store)
        with store.unit_of_work() as uow:
            assert not uow.ledger.exists("refund", "re_1")
            uow.ledger.add(make_entry("refund", "re_1"))
            assert uow.ledger.exists("refund", "re_1")
            uow.ledger.add(make_entry("refund_failed", "re_1"))
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.ledger.exists("refund", "re_1")
            assert not uow.ledger.exists("refund", "re_2")
            with pytest.raises(StorageError):
                uow.ledger.add(make_entry("refund", "re_1"))
