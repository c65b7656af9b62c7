"""`FakeGateway` under concurrent use: one lock guards all state."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bountyescrow.domain.gateway_objects import CreateTransfer
from bountyescrow.testing import FakeGateway

from .support import RecordingService, paid, ready_account, usd

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
