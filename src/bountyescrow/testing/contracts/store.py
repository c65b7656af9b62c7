"""The `EscrowStore` contract: what every store must do, as pytest tests.

The reference behaviour is `bountyescrow.testing.InMemoryStore`. To check your own store,
subclass `StoreContract` in a test module and override the ``store`` fixture::

    import pytest
    from bountyescrow.testing.contracts.store import StoreContract


    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)  # empty, ready to use
            yield store
            store.close()

Each test gets a fresh, empty store. Records always refer to an escrow that exists (SQL stores
enforce that with foreign keys). Times are UTC-aware; amounts use `usd` and `jpy` (a zero-decimal
currency) so minor units are not confused with major ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import (
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
    GatewayRequest,
)
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import (
    AuditRecord,
    IdempotencyRecord,
    WebhookEventRecord,
    WebhookStatus,
)
from bountyescrow.errors import StorageError
from bountyescrow.ports.store import EscrowStore, UnitOfWork

#: A fixed moment with microseconds, so stores that drop precision are caught.
T0 = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def usd(amount: int) -> Money:
    """Money in cents."""
    return Money(amount, "usd")


def jpy(amount: int) -> Money:
    """Money in yen (zero-decimal)."""
    return Money(amount, "jpy")


# --- builders: every optional field set, so a store that drops one fails ----------------------


def make_escrow(escrow_id: str = "esc_1", *, currency: str = "usd", **changes: Any) -> Escrow:
    """A funded, partly settled escrow with every optional field set (I1 holds)."""
    big = 100 if currency == "jpy" else 1
    m = {"usd": usd, "jpy": jpy}[currency]
    escrow = Escrow(
        id=escrow_id,
        bounty_id="bounty_1",
        poster_id="poster_1",
        amount=m(25_000 * big),
        fee_schedule=FeeSchedule(bps=1_000, fixed=m(30 * big)),
        transfer_group=f"escrow_{escrow_id}",
        created_at=T0,
        funded=m(25_000 * big),
        held=m(15_000 * big),
        reserved=m(5_000 * big),
        released=m(8_000 * big),
        refunded=m(1_000 * big),
        fees=m(830 * big),
        dispute_withdrawn=m(1_000 * big),
        shortfall=m(200 * big),
        request_id="claim_7",
        payment_ref=f"pi_{escrow_id}",
        charge_ref=f"ch_{escrow_id}",
        payment_status="succeeded",
        last_payment_error="card_declined (an earlier attempt)",
        cancelled=False,
        fixed_fee_charged=True,
        open_disputes=frozenset({"dp_1", "dp_2"}),
        fraud_warning=True,
        funded_at=T0 + MINUTE,
        version=0,
    )
    return attrs.evolve(escrow, **changes)


def new_escrow(
    escrow_id: str,
    *,
    bounty_id: str = "bounty_1",
    poster_id: str = "poster_1",
    amount: Money | None = None,
    created_at: datetime = T0,
) -> Escrow:
    """A fresh escrow awaiting funding, as `open_escrow` creates it."""
    return Escrow.new(
        id=escrow_id,
        bounty_id=bounty_id,
        poster_id=poster_id,
        amount=amount or usd(10_000),
        fee_schedule=FeeSchedule(bps=1_000),
        created_at=created_at,
    )


def _metadata(escrow_id: str, operation_id: str) -> dict[str, str]:
    return {
        "bountyescrow_escrow_id": escrow_id,
        "bountyescrow_operation_id": operation_id,
        "bounty_id": "bounty_1",
    }


def gateway_requests(currency: str = "usd") -> dict[str, GatewayRequest]:
    """One stored gateway request of each type."""
    m = {"usd": usd, "jpy": jpy}[currency]
    meta = _metadata("esc_1", "op_1")
    return {
        "create_payment": CreatePayment(
            amount=m(25_000),
            transfer_group="escrow_esc_1",
            metadata=meta,
            payment_method_types=("card", "link"),
            description="Bounty b1",
            receipt_email="poster@example.com",
        ),
        "cancel_payment": CancelPayment(payment_ref="pi_esc_1"),
        "create_transfer": CreateTransfer(
            amount=m(9_000),
            destination="acct_hunter",
            source_transaction="ch_esc_1",
            transfer_group="escrow_esc_1",
            metadata=meta,
        ),
        "create_refund": CreateRefund(
            amount=m(5_000), payment_ref="pi_esc_1", metadata=meta, reason="requested_by_customer"
        ),
        "create_reversal": CreateReversal(amount=m(4_000), transfer_ref="tr_1", metadata=meta),
    }


def make_operation(
    operation_id: str = "op_1",
    escrow_id: str = "esc_1",
    *,
    currency: str = "usd",
    **changes: Any,
) -> Operation:
    """A release with every optional field set."""
    m = {"usd": usd, "jpy": jpy}[currency]
    op = Operation(
        id=operation_id,
        escrow_id=escrow_id,
        kind=OperationKind.RELEASE,
        status=OperationStatus.PENDING,
        gross=m(10_000),
        fee=m(1_030),
        net=m(8_970),
        actor_id="poster_1",
        created_at=T0,
        updated_at=T0 + MINUTE,
        payee_id="hunter_1",
        gateway_ref=None,
        gateway_status="pending",
        error="timeout (will retry)",
        target_id="op_0",
        request=gateway_requests(currency)["create_transfer"],
        generation=2,
        claimed_until=T0 + 5 * MINUTE,
        next_attempt_at=T0 + 2 * MINUTE,
        attempts=3,
        fixed_fee=m(30),
        reversed=m(0),
        shortfall=m(5),
        reason="milestone 1",
        correlation_id="req-abc",
        request_id="claim_7",
    )
    return attrs.evolve(op, **changes)


def due_operation(operation_id: str, created_at: datetime, **changes: Any) -> Operation:
    """A pending operation with no lease and no retry delay: due at once."""
    fields: dict[str, Any] = {
        "created_at": created_at,
        "updated_at": created_at,
        "claimed_until": None,
        "next_attempt_at": None,
    }
    return make_operation(operation_id, **{**fields, **changes})


def make_dispute(dispute_id: str = "dp_1", escrow_id: str = "esc_1", **changes: Any) -> Dispute:
    """A dispute with money withdrawn, part of it from held money."""
    dispute = Dispute(
        id=dispute_id,
        escrow_id=escrow_id,
        amount=usd(25_000),
        status="needs_response",
        reason="fraudulent",
        withdrawn=usd(25_000),
        reinstated=usd(0),
        from_held=usd(15_000),
        from_shortfall=usd(10_000),
        created_at=T0,
        updated_at=T0 + MINUTE,
    )
    return attrs.evolve(dispute, **changes)


def make_payee(payee_id: str = "hunter_1", **changes: Any) -> Payee:
    """A ready payee with every optional field set."""
    payee = Payee(
        id=payee_id,
        account_ref=f"acct_{payee_id}",
        ready=True,
        country="US",
        email=f"{payee_id}@example.com",
        created_at=T0,
        updated_at=T0 + MINUTE,
    )
    return attrs.evolve(payee, **changes)


def make_entry(
    kind: str = "release", ref: str = "tr_1", escrow_id: str = "esc_1", **changes: Any
) -> JournalEntry:
    """A balanced release entry: held money to the payee and the platform fee."""
    entry = JournalEntry.of(
        escrow_id,
        kind,
        ref,
        (f"escrow:{escrow_id}", usd(-10_000)),
        ("payee:hunter_1", usd(8_970)),
        ("platform:fees", usd(1_030)),
        operation_id="op_1",
    )
    return attrs.evolve(entry, created_at=T0, **changes)


def make_audit(escrow_id: str | None = "esc_1", **changes: Any) -> AuditRecord:
    """An audit record with every optional field set."""
    record = AuditRecord(
        action="release",
        actor_id="poster_1",
        escrow_id=escrow_id,
        created_at=T0,
        allowed=False,
        operation_id="op_1",
        before={"held": 15_000, "status": "funded"},
        after={"held": 5_000, "ops": ["op_1"], "nested": {"ok": True, "none": None}},
        correlation_id="req-abc",
        detail="denied: not the poster",
    )
    return attrs.evolve(record, **changes)


def make_event(event_type: str = "operation.created", **changes: Any) -> DomainEvent:
    """A domain event with data of every JSON kind."""
    event = DomainEvent(
        type=event_type,
        escrow_id="esc_1",
        operation_id="op_1",
        data={
            "amount": 10_000,
            "kind": "release",
            "flags": [True, None],
            "ratio": 0.5,
            "nested": {"currency": "usd"},
        },
        created_at=T0,
    )
    return attrs.evolve(event, **changes)


def make_webhook_event(
    event_id: str = "evt_1", *, status: WebhookStatus = WebhookStatus.PROCESSED, **changes: Any
) -> WebhookEventRecord:
    """A webhook event record with every optional field set."""
    record = WebhookEventRecord(
        id=event_id,
        type="payment_intent.succeeded",
        status=status,
        received_at=T0,
        processed_at=T0 + MINUTE,
        attempts=2,
        error="escrow not committed yet",
        payload='{"id": "evt_1"}',
    )
    return attrs.evolve(record, **changes)


def make_idempotency(
    actor_id: str = "poster_1", key: str = "bounty:b1", **changes: Any
) -> IdempotencyRecord:
    """An idempotency record with every optional field set."""
    record = IdempotencyRecord(
        actor_id=actor_id,
        key=key,
        action="open_escrow",
        fingerprint="sha256:abc",
        created_at=T0,
        expires_at=T0 + timedelta(hours=24),
        locked_until=T0 + MINUTE,
        result_kind="escrow",
        result_ref="esc_1",
        error_type="InsufficientFundsError",
        error_message="only $50.00 available",
    )
    return attrs.evolve(record, **changes)


# --- the contract -----------------------------------------------------------------------------


class StoreContract:
    """Every `EscrowStore` passes these tests. Override the ``store`` fixture to opt in."""

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

    # --- units of work -----------------------------------------------------------------------

    def test_uncommitted_changes_are_rolled_back(self, store: EscrowStore) -> None:
        """A unit of work left without commit() leaves no trace in any repository."""
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow("esc_2"))
            uow.escrows.save(make_escrow(held=usd(5_000)))
            uow.operations.add(make_operation())
            uow.disputes.save(make_dispute())
            uow.payees.save(make_payee())
            uow.ledger.add(make_entry())
            uow.audit.add(make_audit())
            uow.events.add(make_event())
            uow.webhook_events.save(make_webhook_event())
            uow.idempotency.save(make_idempotency())
        with self.read(store) as uow:
            assert uow.escrows.get("esc_2") is None
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.get("op_1") is None
            assert uow.disputes.get("dp_1") is None
            assert uow.payees.get("hunter_1") is None
            assert not uow.ledger.exists("release", "tr_1")
            assert uow.audit.for_escrow("esc_1") == []
            assert uow.events.after(0, limit=10) == []
            assert uow.webhook_events.get("evt_1") is None
            assert uow.idempotency.get("poster_1", "bounty:b1") is None

    def test_an_exception_rolls_back_and_propagates(self, store: EscrowStore) -> None:
        """An exception inside the with block undoes the unit of work and is not swallowed."""

        def fail_halfway() -> None:
            with store.unit_of_work() as uow:
                uow.escrows.add(make_escrow())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail_halfway()
        with self.read(store) as uow:
            assert uow.escrows.get("esc_1") is None

    def test_changes_are_visible_inside_the_unit_of_work(self, store: EscrowStore) -> None:
        """Reads see the unit of work's own writes before it commits."""
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.for_escrow("esc_1") == [make_operation()]

    def test_committed_changes_are_seen_by_later_units_of_work(self, store: EscrowStore) -> None:
        """After commit() the changes are durable and visible to every later unit of work."""
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            uow.events.add(make_event())
            uow.commit()
        with self.read(store) as uow:
            assert uow.escrows.get("esc_1") == make_escrow()
            assert uow.operations.get("op_1") == make_operation()
            assert [e.type for e in uow.events.after(0, limit=10)] == ["operation.created"]

    def test_a_refused_write_leaves_the_unit_of_work_usable(self, store: EscrowStore) -> None:
        """After a uniqueness refusal the rest of the unit of work still commits."""
        self.seed(store)
        with store.unit_of_work() as uow:
            uow.ledger.add(make_entry())
            uow.commit()
        with store.unit_of_work() as uow:
            with pytest.raises(StorageError):
                uow.ledger.add(make_entry())
            with pytest.raises(StorageError):
                uow.escrows.add(make_escrow())
            uow.operations.add(make_operation())
            uow.commit()
        with self.read(store) as uow:
            assert uow.operations.get("op_1") == make_operation()
            assert len(uow.ledger.for_escrow("esc_1")) == 1

    # --- escrows -----------------------------------------------------------------------------

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

    # --- operations --------------------------------------------------------------------------

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

    def test_lock_bounty_can_be_taken_before_any_escrow_of_the_pair_exists(
        self, store: EscrowStore
    ) -> None:
        """It locks a name, not a row: a first open holds it, the next unit of work gets it."""
        for _ in range(2):
            with store.unit_of_work() as uow:
                uow.escrows.lock_bounty("bounty_new", "poster_1")
                assert uow.escrows.find(bounty_id="bounty_new", poster_id="poster_1") == []
                uow.commit()

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

    # --- disputes ----------------------------------------------------------------------------

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

    # --- payees ------------------------------------------------------------------------------

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

    # --- ledger ------------------------------------------------------------------------------

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

    # --- audit and events --------------------------------------------------------------------

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

    # --- webhook events ----------------------------------------------------------------------

    def test_webhook_event_round_trips_and_updates(self, store: EscrowStore) -> None:
        failed = make_webhook_event(status=WebhookStatus.FAILED)
        with store.unit_of_work() as uow:
            assert uow.webhook_events.get("evt_1", for_update=True) is None
            uow.webhook_events.save(failed)
            uow.commit()
        with self.read(store) as uow:
            assert uow.webhook_events.get("evt_1") == failed
        processed = attrs.evolve(
            failed,
            status=WebhookStatus.PROCESSED,
            attempts=3,
            error=None,
            payload=None,
            processed_at=T0 + 2 * MINUTE,
        )
        with store.unit_of_work() as uow:
            assert uow.webhook_events.get("evt_1", for_update=True) == failed
            uow.webhook_events.save(processed)
            uow.commit()
        with self.read(store) as uow:
            assert uow.webhook_events.get("evt_1") == processed
            assert uow.webhook_events.get("evt_2") is None

    def test_failed_lists_failed_webhook_events_oldest_first(self, store: EscrowStore) -> None:
        """Only failed events, by the time they were received, at most `limit` of them."""
        failed = WebhookStatus.FAILED
        with store.unit_of_work() as uow:
            uow.webhook_events.save(make_webhook_event("evt_b", status=failed, received_at=T0))
            uow.webhook_events.save(
                make_webhook_event("evt_a", status=failed, received_at=T0 + MINUTE)
            )
            uow.webhook_events.save(make_webhook_event("evt_done", received_at=T0))
            uow.commit()
        with self.read(store) as uow:
            assert [r.id for r in uow.webhook_events.failed(limit=10)] == ["evt_b", "evt_a"]
            assert [r.id for r in uow.webhook_events.failed(limit=1)] == ["evt_b"]

    def test_prune_drops_old_processed_and_ignored_webhook_events(self, store: EscrowStore) -> None:
        """Failed events stay for replay; an event received exactly at the cutoff stays."""
        cutoff = T0 + timedelta(days=1)
        old = cutoff - MINUTE
        with store.unit_of_work() as uow:
            uow.webhook_events.save(make_webhook_event("evt_old_done", received_at=old))
            uow.webhook_events.save(
                make_webhook_event("evt_old_ignored", status=WebhookStatus.IGNORED, received_at=old)
            )
            uow.webhook_events.save(
                make_webhook_event("evt_old_failed", status=WebhookStatus.FAILED, received_at=old)
            )
            uow.webhook_events.save(make_webhook_event("evt_at_cutoff", received_at=cutoff))
            uow.webhook_events.save(make_webhook_event("evt_new", received_at=cutoff + MINUTE))
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.webhook_events.prune(before=cutoff) == 2
            uow.commit()
        with self.read(store) as uow:
            remaining = {
                event_id
                for event_id in (
                    "evt_old_done",
                    "evt_old_ignored",
                    "evt_old_failed",
                    "evt_at_cutoff",
                    "evt_new",
                )
                if uow.webhook_events.get(event_id) is not None
            }
            assert uow.webhook_events.prune(before=cutoff) == 0
        assert remaining == {"evt_old_failed", "evt_at_cutoff", "evt_new"}

    # --- idempotency -------------------------------------------------------------------------

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
