"""`FakeGateway`: a deterministic, in-memory stand-in for Stripe.

It implements `bountyescrow.ports.gateway.PaymentGateway` and behaves like Stripe where the
library's correctness depends on it:

- **Idempotency keys.** The same key and request replay the first answer, a stored 500
  included (`GatewayUnavailableError` with ``replayed=True``); the same key with another request
  raises `IdempotencyMismatchError`; the same key while a first call with it is still running
  (another thread, or a call made from inside it) raises `IdempotencyKeyInUseError`, as
  Stripe's 409 does; keys are forgotten 24 h after first use (by the injected clock). As on
  Stripe, an answer is stored only once the request started executing: a definitive error
  from validation (destination not ready, amount beyond what is refundable or reversible,
  PaymentIntent in the wrong state) is not stored, so the same key works once the cause is
  gone; card declines and server errors are stored.
- **Money rules.** A transfer needs a destination whose ``transfers`` capability is active and,
  with ``source_transaction``, an existing charge in the same currency that still covers it; a
  refund cannot exceed the charge minus earlier refunds, nor touch a charge under a chargeback;
  a reversal cannot exceed what is left of the transfer nor the connected account's balance;
  a PaymentIntent that succeeded or is processing cannot be cancelled. Amounts and metadata
  Stripe refuses (three-decimal currencies not ending in 0, values over 500 characters...)
  are refused before anything happens, by the rules `StripeGateway` uses
  (`bountyescrow.ports.gateway.check_amount`, `check_metadata`), with `RequestRefusedError`.
- **Events.** Everything that happens, through the API or through the control methods a test
  calls (`pay`, `open_dispute`, `refund_outside`...), queues the events Stripe would send to a
  bountyescrow endpoint, both as `GatewayEvent` values (for ``deliver(service)``) and as
  Stripe-shaped JSON signed like Stripe (for ``deliver(dispatcher)``).
- **Movements.** `movements` lists every transfer, refund and reversal that took effect, so a
  test can assert "one movement per operation" however many retries and crashes happened.

Ids are deterministic per instance: ``pi_0001``, ``ch_0001``, ``tr_0001``, ``evt_0001``...
Every method is safe to call from several threads at once.

How the package is built: `FakeGateway` stays one class, and its body is split across private
base classes, one module per area, rather than composed from objects it holds. Every method
works under the one re-entrant lock on the same tables (objects, keys, queued events), an effect
queues events and a control runs effects, and subclasses in tests and benchmarks override one
method (`_next_id`, `get_payment`, `create_transfer`) and rely on every other method going
through the override; separate collaborators would each need the lock, the tables and the
gateway handed back to them. Each base names, in its class line, the bases whose methods it
calls, so what a module needs does not depend on the method resolution order:

- `_state._FakeState`: the lock, the tables, ids, snapshots and lookups (object state);
- `_event_log._EventLog(_FakeState)`: the events list every queued event stays in
  (`iter_events`, for the backfill);
- `_events._Events(_EventLog)`: queued events, webhook signing and delivery, `movements`;
- `_effects._Effects(_Events)`: how transfers, refunds, reversals... change the objects;
- `_idempotency._KeyedCalls(_FakeState)`: idempotency keys, their replay and their expiry;
- `_controls_parties._PartyControls(_Effects)`: the test controls for the payer and payees;
- `_controls_incidents._IncidentControls(_Effects)`: failures, refunds, disputes, outside
  changes;
- `_lists._Lists(_Effects)`: the list calls reconciliation reads (`iter_payments`...,
  `get_balance`) and the controls that make the books disagree (`transfer_outside`,
  `duplicate_transfer`, `payout_platform`, `top_up`, `lose_object`);
- `_gateway.FakeGateway(_PartyControls, _IncidentControls, _Lists, _KeyedCalls)`: the
  port's calls.

What needs no state is plain module code: the failure modes and the errors they turn into
(`_failures`), and the call-hook types with `during_next_call` (`_hooks`).
"""

from bountyescrow.testing._fake_gateway._controls_incidents import DISPUTE_FEE as DISPUTE_FEE
from bountyescrow.testing._fake_gateway._events import Movement
from bountyescrow.testing._fake_gateway._failures import _MODES_BY_KIND as _MODES_BY_KIND
from bountyescrow.testing._fake_gateway._failures import FailureKind, FailureMode
from bountyescrow.testing._fake_gateway._gateway import FakeGateway
from bountyescrow.testing._fake_gateway._hooks import CallHook as CallHook
from bountyescrow.testing._fake_gateway._hooks import CallPhase as CallPhase
from bountyescrow.testing._fake_gateway._hooks import during_next_call as during_next_call
from bountyescrow.testing._fake_gateway._idempotency import KEY_LIFETIME as KEY_LIFETIME
from bountyescrow.testing._fake_gateway._state import (
    DEFAULT_MAX_CALL_DURATION as DEFAULT_MAX_CALL_DURATION,
)
from bountyescrow.testing._fake_gateway._state import FakeControlError

__all__ = [
    "FailureKind",
    "FailureMode",
    "FakeControlError",
    "FakeGateway",
    "Movement",
]
