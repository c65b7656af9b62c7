"""Object state: the tables of Stripe objects, idempotency keys and queued events a
`FakeGateway` holds under its one lock, the snapshots it answers with, and the lookups every
other part uses.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Final, Literal, NoReturn, TypeVar

import attrs

from bountyescrow.domain.gateway_objects import (
    META_OPERATION,
    AccountSnapshot,
    DisputeSnapshot,
    GatewayEvent,
    PaymentSnapshot,
    RefundSnapshot,
    ReversalSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.errors import GatewayRejectedError
from bountyescrow.ports.clock import Clock, SystemClock
from bountyescrow.testing._fake_gateway._accounts_v2 import (
    account_v2_json,
    account_v2_snapshot,
)
from bountyescrow.testing._fake_gateway._failures import _MODES_BY_KIND, _StoredError
from bountyescrow.testing._fake_gateway._hooks import CallHook
from bountyescrow.testing._fake_stripe_json import (
    JSON,
    AccountRecord,
    ChargeRecord,
    DisputeRecord,
    PaymentIntentRecord,
    RefundRecord,
    ReversalRecord,
    TransferRecord,
)

#: What `FakeGateway.max_call_duration` says unless told otherwise.
DEFAULT_MAX_CALL_DURATION: Final = timedelta(seconds=5)
#: The error code Stripe gives a PaymentIntent in the wrong state for a request.
_UNEXPECTED_STATE: Final = "payment_intent_unexpected_state"

_T = TypeVar("_T")


@attrs.define
class _KeyEntry:
    fingerprint: str
    first_used: datetime
    answer: object = None
    error: _StoredError | None = None


@attrs.frozen
class _Queued:
    event: GatewayEvent
    payload: JSON


def _metadata_op(metadata: Mapping[str, str]) -> str | None:
    return metadata.get(META_OPERATION)


class FakeControlError(ValueError):
    """A test control of `FakeGateway` does not apply: unknown object, wrong state, more than
    is left. `code` is the code Stripe gives the same refusal (``resource_missing``,
    ``payment_intent_unexpected_state``...).

    It is a `ValueError` on purpose, not a `GatewayError`: it reports a mistake in the test's
    script, never something the library under test should handle.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _control_error(message: str, code: str) -> NoReturn:
    raise FakeControlError(message, code=code)


@contextmanager
def _as_control_error() -> Iterator[None]:
    """Report a refusal met while driving the fake as the test's mistake, not the library's."""
    try:
        yield
    except GatewayRejectedError as exc:
        raise FakeControlError(exc.message, code=exc.code or "invalid_request") from exc


class _FakeState:
    """What every part of `FakeGateway` shares: the lock, the tables, ids, snapshots, lookups.

    `FakeGateway` documents the constructor's arguments.
    """

    def __init__(
        self,
        webhook_secret: str = "whsec_test",
        *,
        clock: Clock | None = None,
        livemode: bool = False,
        platform_country: str = "US",
        cross_border_agreement: Literal["full", "recipient"] = "full",
        accounts: Literal["v1", "v2"] = "v1",
        signing_clock: Clock | None = None,
        max_call_duration: timedelta = DEFAULT_MAX_CALL_DURATION,
    ) -> None:
        if not webhook_secret:
            raise ValueError("webhook_secret must not be empty (use e.g. 'whsec_test')")
        if not isinstance(max_call_duration, timedelta) or max_call_duration <= timedelta(0):
            raise ValueError(
                f"max_call_duration must be a positive timedelta, got {max_call_duration!r}"
            )
        self._max_call_duration = max_call_duration
        self.webhook_secret = webhook_secret
        if cross_border_agreement not in ("full", "recipient"):
            raise ValueError(
                f"cross_border_agreement must be 'full' or 'recipient', "
                f"got {cross_border_agreement!r}"
            )
        if accounts not in ("v1", "v2"):
            raise ValueError(f"accounts must be 'v1' or 'v2', got {accounts!r}")
        self.accounts: Literal["v1", "v2"] = accounts
        self.platform_country = platform_country.upper()
        self.cross_border_agreement = cross_border_agreement
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._signing_clock: Clock = signing_clock if signing_clock is not None else SystemClock()
        self._livemode = livemode
        self._lock = threading.RLock()
        self._counters: dict[str, int] = {}
        self._keys: dict[str, _KeyEntry] = {}
        #: Keys of calls Stripe is still executing (it answers 409 to a second one).
        self._in_flight: set[str] = set()
        #: Run during every keyed call, without the lock (see `CallHook`).
        self._call_hooks: list[CallHook] = []
        self._failures: dict[str, deque[str]] = {kind: deque() for kind in _MODES_BY_KIND}
        self._hold_refunds = False
        self._queue: list[_Queued] = []
        #: Every payload ever queued, oldest first: the events list (`_event_log`).
        self._event_log: deque[JSON] = deque()
        self._movements: list[tuple[str, object]] = []
        self._payments: dict[str, PaymentIntentRecord] = {}
        self._charges: dict[str, ChargeRecord] = {}
        self._refunds: dict[str, RefundRecord] = {}
        self._transfers: dict[str, TransferRecord] = {}
        self._reversals: dict[str, ReversalRecord] = {}
        self._disputes: dict[str, DisputeRecord] = {}
        self._accounts: dict[str, AccountRecord] = {}

    # --- snapshots --------------------------------------------------------------------------

    def _payment_snapshot(self, pi: PaymentIntentRecord) -> PaymentSnapshot:
        error = pi.last_payment_error
        return PaymentSnapshot(
            ref=pi.id,
            status=pi.status,
            amount=pi.amount,
            amount_received=Money(pi.amount_received, pi.amount.currency),
            charge_ref=pi.latest_charge.id if pi.latest_charge else None,
            metadata=pi.metadata,
            client_secret=pi.client_secret,
            last_error=str(error["message"]) if error else None,
            livemode=self._livemode,
        )

    @staticmethod
    def _reversal_snapshot(reversal: ReversalRecord) -> ReversalSnapshot:
        return ReversalSnapshot(
            ref=reversal.id,
            amount=reversal.amount,
            transfer_ref=reversal.transfer,
            metadata=reversal.metadata,
        )

    def _transfer_snapshot(self, transfer: TransferRecord) -> TransferSnapshot:
        return TransferSnapshot(
            ref=transfer.id,
            amount=transfer.amount,
            destination=transfer.destination,
            transfer_group=transfer.transfer_group,
            metadata=transfer.metadata,
            source_transaction=transfer.source_transaction,
            reversals=tuple(self._reversal_snapshot(r) for r in transfer.reversals),
        )

    @staticmethod
    def _refund_snapshot(refund: RefundRecord) -> RefundSnapshot:
        return RefundSnapshot(
            ref=refund.id,
            amount=refund.amount,
            status=refund.status,
            payment_ref=refund.payment_intent,
            metadata=refund.metadata,
            failure_reason=refund.failure_reason,
        )

    @staticmethod
    def _dispute_snapshot(dispute: DisputeRecord) -> DisputeSnapshot:
        currency = dispute.amount.currency
        amounts = [t.amount for t in dispute.balance_transactions]
        return DisputeSnapshot(
            ref=dispute.id,
            payment_ref=dispute.payment_intent,
            charge_ref=dispute.charge,
            amount=dispute.amount,
            status=dispute.status,
            reason=dispute.reason,
            funds_withdrawn=Money(sum(-a for a in amounts if a < 0), currency),
            funds_reinstated=Money(sum(a for a in amounts if a > 0), currency),
            charge_refundable=not dispute.blocks_refunds,
        )

    def _account_snapshot(self, account: AccountRecord) -> AccountSnapshot:
        if self.accounts == "v2":
            return account_v2_snapshot(account_v2_json(account, livemode=self._livemode))
        return AccountSnapshot(
            ref=account.id,
            ready=account.ready,
            metadata=account.metadata,
            deauthorized=account.deauthorized,
        )

    # --- lookups and small helpers ----------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        number = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = number
        return f"{prefix}_{number:04d}"

    def _client_secret(self, ref: str) -> str:
        # Deterministic, and different per fake so a secret from another test never matches.
        tail = hashlib.sha256(f"{ref}:{self.webhook_secret}".encode()).hexdigest()[:24]
        return f"{ref}_secret_{tail}"

    def _ts(self) -> int:
        return int(self._clock.now().timestamp())

    @staticmethod
    def _get(table: Mapping[str, _T], ref: str, what: str) -> _T:
        record = table.get(ref)
        if record is None:
            raise GatewayRejectedError(f"No such {what}: '{ref}'", code="resource_missing")
        return record

    def _pi(self, ref: str) -> PaymentIntentRecord:
        return self._get(self._payments, ref, "payment_intent")

    def _account(self, ref: str) -> AccountRecord:
        return self._get(self._accounts, ref, "account")

    def _control_pi(self, ref: str) -> PaymentIntentRecord:
        pi = self._payments.get(ref)
        if pi is None:
            _control_error(
                f"no PaymentIntent {ref!r} (known: {sorted(self._payments)})", "resource_missing"
            )
        return pi

    def _control_account(self, ref: str) -> AccountRecord:
        account = self._accounts.get(ref)
        if account is None:
            _control_error(
                f"no connected account {ref!r} (known: {sorted(self._accounts)})",
                "resource_missing",
            )
        return account

    @staticmethod
    def _control_charge(pi: PaymentIntentRecord) -> ChargeRecord:
        charge = pi.latest_charge
        if pi.status != "succeeded" or charge is None:
            _control_error(
                f"{pi.id} has no successful charge: it is {pi.status} (pay it first)",
                _UNEXPECTED_STATE,
            )
        return charge

    @staticmethod
    def _control_amount(pi: PaymentIntentRecord, amount: Money | None) -> Money:
        if amount is None:
            return pi.amount
        if not isinstance(amount, Money) or amount.currency != pi.amount.currency:
            raise ValueError(f"amount must be Money in {pi.amount.currency}, got {amount!r}")
        if amount.amount <= 0:
            raise ValueError(f"amount must be positive, got {amount}")
        return amount

    @staticmethod
    def _check_positive(amount: Money, what: str) -> None:
        if amount.amount <= 0:
            raise GatewayRejectedError(
                f"Invalid positive integer: {what} amount {amount.amount}",
                code="parameter_invalid_integer",
            )
