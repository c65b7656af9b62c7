"""The list calls reconciliation reads (`iter_payments`, `iter_transfers`, `iter_refunds`,
`iter_disputes`, `get_balance`), and the test controls that make the books and the gateway
disagree in the ways only a reconciliation finds: a transfer made outside the library with its
metadata, a second transfer for one operation, the platform balance paid out, an object the
account no longer has. (Lost events are `drop_events`.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Final, TypeVar

import attrs

from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
    CreateTransfer,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.ports.gateway import check_amount, check_metadata, window_bounds
from bountyescrow.testing._fake_gateway._effects import _Effects
from bountyescrow.testing._fake_gateway._state import _as_control_error, _control_error

#: How many objects a list call snapshots under the lock at a time (Stripe's page size).
PAGE: Final = 100

_R = TypeVar("_R")
_S = TypeVar("_S")


@attrs.frozen
class PlatformMove:
    """Money the platform's own balance gained (a top-up) or lost (a payout to its bank)."""

    ref: str
    amount: Money  #: positive for a top-up, negative for a payout
    created: int


class _Lists(_Effects):
    """The list calls and the discrepancy controls of `FakeGateway`."""

    #: Top-ups and payouts of the platform balance, oldest first. A class-level empty default
    #: that the first move replaces on the instance (the constructor is `_FakeState`'s).
    _platform_moves: tuple[PlatformMove, ...] = ()

    # --- PaymentGateway: lists ----------------------------------------------------------------

    def _listed(
        self,
        table: Mapping[str, _R],
        keep: Callable[[_R], bool],
        created: Callable[[_R], int],
        snapshot: Callable[[_R], _S],
        since: datetime | None,
        until: datetime | None,
    ) -> Iterator[_S]:
        """Snapshots of `table`'s records in the window, newest first, a page at a time.

        The window is checked at once (a bad one raises here, not at the first item). Only
        the ids are taken at once; each page is read under the lock, as Stripe reads a page
        at a time (an object changed between two pages is seen as it is then).
        """
        start, end = window_bounds(since, until)
        return self._pages(table, keep, created, snapshot, start, end)

    def _pages(
        self,
        table: Mapping[str, _R],
        keep: Callable[[_R], bool],
        created: Callable[[_R], int],
        snapshot: Callable[[_R], _S],
        start: int | None,
        end: int | None,
    ) -> Iterator[_S]:
        with self._lock:
            refs = list(table)[::-1]
        for first in range(0, len(refs), PAGE):
            with self._lock:
                page = []
                for ref in refs[first : first + PAGE]:
                    record = table.get(ref)
                    if record is None or not keep(record):
                        continue
                    when = created(record)
                    if (start is None or when >= start) and (end is None or when < end):
                        page.append(snapshot(record))
            yield from page

    def iter_payments(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[PaymentSnapshot]:
        """Yield the PaymentIntents created in ``[since, until)`` whose metadata names an
        escrow, newest first.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
        """
        return self._listed(
            self._payments,
            lambda pi: META_ESCROW in pi.metadata,
            lambda pi: pi.created,
            self._payment_snapshot,
            since,
            until,
        )

    def iter_transfers(
        self,
        *,
        transfer_group: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[TransferSnapshot]:
        """Yield the transfers created in ``[since, until)`` (of `transfer_group` when given),
        newest first, with their reversals.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
        """
        return self._listed(
            self._transfers,
            lambda t: transfer_group is None or t.transfer_group == transfer_group,
            lambda t: t.created,
            self._transfer_snapshot,
            since,
            until,
        )

    def iter_refunds(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[RefundSnapshot]:
        """Yield the refunds created in ``[since, until)`` (of `payment_ref` when given),
        newest first, whatever their status.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
        """
        return self._listed(
            self._refunds,
            lambda r: payment_ref is None or r.payment_intent == payment_ref,
            lambda r: r.created,
            self._refund_snapshot,
            since,
            until,
        )

    def iter_disputes(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[DisputeSnapshot]:
        """Yield the disputes created in ``[since, until)`` (of `payment_ref` when given),
        newest first.

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
        """
        return self._listed(
            self._disputes,
            lambda d: payment_ref is None or d.payment_intent == payment_ref,
            lambda d: d.created,
            self._dispute_snapshot,
            since,
            until,
        )

    def get_balance(self) -> dict[str, Money]:
        """The platform balance per currency, from every object that moved its money.

        Succeeded charges come in; refunds (unless failed or cancelled) and transfers go out;
        reversals come back; disputes take their balance transactions, the 15.00 dispute fee
        included; `top_up` and `payout_platform` add and take. The fake charges no processing
        fees. Everything counts as available at once.
        """
        totals: defaultdict[str, int] = defaultdict(int)
        with self._lock:
            for charge in self._charges.values():
                if charge.status == "succeeded":
                    totals[charge.amount.currency] += charge.amount.amount
            for refund in self._refunds.values():
                if refund.counts:
                    totals[refund.amount.currency] -= refund.amount.amount
            for transfer in self._transfers.values():
                totals[transfer.amount.currency] -= transfer.amount.amount
                for reversal in transfer.reversals:
                    totals[reversal.amount.currency] += reversal.amount.amount
            for dispute in self._disputes.values():
                for txn in dispute.balance_transactions:
                    totals[txn.currency] += txn.amount - txn.fee
            for move in self._platform_moves:
                totals[move.amount.currency] += move.amount.amount
        return {currency: Money(amount, currency) for currency, amount in sorted(totals.items())}

    # --- controls: what a reconciliation must find ----------------------------------------------

    def transfer_outside(
        self,
        destination: str,
        amount: Money,
        *,
        escrow_id: str | None = None,
        operation_id: str | None = None,
        transfer_group: str | None = None,
        namespace: str | None = None,
        source_transaction: str | None = None,
    ) -> str:
        """Someone transfers from the platform balance outside the library (a script, the API)
        with bountyescrow's metadata: `escrow_id`, `operation_id` and `namespace` become
        ``bountyescrow_escrow_id``, ``bountyescrow_operation_id`` and
        ``bountyescrow_namespace`` when given. Queues ``transfer.created`` and is a movement.

        Returns:
            The transfer's id.

        Raises:
            FakeControlError: Stripe would refuse it (an account not ready, an unknown
                charge...); `code` says why.
            RequestRefusedError: an amount or metadata Stripe refuses.
        """
        metadata = {
            key: value
            for key, value in (
                (META_ESCROW, escrow_id),
                (META_OPERATION, operation_id),
                (META_NAMESPACE, namespace),
            )
            if value is not None
        }
        request = CreateTransfer(
            amount=amount,
            destination=destination,
            source_transaction=source_transaction,
            transfer_group=transfer_group or (f"escrow_{escrow_id}" if escrow_id else ""),
            metadata=metadata,
        )
        check_amount(request.action, amount)
        check_metadata(request.action, metadata)
        with self._lock, _as_control_error():
            transfer = self._transfer(request)
            transfer.transfer_group = transfer.transfer_group or None
            return transfer.id

    def duplicate_transfer(self, transfer_ref: str) -> str:
        """A second transfer like `transfer_ref` (same amount, destination, group and
        metadata, so it names the same operation), from the platform balance: what a retry
        with a new idempotency key would do. Queues ``transfer.created``.

        Returns:
            The new transfer's id.

        Raises:
            FakeControlError: unknown transfer, or Stripe would refuse it.
        """
        with self._lock:
            first = self._transfers.get(transfer_ref)
            if first is None:
                _control_error(f"no transfer {transfer_ref!r}", "resource_missing")
            request = CreateTransfer(
                amount=first.amount,
                destination=first.destination,
                source_transaction=None,
                transfer_group=first.transfer_group or "",
                metadata=dict(first.metadata),
            )
            with _as_control_error():
                return self._transfer(request).id

    def payout_platform(self, amount: Money) -> str:
        """Stripe pays `amount` of the platform balance out to the platform's bank (what an
        automatic payout schedule does to escrowed money). No event is queued.

        Returns:
            The payout's id (``po_0001``).

        Raises:
            ValueError: `amount` is not positive.
        """
        return self._move_platform("po", amount, -1)

    def top_up(self, amount: Money) -> str:
        """The platform adds `amount` to its balance from its bank (a Stripe top-up).

        Returns:
            The top-up's id (``tu_0001``).

        Raises:
            ValueError: `amount` is not positive.
        """
        return self._move_platform("tu", amount, 1)

    def _move_platform(self, prefix: str, amount: Money, sign: int) -> str:
        if not isinstance(amount, Money) or amount.amount <= 0:
            raise ValueError(f"amount must be positive Money, got {amount!r}")
        with self._lock:
            move = PlatformMove(
                self._next_id(prefix), Money(sign * amount.amount, amount.currency), self._ts()
            )
            self._platform_moves = (*self._platform_moves, move)
            return move.ref

    def lose_object(self, ref: str) -> None:
        """The account no longer has the object `ref` (a PaymentIntent, transfer, reversal,
        refund or dispute): reads answer ``resource_missing`` and lists leave it out. What a
        database restored into another environment, or a key of another account, looks like
        from the books. What the object moved stays in `movements`.

        Raises:
            FakeControlError: no object with that id.
        """
        with self._lock:
            if self._payments.pop(ref, None) is not None:
                return
            transfer = self._transfers.pop(ref, None)
            if transfer is not None:
                for undone in transfer.reversals:
                    self._reversals.pop(undone.id, None)
                return
            reversal = self._reversals.pop(ref, None)
            if reversal is not None:
                parent = self._transfers.get(reversal.transfer)
                if parent is not None:
                    parent.reversals.remove(reversal)
                return
            refund = self._refunds.pop(ref, None)
            if refund is not None:
                charge = self._charges.get(refund.charge)
                if charge is not None:
                    charge.refunds.remove(refund)
                return
            dispute = self._disputes.pop(ref, None)
            if dispute is not None:
                charge = self._charges.get(dispute.charge)
                if charge is not None:
                    charge.disputes.remove(dispute)
                return
            _control_error(f"no object {ref!r} to lose", "resource_missing")
