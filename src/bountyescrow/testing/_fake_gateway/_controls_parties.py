"""Test controls for the payer and the payees: payments succeed, fail, process or are paid
twice; accounts finish onboarding, are restricted, disconnect or pay out.
"""

from __future__ import annotations

from typing import Any, Final

from bountyescrow.domain.gateway_objects import PayoutSnapshot
from bountyescrow.domain.money import Money
from bountyescrow.testing import _fake_stripe_json as sj
from bountyescrow.testing._fake_gateway._accounts_v2 import account_v2_json
from bountyescrow.testing._fake_gateway._effects import _Effects
from bountyescrow.testing._fake_gateway._state import _UNEXPECTED_STATE, _control_error
from bountyescrow.testing._fake_stripe_json import PaymentIntentRecord, PayoutRecord

_PAYABLE: Final = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "processing"}
)


class _PartyControls(_Effects):
    """What a test makes the payer and the payees do."""

    # --- controls: the payer ----------------------------------------------------------------

    def pay(self, payment_ref: str, amount: Money | None = None, *, force: bool = False) -> None:
        """The payer's payment succeeds; queues ``payment_intent.succeeded``.

        Args:
            payment_ref: a PaymentIntent awaiting payment (or processing).
            amount: what was received (default: the PaymentIntent's amount); more than the
                amount simulates an overpayment.
            force: pay a *cancelled* PaymentIntent anyway. Stripe never lets a cancelled
                PaymentIntent succeed; use this only to reach the state "a success arrives for
                an escrow the library cancelled", which the service must still handle.

        Raises:
            FakeControlError: unknown PaymentIntent (``resource_missing``), or it cannot
                be paid (``payment_intent_unexpected_state``: it succeeded, so use
                `pay_again` for a second payment, or it is cancelled).
            ValueError: `amount` is not positive Money in the PaymentIntent's currency.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE and not (force and pi.status == "canceled"):
                hint = " (use pay_again for a second payment)" if pi.status == "succeeded" else ""
                _control_error(
                    f"You cannot confirm PaymentIntent {payment_ref} because it has a status "
                    f"of {pi.status}{hint}.",
                    _UNEXPECTED_STATE,
                )
            self._succeed(pi, self._control_amount(pi, amount))
            self._queue_payment(pi, "payment_intent.succeeded")

    def decline(self, payment_ref: str, message: str = "Your card was declined.") -> None:
        """The payment fails (a failed charge, ``last_payment_error``); queues
        ``payment_intent.payment_failed``. The PaymentIntent can be paid later.

        Raises:
            FakeControlError: unknown PaymentIntent, or not awaiting payment.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE:
                _control_error(
                    f"cannot decline {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE
                )
            charge = self._pending_charge(pi)
            charge.status = "failed"
            charge.failure_code = "card_declined"
            charge.failure_message = message
            pi.status = "requires_payment_method"
            pi.last_payment_error = {
                "charge": charge.id,
                "code": "card_declined",
                "decline_code": "generic_decline",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": message,
                "param": None,
                "payment_method": {"id": charge.payment_method, "object": "payment_method",
                                   "type": "card"},
                "type": "card_error",
            }  # fmt: skip
            self._queue_payment(pi, "payment_intent.payment_failed")

    def process(self, payment_ref: str) -> None:
        """A delayed payment method (bank debit) starts; queues ``payment_intent.processing``.

        Follow with `pay` (it succeeds) or `decline` (it fails).

        Raises:
            FakeControlError: unknown PaymentIntent, or not awaiting payment.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE - {"processing"}:
                _control_error(
                    f"cannot process {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE
                )
            self._pending_charge(pi)
            pi.status = "processing"
            pi.last_payment_error = None
            self._queue_payment(pi, "payment_intent.processing")

    def pay_again(self, payment_ref: str, amount: Money | None = None) -> str:
        """The payer pays a second time: a new succeeded PaymentIntent with the same metadata
        and transfer group; queues its ``payment_intent.succeeded``.

        Returns:
            The new PaymentIntent's id.

        Raises:
            FakeControlError: unknown PaymentIntent.
            ValueError: a bad amount.
        """
        with self._lock:
            first = self._control_pi(payment_ref)
            ref = self._next_id("pi")
            pi = PaymentIntentRecord(
                id=ref,
                amount=first.amount,
                created=self._ts(),
                client_secret=self._client_secret(ref),
                transfer_group=first.transfer_group,
                metadata=dict(first.metadata),
                payment_method_types=list(first.payment_method_types),
                description=first.description,
                receipt_email=first.receipt_email,
            )
            self._payments[ref] = pi
            self._succeed(pi, self._control_amount(pi, amount))
            self._queue_payment(pi, "payment_intent.succeeded")
            return ref

    def cancel_outside(self, payment_ref: str) -> None:
        """Someone cancels the PaymentIntent in the Dashboard; queues
        ``payment_intent.canceled``.

        Raises:
            FakeControlError: unknown PaymentIntent, or it succeeded, is processing or is
                cancelled.
        """
        with self._lock:
            pi = self._control_pi(payment_ref)
            if pi.status not in _PAYABLE - {"processing"}:
                _control_error(f"cannot cancel {payment_ref}: it is {pi.status}", _UNEXPECTED_STATE)
            self._cancel(pi, reason=None)

    # --- controls: payees -------------------------------------------------------------------

    def complete_onboarding(self, account_ref: str) -> None:
        """The payee finishes onboarding: ``capabilities.transfers`` becomes ``active`` (for
        Accounts v2, the recipient configuration's ``stripe_transfers``); queues
        ``account.updated`` and ``capability.updated`` (Connect events).

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        self._set_transfers(account_ref, "active")

    def restrict(self, account_ref: str) -> None:
        """Stripe needs more information: ``transfers`` goes back to ``inactive`` (Accounts
        v2: ``stripe_transfers`` to ``restricted``); queues
        ``account.updated`` and ``capability.updated``.

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        self._set_transfers(account_ref, "inactive")

    def account_v2_json(self, account_ref: str) -> dict[str, Any]:
        """The account as Stripe's v2 API shows it (``GET /v2/core/accounts/{id}`` with
        ``include=configuration.recipient``), whichever `accounts` the fake was built with.

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        with self._lock:
            return account_v2_json(self._control_account(account_ref), livemode=self._livemode)

    def deauthorize(self, account_ref: str) -> None:
        """The payee disconnects the platform; queues ``account.application.deauthorized``.

        Later transfers to the account raise `DestinationNotReadyError`.

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        with self._lock:
            account = self._control_account(account_ref)
            account.deauthorized = True
            self._enqueue(
                "account.application.deauthorized",
                sj.application_json(),
                self._account_snapshot(account),
                account=account.id,
            )

    def payout(self, account_ref: str, amount: Money, *, failed: bool = False) -> str:
        """The connected account pays `amount` out to its bank; queues ``payout.paid``
        (Connect). With ``failed=True`` the payout fails and the money stays
        (``payout.failed``).

        Returns:
            The payout's id (``po_0001``).

        Raises:
            FakeControlError: unknown account, or `amount` is above the balance.
            ValueError: `amount` is not positive.
        """
        with self._lock:
            account = self._control_account(account_ref)
            have = account.balance.get(amount.currency, 0)
            if amount.amount <= 0:
                raise ValueError(f"a payout must be positive, got {amount}")
            if amount.amount > have:
                _control_error(
                    f"cannot pay out {amount} from {account_ref}: its balance is "
                    f"{Money(have, amount.currency)}",
                    "balance_insufficient",
                )
            if not failed:
                account.balance[amount.currency] = have - amount.amount
            record = PayoutRecord(
                id=self._next_id("po"),
                account=account.id,
                amount=amount,
                created=self._ts(),
                status="failed" if failed else "paid",
                balance_transaction=self._next_id("txn"),
                failure_code="account_closed" if failed else None,
                failure_message="The bank account has been closed." if failed else None,
            )
            snapshot = PayoutSnapshot(
                ref=record.id,
                account_ref=account.id,
                amount=amount,
                status=record.status,
                failure_code=record.failure_code,
            )
            self._enqueue(
                f"payout.{record.status}",
                sj.payout_json(record, livemode=self._livemode),
                snapshot,
                account=account.id,
            )
            return record.id

    def balance(self, account_ref: str, currency: str | None = None) -> Money:
        """The connected account's balance in `currency` (default: its default currency).

        Raises:
            FakeControlError: unknown account (``resource_missing``).
        """
        with self._lock:
            account = self._control_account(account_ref)
            code = currency or account.default_currency
            return Money(account.balance.get(code, 0), code)
