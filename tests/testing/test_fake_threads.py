"""`FakeGateway` under concurrent use: one lock guards all state."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bountyescrow.domain.gateway_objects import CreateTransfer, TransferSnapshot
from bountyescrow.errors import GatewayUnavailableError, IdempotencyKeyInUseError
from bountyescrow.testing import FakeGateway
from bountyescrow.testing._fake_gateway import during_next_call

from .support import RecordingService, paid, ready_account, transfer_request, usd

THREADS = 8
PER_THREAD = 25


def test_eight_threads_making_transfers_add_up(fake: FakeGateway) -> None:
    payment = paid(fake, 1_000_000)
    accounts = [ready_account(fake, payee=f"u{i}") for i in range(2)]
    start = threading.Barrier(THREADS, timeout=30)

    def work(thread: int) -> list[str]:
        start.wait()
        refs = []
        for n in range(PER_THREAD):
            request = CreateTransfer(
                amount=usd(100 + thread),
                destination=accounts[n % 2],
                source_transaction=payment.charge_ref,
                transfer_group="esc_1",
                metadata={"bountyescrow_operation_id": f"op_{thread}_{n}"},
            )
            key = f"k-{thread}-{n}"
            first = fake.create_transfer(request, idempotency_key=key)
            again = fake.create_transfer(request, idempotency_key=key)  # a retry: no new money
            assert again.ref == first.ref
            refs.append(first.ref)
        return refs

    with ThreadPoolExecutor(THREADS) as pool:
        refs = [ref for batch in pool.map(work, range(THREADS)) for ref in batch]

    expected = sum((100 + t) * PER_THREAD for t in range(THREADS))
    assert len(set(refs)) == THREADS * PER_THREAD
    assert len(fake.movements) == THREADS * PER_THREAD
    assert fake.balance(accounts[0]) + fake.balance(accounts[1]) == usd(expected)
    assert sum(m.amount.amount for m in fake.movements) == expected
    assert len([e for e in fake.pending_events if e.type == "transfer.created"]) == len(refs)


def test_delivering_while_other_threads_queue_loses_nothing(fake: FakeGateway) -> None:
    service = RecordingService()
    stop = threading.Event()

    def deliver() -> None:
        while not stop.is_set():
            fake.deliver(service)

    deliverer = threading.Thread(target=deliver)
    deliverer.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: paid(fake, 1_000, key=f"p{i}"), range(40)))
    finally:
        stop.set()
        deliverer.join()
    fake.deliver(service)
    assert len({e.id for e in service.events}) == 40


class TestKeyInUse:
    """Stripe answers 409 to a request whose key another request is still executing."""

    def test_a_second_thread_with_the_key_of_a_call_still_executing_gets_key_in_use(
        self, fake: FakeGateway
    ) -> None:
        request = transfer_request(paid(fake), ready_account(fake))
        inside, go = threading.Event(), threading.Event()

        def slow() -> None:
            inside.set()
            assert go.wait(10)

        during_next_call(fake, "transfer", slow)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(fake.create_transfer, request, idempotency_key="k")
            assert inside.wait(10)
            with pytest.raises(IdempotencyKeyInUseError) as caught:
                fake.create_transfer(request, idempotency_key="k")
            assert fake.movements == []  # the first call has not taken effect yet
            go.set()
            made = first.result(timeout=10)

        assert caught.value.outcome_unknown
        assert fake.create_transfer(request, idempotency_key="k") == made
        assert [m.ref for m in fake.movements] == [made.ref]

    def test_other_keys_are_served_while_a_call_executes(self, fake: FakeGateway) -> None:
        """The fake's lock is not held while a call waits: other calls go through."""
        payment = paid(fake, 20_000)
        account = ready_account(fake)
        inside, go = threading.Event(), threading.Event()
        during_next_call(fake, "transfer", lambda: (inside.set(), go.wait(10)))
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                fake.create_transfer,
                transfer_request(payment, account, op="op_1"),
                idempotency_key="k1",
            )
            assert inside.wait(10)
            other = fake.create_transfer(
                transfer_request(payment, account, op="op_2"), idempotency_key="k2"
            )
            go.set()
            made = first.result(timeout=10)

        assert [m.ref for m in fake.movements] == [other.ref, made.ref]

    def test_the_same_key_from_inside_the_call_gets_key_in_use_then_the_answer(
        self, fake: FakeGateway
    ) -> None:
        """What `recover()` meets when it resends while the first request still runs."""
        request = transfer_request(paid(fake), ready_account(fake))
        seen: list[object] = []

        def resend() -> None:
            try:
                seen.append(fake.create_transfer(request, idempotency_key="k"))
            except IdempotencyKeyInUseError as exc:
                seen.append(exc)

        during_next_call(fake, "transfer", resend, when="before")
        during_next_call(fake, "transfer", resend, when="after")
        made = fake.create_transfer(request, idempotency_key="k")

        assert isinstance(seen[0], IdempotencyKeyInUseError)
        assert seen[1] == made  # once executed, the key replays the stored answer
        assert isinstance(made, TransferSnapshot)
        assert len(fake.movements) == 1

    def test_a_failure_queued_while_the_call_waits_applies_to_it(self, fake: FakeGateway) -> None:
        """``unavailable`` queued from inside the call: the request is lost, nothing stored."""
        request = transfer_request(paid(fake), ready_account(fake))
        during_next_call(fake, "transfer", lambda: fake.fail_next("transfer", "unavailable"))

        with pytest.raises(GatewayUnavailableError) as caught:
            fake.create_transfer(request, idempotency_key="k")

        assert caught.value.code == "connection_error"
        assert fake.movements == []
        made = fake.create_transfer(request, idempotency_key="k")
        assert [m.ref for m in fake.movements] == [made.ref]
