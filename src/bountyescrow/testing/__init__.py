"""The testing kit: real, small implementations of the ports for a host's own tests.

`InMemoryStore` keeps state in memory; `FakeGateway` behaves like Stripe where it matters
(idempotency keys, payments, transfers, refunds, reversals, disputes, webhooks) and can
inject failures; `ManualClock` is a clock tests move by hand.
"""

from bountyescrow.testing._clock import ManualClock
from bountyescrow.testing._fake_gateway import FakeControlError, FakeGateway, Movement
from bountyescrow.testing._memory_store import InMemoryStore

__all__ = ["FakeControlError", "FakeGateway", "InMemoryStore", "ManualClock", "Movement"]
