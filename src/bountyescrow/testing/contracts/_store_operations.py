"""Store contract: the operations repository (`uow.operations`), including `claim_due` leases."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
import pytest

from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import (
    MINUTE,
    T0,
    due_operation,
    gateway_requests,
    make_escrow,
    make_operation,
    make_payee,
    usd,
)


class OperationContract(StoreContractBase):
    """What `uow.operations` does: round trips, uniqueness, queries and recovery leases."""

    @pytest.mark.parametrize(
        "action",
        [
            "create_payment",
            "cancel_payment",
            "create_transfer",
            "create_refund",
            "create_reversal",
            None,
        ],
    )
    def test_operation_round_trips_with_each_gateway_request(
        self, store: EscrowStore, action: str | None
    ) -> None:
        """The stored gateway request comes back exactly, so recovery resends the same one."""
        self.seed(store)
        request = None if action is None else gateway_requests()[action]
        op = make_operation(request=request)
        with store.unit_of_work() as uow:
            uow.operations.add(op)
            uow.commit()
        with self.read(store) as uow:
            got = uow.operations.get("op_1")
        assert got == op
        assert got is not None
        assert got.request == request

    def test_operation_round_trips_in_jpy(self, store: EscrowStore) -> None:
        self.seed(store, make_escrow(currency="jpy"))
        op = make_operation(
            currency="jpy",
            kind=OperationKind.REFUND,
            request=gateway_requests("jpy")["create_refund"],
        )
        with store.unit_of_work() as uow:
            uow.operations.add(op)
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.get("op_1") == op

    def test_operation_with_only_required_fields_round_trips(self, store: EscrowStore) -> None:
        self.seed(store)
        op = Operation(
            id="op_min",
            escrow_id="esc_1",
            kind=OperationKind.FUNDING,
            status=OperationStatus.SUCCEEDED,
            gross=usd(25_000),
            fee=usd(0),
            net=usd(25_000),
            actor_id="gateway:external",
            created_at=T0,
            updated_at=T0,
        )
        with store.unit_of_work() as uow:
            uow.operations.add(op)
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.get("op_min") == op
            assert uow.operations.get("op_min", for_update=True) == op
            assert uow.operations.get("nope") is None

    def test_adding_an_operation_twice_is_refused(self, store: EscrowStore) -> None:
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.operations.add(make_operation())
            with pytest.raises(StorageError):
                uow.operations.add(make_operation(reason="again"))

    def test_gateway_ref_is_unique_per_kind(self, store: EscrowStore) -> None:
        """One operation per (kind, gateway object): I4. Other kinds and None refs are free."""
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.operations.add(
                make_operation("op_1", gateway_ref="re_1", kind=OperationKind.REFUND)
            )
            uow.operations.add(
                make_operation("op_2", gateway_ref="re_1", kind=OperationKind.EXTERNAL_REFUND)
            )
            uow.operations.add(make_operation("op_3", gateway_ref=None))
            uow.operations.add(make_operation("op_4", gateway_ref=None))
            uow.commit()
        with store.unit_of_work() as uow, pytest.raises(StorageError):
            uow.operations.add(
                make_operation("op_5", gateway_ref="re_1", kind=OperationKind.REFUND)
            )

    def test_save_refuses_a_gateway_ref_recorded_by_another_operation(
        self, store: EscrowStore
    ) -> None:
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.operations.add(make_operation("op_1", gateway_ref="tr_1"))
            uow.operations.add(make_operation("op_2"))
            uow.commit()
        with store.unit_of_work() as uow:
            op1 = uow.operations.get("op_1")
            assert op1 is not None
            uow.operations.save(attrs.evolve(op1, status=OperationStatus.SUCCEEDED))
            with pytest.raises(StorageError):
                uow.operations.save(make_operation("op_2", gateway_ref="tr_1"))

    def test_save_updates_an_operation(self, store: EscrowStore) -> None:
        self.seed(store)
        op = make_operation()
        with store.unit_of_work() as uow:
            uow.operations.add(op)
            uow.commit()
        done = attrs.evolve(
            op,
            status=OperationStatus.SUCCEEDED,
            gateway_ref="tr_1",
            gateway_status="paid",
            error=None,
            claimed_until=None,
            next_attempt_at=None,
            attempts=4,
            generation=3,
            reversed=usd(1_000),
            updated_at=T0 + 10 * MINUTE,
        )
        with store.unit_of_work() as uow:
            uow.operations.save(done)
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.get("op_1") == done
            assert uow.operations.by_gateway_ref(OperationKind.RELEASE, "tr_1") == done

    def test_saving_an_unknown_operation_is_refused(self, store: EscrowStore) -> None:
        self.seed(store)
        with store.unit_of_work() as uow, pytest.raises(StorageError):
            uow.operations.save(make_operation())

    def test_operations_for_escrow_oldest_first(self, store: EscrowStore) -> None:
        self.seed(store, make_escrow("esc_1"), make_escrow("esc_2"))
        with store.unit_of_work() as uow:
            uow.operations.add(make_operation("op_c", created_at=T0 + MINUTE))
            uow.operations.add(make_operation("op_b", created_at=T0))
            uow.operations.add(make_operation("op_a", created_at=T0 + MINUTE))
            uow.operations.add(make_operation("op_x", "esc_2"))
            uow.commit()
        with self.read(store) as uow:
            assert [op.id for op in uow.operations.for_escrow("esc_1")] == ["op_b", "op_a", "op_c"]
            assert uow.operations.for_escrow("esc_9") == []

    def test_by_gateway_ref_finds_the_operation_of_that_kind(self, store: EscrowStore) -> None:
        self.seed(store)
        refund = make_operation("op_1", kind=OperationKind.REFUND, gateway_ref="re_1")
        with store.unit_of_work() as uow:
            uow.operations.add(refund)
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.by_gateway_ref(OperationKind.REFUND, "re_1") == refund
            assert uow.operations.by_gateway_ref(OperationKind.EXTERNAL_REFUND, "re_1") is None
            assert uow.operations.by_gateway_ref(OperationKind.REFUND, "re_2") is None

    def test_awaiting_payee_lists_waiting_releases_of_that_payee(self, store: EscrowStore) -> None:
        """Only releases in `awaiting_payee` for the payee, by escrow, then oldest first."""
        self.seed(store, make_escrow("esc_1"), make_escrow("esc_2"))
        waiting = OperationStatus.AWAITING_PAYEE
        with store.unit_of_work() as uow:
            uow.operations.add(make_operation("op_1", "esc_2", status=waiting))
            uow.operations.add(
                make_operation("op_2", "esc_1", status=waiting, created_at=T0 + MINUTE)
            )
            uow.operations.add(make_operation("op_3", "esc_1", status=waiting))
            uow.operations.add(make_operation("op_4", "esc_1", status=OperationStatus.PENDING))
            uow.operations.add(make_operation("op_5", "esc_1", status=waiting, payee_id="hunter_2"))
            uow.operations.add(
                make_operation("op_6", "esc_1", status=waiting, kind=OperationKind.REFUND)
            )
            uow.commit()
        with self.read(store) as uow:
            assert [op.id for op in uow.operations.awaiting_payee("hunter_1")] == [
                "op_3",
                "op_2",
                "op_1",
            ]
            assert [op.id for op in uow.operations.awaiting_payee("hunter_2")] == ["op_5"]
            assert uow.operations.awaiting_payee("nobody") == []
            everyone = [op.id for op in uow.operations.awaiting_payee()]
            assert everyone == ["op_3", "op_5", "op_2", "op_1"]
            assert [op.id for op in uow.operations.awaiting_payee(limit=2)] == everyone[:2]

    def test_awaiting_payee_keeps_releases_by_their_payees_readiness(
        self, store: EscrowStore
    ) -> None:
        """`ready=True` finds sendable releases however many others still wait."""
        self.seed(store, make_escrow("esc_1"))
        waiting = OperationStatus.AWAITING_PAYEE
        with store.unit_of_work() as uow:
            uow.payees.save(make_payee("hunter_1", ready=False))
            uow.payees.save(make_payee("hunter_2", ready=True))
            uow.operations.add(make_operation("op_1", status=waiting, payee_id="hunter_1"))
            uow.operations.add(make_operation("op_2", status=waiting, payee_id="hunter_2"))
            uow.operations.add(make_operation("op_3", status=waiting, payee_id="unregistered"))
            uow.commit()
        with self.read(store) as uow:
            assert [op.id for op in uow.operations.awaiting_payee(ready=True)] == ["op_2"]
            not_ready = [op.id for op in uow.operations.awaiting_payee(ready=False)]
            assert not_ready == ["op_1", "op_3"]
            assert uow.operations.awaiting_payee("hunter_1", ready=True) == []

    # --- claim_due: leases for recovery ------------------------------------------------------

    def _add(self, store: EscrowStore, *ops: Operation) -> None:
        with store.unit_of_work() as uow:
            for op in ops:
                uow.operations.add(op)
            uow.commit()

    def _claim(
        self, store: EscrowStore, now: datetime, *, lease: timedelta = 5 * MINUTE, limit: int = 100
    ) -> list[Operation]:
        with store.unit_of_work() as uow:
            claimed = uow.operations.claim_due(now=now, lease_until=now + lease, limit=limit)
            uow.commit()
        return claimed

    def test_claim_due_leases_pending_operations_oldest_first(self, store: EscrowStore) -> None:
        """Due pending operations come back oldest first with the new lease, also stored."""
        self.seed(store)
        self._add(
            store,
            due_operation("op_2", T0 + MINUTE),
            due_operation("op_1", T0),
            due_operation("op_3", T0 + 2 * MINUTE, claimed_until=T0 - MINUTE),  # lease expired
        )
        now = T0 + 10 * MINUTE
        claimed = self._claim(store, now)
        assert [op.id for op in claimed] == ["op_1", "op_2", "op_3"]
        assert {op.claimed_until for op in claimed} == {now + 5 * MINUTE}
        with self.read(store) as uow:
            stored = uow.operations.get("op_1")
        assert stored is not None
        assert stored == attrs.evolve(due_operation("op_1", T0), claimed_until=now + 5 * MINUTE)

    def test_a_claimed_operation_is_not_claimed_again_until_its_lease_expires(
        self, store: EscrowStore
    ) -> None:
        self.seed(store)
        self._add(store, due_operation("op_1", T0))
        assert [op.id for op in self._claim(store, T0, lease=5 * MINUTE)] == ["op_1"]
        assert self._claim(store, T0 + MINUTE) == []
        assert self._claim(store, T0 + 5 * MINUTE - timedelta(microseconds=1)) == []
        # A lease ending exactly now has expired.
        assert [op.id for op in self._claim(store, T0 + 5 * MINUTE)] == ["op_1"]

    def test_claim_due_waits_for_next_attempt_at(self, store: EscrowStore) -> None:
        self.seed(store)
        self._add(store, due_operation("op_1", T0, next_attempt_at=T0 + 3 * MINUTE))
        assert self._claim(store, T0 + 2 * MINUTE) == []
        assert [op.id for op in self._claim(store, T0 + 3 * MINUTE)] == ["op_1"]

    def test_claim_due_takes_only_pending_operations(self, store: EscrowStore) -> None:
        self.seed(store)
        self._add(
            store,
            due_operation("op_ok", T0),
            *(
                due_operation(f"op_{status.value}", T0, status=status)
                for status in OperationStatus
                if status is not OperationStatus.PENDING
            ),
        )
        assert [op.id for op in self._claim(store, T0 + MINUTE)] == ["op_ok"]

    def test_claim_due_honours_limit(self, store: EscrowStore) -> None:
        self.seed(store)
        self._add(store, *(due_operation(f"op_{i}", T0 + i * MINUTE) for i in range(5)))
        now = T0 + 10 * MINUTE
        assert [op.id for op in self._claim(store, now, limit=2)] == ["op_0", "op_1"]
        assert [op.id for op in self._claim(store, now, limit=2)] == ["op_2", "op_3"]
        assert [op.id for op in self._claim(store, now, limit=2)] == ["op_4"]

    def test_a_claim_without_commit_is_undone(self, store: EscrowStore) -> None:
        self.seed(store)
        self._add(store, due_operation("op_1", T0))
        with store.unit_of_work() as uow:
            assert len(uow.operations.claim_due(now=T0, lease_until=T0 + MINUTE, limit=10)) == 1
        assert [op.id for op in self._claim(store, T0)] == ["op_1"]

    # --- oldest_pending / count_pending: what recovery measures and alerts on ------------------

    def test_oldest_pending_lists_pending_operations_oldest_first(self, store: EscrowStore) -> None:
        """Leased or not, due or not: pending is pending. Ties go by id."""
        self.seed(store)
        self._add(
            store,
            due_operation("op_3", T0 + 2 * MINUTE, next_attempt_at=T0 + 9 * MINUTE),
            due_operation("op_2", T0 + MINUTE, claimed_until=T0 + 5 * MINUTE),
            due_operation("op_1b", T0),
            due_operation("op_1a", T0),
        )
        with self.read(store) as uow:
            assert [op.id for op in uow.operations.oldest_pending()] == ["op_1a"]
            listed = [op.id for op in uow.operations.oldest_pending(limit=10)]
            assert listed == ["op_1a", "op_1b", "op_2", "op_3"]
            assert uow.operations.count_pending() == 4
            assert uow.operations.oldest_pending(limit=10)[2] == due_operation(
                "op_2", T0 + MINUTE, claimed_until=T0 + 5 * MINUTE
            )

    def test_oldest_pending_leaves_out_what_waits_on_someone_else(self, store: EscrowStore) -> None:
        """Settled operations, releases awaiting a payee and fundings whose payment exists
        (they wait for the payer) are not pending on us; a funding not yet created is."""
        self.seed(store)
        funding = OperationKind.FUNDING
        self._add(
            store,
            *(
                due_operation(f"op_{status.value}", T0, status=status)
                for status in OperationStatus
                if status is not OperationStatus.PENDING
            ),
            due_operation("op_paying", T0, kind=funding, gateway_ref="pi_1", request=None),
            due_operation("op_funding", T0 + MINUTE, kind=funding, request=None),
            due_operation(
                "op_refund", T0 + 2 * MINUTE, kind=OperationKind.REFUND, gateway_ref="re_1"
            ),
        )
        with self.read(store) as uow:
            listed = [op.id for op in uow.operations.oldest_pending(limit=10)]
            assert listed == ["op_funding", "op_refund"]
            assert uow.operations.count_pending() == 2

    def test_nothing_pending(self, store: EscrowStore) -> None:
        self.seed(store)
        with self.read(store) as uow:
            assert uow.operations.oldest_pending(limit=5) == []
            assert uow.operations.count_pending() == 0
