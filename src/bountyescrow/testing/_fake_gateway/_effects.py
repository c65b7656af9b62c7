"""How the objects change: transfers, reversals, refunds, cancels, charges, capabilities and
dispute balance transactions, each checked as Stripe checks it and queuing its events. The
port's calls and the test controls share these.
"""

from __future__ import annotations

from bountyescrow.domain.gateway_objects import CreateTransfer
from bountyescrow.domain.money import Money
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayRejectedError,
    InsufficientPayeeBalanceError,
)
from bountyescrow.testing import _fake_stripe_json as sj
from bountyescrow.testing._fake_gateway._events import _Events
from bountyescrow.testing._fake_stripe_json import (
    BalanceTransactionRecord,
    ChargeRecord,
    DisputeRecord,
    PaymentIntentRecord,
    RefundRecord,
    ReversalRecord,
    TransferRecord,
)


class _Effects(_Events):
    """The changes to the objects, for the port's calls and the test controls alike."""

    # --- effects ----------------------------------------------------------------------------

    def _transfer(self, request: CreateTransfer) -> TransferRecord:
        account = self._accounts.get(request.destination)
        if account is None:
            raise GatewayRejectedError(
                f"No such destination: '{request.destination}'",
                code="resource_missing",
            )
        amount = request.amount
        self._check_positive(amount, "transfer")
        if not account.ready:
            raise DestinationNotReadyError(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
            )
        if request.source_transaction is not None:
            charge = self._charges.get(request.source_transaction)
            if charge is None or charge.status == "failed":
                raise GatewayRejectedError(
                    f"No such charge: '{request.source_transaction}'", code="resource_missing"
                )
            if charge.amount.currency != amount.currency:
                raise GatewayRejectedError(
                    f"The currency of source_transaction's balance transaction "
                    f"({charge.amount.currency}) must be the same as the transfer currency "
                    f"({amount.currency})",
                    code="parameter_invalid",
                )
            used = sum(
                t.amount.amount - t.amount_reversed
                for t in self._transfers.values()
                if t.source_transaction == charge.id
            )
            if used + amount.amount > charge.amount.amount:
                raise GatewayRejectedError(
                    f"Insufficient funds in source_transaction {charge.id}: "
                    f"{charge.amount.amount - used} left, {amount.amount} asked",
                    code="balance_insufficient",
                )
        transfer = TransferRecord(
            id=self._next_id("tr"),
            amount=amount,
            destination=account.id,
            source_transaction=request.source_transaction,
            transfer_group=request.transfer_group,
            created=self._ts(),
            metadata=dict(request.metadata),
            balance_transaction=self._next_id("txn"),
            destination_payment=self._next_id("py"),
        )
        self._transfers[transfer.id] = transfer
        account.balance[amount.currency] = account.balance.get(amount.currency, 0) + amount.amount
        self._movements.append(("transfer", transfer))
        self._enqueue(
            "transfer.created",
            sj.transfer_json(transfer, livemode=self._livemode),
            self._transfer_snapshot(transfer),
        )
        return transfer

    def _reverse(
        self, transfer_ref: str, amount: Money, metadata: dict[str, str]
    ) -> ReversalRecord:
        transfer = self._get(self._transfers, transfer_ref, "transfer")
        self._check_positive(amount, "reversal")
        if amount.currency != transfer.amount.currency:
            raise GatewayRejectedError(
                f"A reversal of {transfer.id} must be in {transfer.amount.currency}",
                code="parameter_invalid",
            )
        left = transfer.amount.amount - transfer.amount_reversed
        if amount.amount > left:
            raise GatewayRejectedError(
                f"Amount ({amount.amount}) is greater than the remaining amount of the transfer "
                f"({left})",
                code="amount_too_large",
            )
        account = self._accounts[transfer.destination]
        have = account.balance.get(amount.currency, 0)
        if amount.amount > have:
            raise InsufficientPayeeBalanceError(
                f"Insufficient funds in the destination account {account.id} to reverse "
                f"{amount.amount} (balance {have})",
                code="balance_insufficient",
            )
        account.balance[amount.currency] = have - amount.amount
        reversal = ReversalRecord(
            id=self._next_id("trr"),
            amount=amount,
            transfer=transfer.id,
            created=self._ts(),
            metadata=metadata,
            balance_transaction=self._next_id("txn"),
        )
        transfer.reversals.append(reversal)
        self._reversals[reversal.id] = reversal
        self._movements.append(("reversal", reversal))
        self._enqueue(
            "transfer.reversed",
            sj.transfer_json(transfer, livemode=self._livemode),
            self._transfer_snapshot(transfer),
        )
        return reversal

    def _refundable_charge(self, pi: PaymentIntentRecord) -> ChargeRecord:
        charge = pi.latest_charge
        if pi.status != "succeeded" or charge is None or charge.status != "succeeded":
            raise GatewayRejectedError(
                f"This PaymentIntent ({pi.id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        return charge

    def _refund(
        self,
        payment_ref: str,
        amount: Money,
        metadata: dict[str, str],
        *,
        reason: str | None,
        pending: bool = False,
    ) -> RefundRecord:
        pi = self._pi(payment_ref)
        charge = self._refundable_charge(pi)
        self._check_positive(amount, "refund")
        if amount.currency != charge.amount.currency:
            raise GatewayRejectedError(
                f"A refund of {pi.id} must be in {charge.amount.currency}",
                code="parameter_invalid",
            )
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "requested_by_customer",
        ):
            raise GatewayRejectedError(
                f"Invalid refund reason: {reason!r}", code="parameter_invalid"
            )
        if any(d.blocks_refunds for d in charge.disputes):
            raise GatewayRejectedError(
                f"Charge {charge.id} has been charged back; create a refund is not possible.",
                code="charge_disputed",
            )
        left = charge.amount.amount - charge.amount_refunded
        if amount.amount > left:
            raise GatewayRejectedError(
                f"Refund amount ({amount.amount}) is greater than unrefunded amount on charge "
                f"({left})",
                code="amount_too_large" if left else "charge_already_refunded",
            )
        refund = RefundRecord(
            id=self._next_id("re"),
            amount=amount,
            charge=charge.id,
            payment_intent=pi.id,
            created=self._ts(),
            status="pending" if pending else "succeeded",
            metadata=metadata,
            balance_transaction=self._next_id("txn"),
            reason=reason,
        )
        charge.refunds.append(refund)
        self._refunds[refund.id] = refund
        self._movements.append(("refund", refund))
        return refund

    def _cancel(self, pi: PaymentIntentRecord, *, reason: str | None) -> None:
        pi.status = "canceled"
        pi.canceled_at = self._ts()
        pi.cancellation_reason = reason
        self._queue_payment(pi, "payment_intent.canceled")

    def _pending_charge(self, pi: PaymentIntentRecord) -> ChargeRecord:
        """The PaymentIntent's charge in flight, created if there is none."""
        charge = pi.latest_charge
        if charge is not None and charge.status == "pending":
            return charge
        charge = ChargeRecord(
            id=self._next_id("ch"),
            payment_intent=pi.id,
            amount=pi.amount,
            created=self._ts(),
            status="pending",
            payment_method=self._next_id("pm"),
            balance_transaction=None,
            transfer_group=pi.transfer_group,
        )
        self._charges[charge.id] = charge
        pi.latest_charge = charge
        pi.payment_method = charge.payment_method
        return charge

    def _succeed(self, pi: PaymentIntentRecord, amount: Money) -> None:
        charge = self._pending_charge(pi)
        charge.amount = amount
        charge.status = "succeeded"
        charge.balance_transaction = self._next_id("txn")
        pi.status = "succeeded"
        pi.amount_received = amount.amount
        pi.last_payment_error = None
        pi.canceled_at = None
        pi.cancellation_reason = None

    def _set_transfers(self, account_ref: str, status: str) -> None:
        with self._lock:
            account = self._control_account(account_ref)
            if account.transfers == status:
                return
            previous = account.transfers
            account.transfers = status
            snapshot = self._account_snapshot(account)
            self._enqueue(
                "account.updated",
                sj.account_json(account),
                snapshot,
                account=account.id,
                previous={"capabilities": {"transfers": previous}},
            )
            self._enqueue(
                "capability.updated",
                sj.capability_json(account),
                snapshot,
                account=account.id,
                previous={"status": previous},
            )

    def _dispute_txn(self, dispute: DisputeRecord, amount: int, fee: int, category: str) -> None:
        dispute.balance_transactions.append(
            BalanceTransactionRecord(
                id=self._next_id("txn"),
                amount=amount,
                fee=fee,
                currency=dispute.amount.currency,
                created=self._ts(),
                source=dispute.id,
                type="adjustment",
                reporting_category=category,
                description=(
                    f"Chargeback withdrawal for {dispute.charge}"
                    if amount < 0
                    else f"Chargeback reversal for {dispute.charge}"
                ),
            )
        )
