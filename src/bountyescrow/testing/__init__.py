"""The testing kit: real, small implementations of the ports for a host's own tests.

`InMemoryStore` keeps state in memory; `FakeGateway` behaves like Stripe where it matters
(idempotency keys, payments, transfers, refunds, reversals, disputes, webhooks) and can
inject failures; `ManualClock` is a clock tests move by hand; `during_next_call` runs code
while a gateway call is in flight. `books_agree` checks a service's books against what really
moved at a `FakeGateway` (`GatewayBooks`): the money oracle.
"""

from bountyescrow.testing._clock import ManualClock
from bountyescrow.testing._fake_gateway import (
    FakeControlError,
    FakeGateway,
    Movement,
    during_next_call,
)
from bountyescrow.testing._memory_store import InMemoryStore
from bountyescrow.testing._oracle import EscrowMoney, GatewayBooks, GatewayMovement, books_agree

__all__ = [
    "EscrowMoney",
    "FakeControlError",
    "FakeGateway",
    "GatewayBooks",
    "GatewayMovement",
    "InMemoryStore",
    "ManualClock",
    "Movement",
    "books_agree",
    "during_next_call",
]
