"""Test controls for what else happens: injected failures, refunds held and settled,
disputes, fraud warnings, and refunds and reversals made outside the library.
"""

from __future__ import annotations

from typing import Final

from bountyescrow.domain.gateway_objects import FraudWarningSnapshot
from bountyescrow.domain.money import Money
from bountyescrow.testing import _fake_stripe_json as sj
from bountyescrow.testing._fake_gateway._effects import _Effects
from bountyescrow.testing._fake_gateway._failures import (
    _MODES_BY_KIND,
    FailureKind,
    FailureMode,
)
from bountyescrow.testing._fake_gateway._state import _as_control_error, _control_error
from bountyescrow.testing._fake_stripe_json import DisputeRecord, FraudWarningRecord

#: What Stripe charges for a dispute, in minor units (the US fee; the fake uses it everywhere).
DISPUTE_FEE: Final = 1500


class _IncidentControls(_Effects):
    """What a test makes go wrong, or happen outside the library, after the money moved."""

    # --- controls: failures and refunds -----------------------------------------------------

    def fail_next(
        self, kind: FailureKind, error: FailureMode = "unavailable", times: int = 1
    ) -> None:
        """Make the next call(s) of `kind` fail.

        `kind` is ``payment`` (create_payment), ``cancel``, ``transfer``, ``refund``,
        ``reversal`` or ``account`` (create_account). `error`:

        - ``unavailable``: a connection error before Stripe saw anything; nothing is stored
          under the key (`GatewayUnavailableError`).
        - ``server_error``: a 500 with no effect, stored under the key and replayed
          (`GatewayUnavailableError`, ``replayed=True`` on the replay).
        - ``timeout_after_effect``: the call takes effect (object, movement, events), then the
          answer is lost (`GatewayUnavailableError`); a retry with the key gets the object.
        - ``declined``: `PaymentDeclinedError` for payments, else `GatewayRejectedError`;
          stored under the key.
        - ``invalid``: `GatewayRejectedError` (a validation error, not stored).
        - ``destination_not_ready`` (transfer): `DestinationNotReadyError`.
        - ``balance_insufficient`` (transfer): the platform balance does not cover the
          transfer, `PlatformBalanceInsufficientError` (not stored: the same key works once
          the balance is topped up).
        - ``insufficient_balance`` (transfer: the same as ``balance_insufficient``; refund:
          the platform balance, `GatewayRejectedError`; reversal: the payee's balance,
          `InsufficientPayeeBalanceError`).
        - ``idempotency_mismatch``: `IdempotencyMismatchError`.
        - ``key_in_use``: `IdempotencyKeyInUseError`, Stripe's 409 for a key whose first
          request is still running; nothing happens and nothing is stored.
        - ``pending`` (refund only): the refund is created ``pending``.

        ``unavailable``, ``idempotency_mismatch`` and ``key_in_use`` hit the very next call;
        the others hit the next call Stripe would execute (a replay of a stored answer does not
        use them up).

        Raises:
            ValueError: unknown kind, or an error that does not apply to it.
        """
        allowed = _MODES_BY_KIND.get(kind)
        if allowed is None:
            raise ValueError(f"unknown kind {kind!r}: use one of {sorted(_MODES_BY_KIND)}")
        if error not in allowed:
            raise ValueError(f"{error!r} does not apply to {kind!r}: use one of {sorted(allowed)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._failures[kind].extend([error] * times)

    def hold_refunds(self, hold: bool = True) -> None:
        """While on, refunds are created ``pending`` (settle them with `settle_refund`)."""
        with self._lock:
            self._hold_refunds = hold

    def settle_refund(
        self,
        refund_ref: str,
        succeeded: bool = True,
        *,
        failure_reason: str = "expired_or_canceled_card",
    ) -> None:
        """Finish a refund: ``pending`` -> ``succeeded`` (``refund.updated``,
        ``charge.refund.updated``) or -> ``failed`` (``refund.failed``,
        ``charge.refund.updated``). A succeeded refund may still fail late.

        Raises:
            FakeControlError: unknown refund, or it is already in the asked state or failed.
        """
        with self._lock:
            refund = self._refunds.get(refund_ref)
            if refund is None:
                _control_error(f"no refund {refund_ref!r}", "resource_missing")
            if refund.status in ("failed", "canceled") or (
                succeeded and refund.status == "succeeded"
            ):
                _control_error(
                    f"cannot settle {refund_ref}: it is {refund.status}", "refund_unexpected_state"
                )
            if succeeded:
                refund.status = "succeeded"
                self._queue_refund_events(refund, ("refund.updated", "charge.refund.updated"))
            else:
                refund.status = "failed"
                refund.failure_reason = failure_reason
                refund.failure_balance_transaction = self._next_id("txn")
                self._queue_refund_events(refund, ("refund.failed", "charge.refund.updated"))

    # --- controls: disputes, fraud, changes made outside ------------------------------------

    def open_dispute(
        self,
        payment_ref: str,
        amount: Money | None = None,
        inquiry: bool = False,
        reason: str = "fraudulent",
    ) -> str:
        """The payer disputes the payment: queues ``charge.dispute.created`` and, unless it is
        an inquiry, ``charge.dispute.funds_withdrawn`` (a balance transaction of ``-amount``
        plus a 1500 fee, the fee excluded from `DisputeSnapshot.funds_withdrawn`).

        Returns:
            The dispute's id (``dp_0001``).

        Raises:
            FakeControlError: the PaymentIntent has no successful charge.
            ValueError: a bad amount.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            charge = self._control_charge(pi)
            disputed = self._control_amount(pi, amount) if amount is not None else charge.amount
            dispute = DisputeRecord(
                id=self._next_id("dp"),
                amount=disputed,
                charge=charge.id,
                payment_intent=pi.id,
                created=self._ts(),
                reason=reason,
                status="warning_needs_response" if inquiry else "needs_response",
                inquiry=inquiry,
            )
            self._disputes[dispute.id] = dispute
            charge.disputes.append(dispute)
            self._queue_dispute(dispute, "charge.dispute.created")
            if not inquiry:
                self._dispute_txn(dispute, -disputed.amount, DISPUTE_FEE, "dispute")
                self._queue_dispute(dispute, "charge.dispute.funds_withdrawn")
            return dispute.id

    def close_dispute(
        self, payment_ref: str, won: bool = False, *, dispute_ref: str | None = None
    ) -> None:
        """Close the PaymentIntent's latest open dispute (or `dispute_ref`).

        Won: ``charge.dispute.funds_reinstated`` then ``charge.dispute.closed`` (``won``);
        lost: ``charge.dispute.closed`` (``lost``); an inquiry closes as ``warning_closed``.

        Raises:
            FakeControlError: no open dispute on that PaymentIntent.
        """
        with self._lock:
            candidates = [
                d
                for d in self._disputes.values()
                if d.payment_intent == payment_ref
                and d.open
                and (dispute_ref is None or d.id == dispute_ref)
            ]
            if not candidates:
                _control_error(f"no open dispute on {payment_ref}", "resource_missing")
            dispute = candidates[-1]
            if dispute.inquiry:
                dispute.status = "warning_closed"
            elif won:
                self._dispute_txn(dispute, dispute.amount.amount, 0, "dispute_reversal")
                dispute.status = "won"
                self._queue_dispute(dispute, "charge.dispute.funds_reinstated")
            else:
                dispute.status = "lost"
            self._queue_dispute(dispute, "charge.dispute.closed")

    def early_fraud_warning(self, payment_ref: str) -> str:
        """Radar flags the charge; queues ``radar.early_fraud_warning.created``.

        Returns:
            The warning's id (``issfr_0001``).

        Raises:
            FakeControlError: the PaymentIntent has no successful charge.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            charge = self._control_charge(pi)
            warning = FraudWarningRecord(
                id=self._next_id("issfr"), charge=charge.id, payment_intent=pi.id,
                created=self._ts(),
            )  # fmt: skip
            snapshot = FraudWarningSnapshot(
                ref=warning.id, charge_ref=charge.id, payment_ref=pi.id, actionable=True
            )
            self._enqueue(
                "radar.early_fraud_warning.created",
                sj.fraud_warning_json(warning, livemode=self._livemode),
                snapshot,
            )
            return warning.id

    def refund_outside(
        self, payment_ref: str, amount: Money | None = None, *, pending: bool = False
    ) -> str:
        """Someone refunds in the Dashboard (no bountyescrow metadata), succeeded at once;
        queues ``charge.refunded``, ``refund.created`` and ``charge.refund.updated``.

        Args:
            amount: default: everything not refunded yet.
            pending: the refund is created ``pending`` (the bank has yet to confirm; Stripe
                has taken the money from the balance already); finish it with
                `settle_refund`.

        Returns:
            The refund's id.

        Raises:
            FakeControlError: Stripe would refuse it (see `create_refund`); `code` says why.
        """
        with self._lock, _as_control_error():
            pi = self._pi(payment_ref)
            if amount is None:
                charge = self._refundable_charge(pi)
                amount = Money(charge.amount.amount - charge.amount_refunded, pi.amount.currency)
            refund = self._refund(
                payment_ref, amount, {}, reason="requested_by_customer", pending=pending
            )
            self._queue_refund_events(
                refund, ("charge.refunded", "refund.created", "charge.refund.updated")
            )
            return refund.id

    def reverse_outside(self, transfer_ref: str, amount: Money | None = None) -> str:
        """Someone reverses a transfer in the Dashboard; queues ``transfer.reversed``.

        Args:
            amount: default: everything not reversed yet.

        Returns:
            The reversal's id.

        Raises:
            FakeControlError: Stripe would refuse it (see `create_reversal`); `code` says why
                (``balance_insufficient`` when the payee's balance does not cover it).
        """
        with self._lock, _as_control_error():
            transfer = self._get(self._transfers, transfer_ref, "transfer")
            if amount is None:
                amount = Money(
                    transfer.amount.amount - transfer.amount_reversed, transfer.amount.currency
                )
            return self._reverse(transfer_ref, amount, {}).id
