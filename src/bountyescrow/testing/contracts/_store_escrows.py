"""Store contract: the escrows repository (`uow.escrows`)."""

from __future__ import annotations

import attrs
import pytest

from bountyescrow.domain.money import Money
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import (
    MINUTE,
    T0,
    jpy,
    make_escrow,
    new_escrow,
    usd,
)


class EscrowContract(StoreContractBase):
    """What `uow.escrows` does: round trips, versions, finding, paging, totals, locks."""

    @pytest.mark.parametrize("currency", ["usd", "jpy"])
    def test_escrow_round_trips_with_every_field(self, store: EscrowStore, currency: str) -> None:
        """Every field comes back as stored, amounts in the escrow's own currency."""
        escrow = make_escrow(currency=currency)
        self.seed(store, escrow)
        with self.read(store) as uow:
            got = uow.escrows.get("esc_1")
        assert got == escrow
        assert got is not None
        assert got.amount.currency == currency
        assert got.open_disputes == frozenset({"dp_1", "dp_2"})
        assert got.created_at == T0

    def test_new_escrow_round_trips(self, store: EscrowStore) -> None:
        """An escrow with only its required fields (no fixed fee, no refs) round-trips."""
        escrow = new_escrow("esc_1")
        self.seed(store, escrow)
        with self.read(store) as uow:
            assert uow.escrows.get("esc_1") == escrow

    def test_unknown_escrow_is_none(self, store: EscrowStore) -> None:
        with self.read(store) as uow:
            assert uow.escrows.get("nope") is None
            assert uow.escrows.get("nope", for_update=True) is None

    def test_get_for_update_returns_the_escrow(self, store: EscrowStore) -> None:
        self.seed(store)
        with store.unit_of_work() as uow:
            assert uow.escrows.get("esc_1", for_update=True) == make_escrow()

    def test_adding_an_escrow_twice_is_refused(self, store: EscrowStore) -> None:
        self.seed(store)
        with store.unit_of_work() as uow, pytest.raises(StorageError):
            uow.escrows.add(make_escrow(bounty_id="other"))

    def test_save_stores_changes_and_increments_version(self, store: EscrowStore) -> None:
        """Each save writes the new state and the store bumps `version` by one."""
        self.seed(store)
        with store.unit_of_work() as uow:
            current = uow.escrows.get("esc_1", for_update=True)
            assert current is not None
            assert current.version == 0
            uow.escrows.save(attrs.evolve(current, held=usd(14_000), released=usd(9_000)))
            uow.commit()
        with store.unit_of_work() as uow:
            current = uow.escrows.get("esc_1", for_update=True)
            assert current is not None
            assert current.version == 1
            assert current.held == usd(14_000)
            assert current.released == usd(9_000)
            uow.escrows.save(attrs.evolve(current, open_disputes=frozenset()))
            uow.commit()
        with self.read(store) as uow:
            got = uow.escrows.get("esc_1")
        assert got is not None
        assert got.version == 2
        assert got.open_disputes == frozenset()

    def test_saving_an_unknown_escrow_is_refused(self, store: EscrowStore) -> None:
        with store.unit_of_work() as uow, pytest.raises(StorageError):
            uow.escrows.save(make_escrow())

    def test_client_secret_is_never_stored(self, store: EscrowStore) -> None:
        """The PaymentIntent client secret is only ever on `open_escrow`'s return value."""
        escrow = attrs.evolve(new_escrow("esc_1"), client_secret="pi_1_secret_abc")
        with store.unit_of_work() as uow:
            uow.escrows.add(escrow)
            uow.commit()
        with store.unit_of_work() as uow:
            stored = uow.escrows.get("esc_1")
            assert stored is not None
            assert stored.client_secret is None
            uow.escrows.save(attrs.evolve(stored, client_secret="pi_1_secret_abc"))
            uow.commit()
        with self.read(store) as uow:
            found = uow.escrows.find(bounty_id="bounty_1")
            again = uow.escrows.get("esc_1")
        assert again is not None
        assert again.client_secret is None
        assert [e.client_secret for e in found] == [None]

    def test_find_by_bounty_and_poster_oldest_first(self, store: EscrowStore) -> None:
        a = new_escrow("esc_a", bounty_id="b1", poster_id="u1", created_at=T0 + 2 * MINUTE)
        b = new_escrow("esc_b", bounty_id="b1", poster_id="u2", created_at=T0 + MINUTE)
        c = new_escrow("esc_c", bounty_id="b2", poster_id="u1", created_at=T0)
        d = new_escrow("esc_d", bounty_id="b1", poster_id="u1", created_at=T0)
        self.seed(store, a, b, c, d)
        with self.read(store) as uow:
            assert [e.id for e in uow.escrows.find(bounty_id="b1")] == ["esc_d", "esc_b", "esc_a"]
            assert [e.id for e in uow.escrows.find(poster_id="u1")] == ["esc_c", "esc_d", "esc_a"]
            assert [e.id for e in uow.escrows.find(bounty_id="b1", poster_id="u1")] == [
                "esc_d",
                "esc_a",
            ]
            assert uow.escrows.find(bounty_id="b9") == []
            assert len(uow.escrows.find()) == 4

    def test_ids_page_through_all_escrows_in_order(self, store: EscrowStore) -> None:
        """Ids come in Python string order (byte-wise), `after` excluded, at most `limit`."""
        ids = ["esc_B", "esc_a", "esc_c", "esc_A", "esc_b"]
        self.seed(store, *(new_escrow(i) for i in ids))
        with self.read(store) as uow:
            first = uow.escrows.ids(limit=2)
            rest = uow.escrows.ids(after=first[-1], limit=10)
            everything = uow.escrows.ids()
        assert first == ["esc_A", "esc_B"]
        assert rest == ["esc_a", "esc_b", "esc_c"]
        assert everything == sorted(ids)

    def test_held_total_sums_held_money_per_currency(self, store: EscrowStore) -> None:
        self.seed(
            store,
            make_escrow("esc_1"),
            make_escrow("esc_2", held=usd(7_000), reserved=usd(0)),
            make_escrow("esc_3", currency="jpy"),
        )
        with self.read(store) as uow:
            assert uow.escrows.held_total("usd") == usd(22_000)
            assert uow.escrows.held_total("jpy") == jpy(1_500_000)
            assert uow.escrows.held_total("eur") == Money(0, "eur")

    def test_lock_bounty_can_be_taken_before_any_escrow_of_the_pair_exists(
        self, store: EscrowStore
    ) -> None:
        """It locks a name, not a row: a first open holds it, the next unit of work gets it."""
        for _ in range(2):
            with store.unit_of_work() as uow:
                uow.escrows.lock_bounty("bounty_new", "poster_1")
                assert uow.escrows.find(bounty_id="bounty_new", poster_id="poster_1") == []
                uow.commit()
