"""`FakeGateway`: a deterministic, in-memory stand-in for Stripe (see `_gateway`).

The package re-exports what the ``_fake_gateway`` module offered, so every import of it keeps
working.
"""

from bountyescrow.testing._fake_gateway._gateway import _MODES_BY_KIND as _MODES_BY_KIND
from bountyescrow.testing._fake_gateway._gateway import (
    DEFAULT_MAX_CALL_DURATION as DEFAULT_MAX_CALL_DURATION,
)
from bountyescrow.testing._fake_gateway._gateway import DISPUTE_FEE as DISPUTE_FEE
from bountyescrow.testing._fake_gateway._gateway import KEY_LIFETIME as KEY_LIFETIME
from bountyescrow.testing._fake_gateway._gateway import CallHook as CallHook
from bountyescrow.testing._fake_gateway._gateway import CallPhase as CallPhase
from bountyescrow.testing._fake_gateway._gateway import (
    FailureKind,
    FailureMode,
    FakeControlError,
    FakeGateway,
    Movement,
)
from bountyescrow.testing._fake_gateway._gateway import during_next_call as during_next_call

__all__ = [
    "FailureKind",
    "FailureMode",
    "FakeControlError",
    "FakeGateway",
    "Movement",
]
