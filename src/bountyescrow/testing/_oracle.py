"""A money oracle: the library's books checked against what really moved at the fake gateway.

`check_invariants()` compares the ledger with itself; it cannot see money that moved twice at
the gateway, or an escrow that still shows money the gateway no longer holds. `FakeGateway`
knows what really happened: every capture, refund, transfer, reversal and dispute balance
transaction. `GatewayBooks.of(fake)` reads that truth, per escrow, and `books_agree(service,
fake)` compares it with the service's books (escrows, operations, ledger, disputes).

Nothing here depends on how the library splits a loss between ``held`` and ``shortfall``:
amounts are compared with what the gateway moved, and "held" with what the gateway still holds
for the escrow.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from bountyescrow.domain import ledger
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    META_NAMESPACE,
    META_OPERATION,
    META_PAYEE,
)
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.errors import EscrowNotFoundError

if TYPE_CHECKING:
    from bountyescrow.service import EscrowService
    from bountyescrow.testing._fake_gateway import FakeGateway

__all__ = ["EscrowMoney", "GatewayBooks", "GatewayMovement", "books_agree"]

#: Refund statuses in which the money has left the platform balance (or is on its way out).
_REFUND_OUT: Final = frozenset({"succeeded", "pending", "requires_action"})
#: Which operation kinds may own each kind of gateway movement.
_OWNERS: Final[Mapping[str, frozenset[OperationKind]]] = {
    "transfer": frozenset({OperationKind.RELEASE}),
    "refund": frozenset({OperationKind.REFUND, OperationKind.EXTERNAL_REFUND}),
    "reversal": frozenset({OperationKind.REVERSAL, OperationKind.EXTERNAL_REVERSAL}),
}


@attrs.frozen
class GatewayMovement:
    """One transfer, refund or reversal at the gateway, attributed to an escrow.

    Attributes:
        kind: ``"transfer"``, ``"refund"`` or ``"reversal"``.
        ref: the gateway object's id.
        amount: what moved, in minor units of the escrow's currency.
        escrow_id: the escrow it belongs to (from metadata, transfer group, PaymentIntent or
            parent transfer); None when it cannot be attributed.
        operation_id: the ``bountyescrow_operation_id`` metadata; None for an object made
            outside the library (Dashboard).
        status: the object's status (refunds: ``pending``, ``succeeded``, ``failed``...).
        account: for transfers and reversals, the connected account.
    """

    kind: str
    ref: str
    amount: int
    escrow_id: str | None
    operation_id: str | None
    status: str = "succeeded"
    account: str | None = None

    @property
    def moved(self) -> bool:
        """True while the money is out of the platform balance (a failed refund came back)."""
        return self.kind != "refund" or self.status in _REFUND_OUT


@attrs.frozen
class EscrowMoney:
    """What the gateway moved for one escrow, in minor units of its currency.

    Attributes:
        captured: per PaymentIntent, what a succeeded charge received.
        refunded: succeeded refunds (pending ones are in `refunds_pending`).
        transferred, reversed: per connected account.
        withdrawn, reinstated: per dispute, from its balance transactions (fees excluded).
    """

    escrow_id: str
    currency: str
    captured: Mapping[str, int]
    refunded: int
    refunds_pending: int
    transferred: Mapping[str, int]
    reversed: Mapping[str, int]
    withdrawn: Mapping[str, int]
    reinstated: Mapping[str, int]

    @property
    def funded(self) -> int:
        """Everything captured for the escrow."""
        return sum(self.captured.values())

    @property
    def paid_out(self) -> int:
        """Transfers minus reversals, over every account."""
        return sum(self.transferred.values()) - sum(self.reversed.values())

    @property
    def dispute_lost(self) -> int:
        """Withdrawn minus reinstated, over every dispute."""
        return sum(self.withdrawn.values()) - sum(self.reinstated.values())

    def net_to(self, account: str) -> int:
        """Transferred minus reversed for one connected account."""
        return self.transferred.get(account, 0) - self.reversed.get(account, 0)

    def holds(self, fees: int) -> int:
        """What the gateway still holds for the escrow once the platform kept `fees`.

        Pending refunds count as gone: Stripe takes them from the balance when created.
        """
        return (
            self.funded - self.refunded - self.refunds_pending - self.paid_out - self.dispute_lost
        ) - fees


@attrs.frozen
class GatewayBooks:
    """The fake gateway's truth about money, read once (`GatewayBooks.of`).

    Attributes:
        escrows: per escrow id, what moved for it.
        movements: every transfer, refund and reversal, attributed where possible.
        payees: connected account -> the payee id in its metadata.
        payment_escrows: PaymentIntent -> escrow id.
    """

    escrows: Mapping[str, EscrowMoney]
    movements: tuple[GatewayMovement, ...]
    payees: Mapping[str, str]
    payment_escrows: Mapping[str, str]

    @classmethod
    def of(cls, fake: FakeGateway, *, namespace: str | None = None) -> GatewayBooks:
        """Read `fake`'s objects. With `namespace`, objects of another namespace are skipped.

        The fake's records are read directly (under its lock, so a consistent moment):
        this module ships beside it and knows its shape.
        """
        with fake._lock:
            return cls._read(fake, namespace)

    @classmethod
    def _read(cls, fake: FakeGateway, namespace: str | None) -> GatewayBooks:
        def ours(metadata: Mapping[str, str]) -> bool:
            found = metadata.get(META_NAMESPACE)
            return namespace is None or found is None or found == namespace

        currency: dict[str, str] = {}
        captured: dict[str, dict[str, int]] = defaultdict(dict)
        by_group: dict[str, str] = {}
        payment_escrows: dict[str, str] = {}
        for pi in fake._payments.values():
            escrow_id = pi.metadata.get(META_ESCROW)
            if escrow_id is None or not ours(pi.metadata):
                continue
            payment_escrows[pi.id] = escrow_id
            currency.setdefault(escrow_id, pi.amount.currency)
            if pi.transfer_group:
                by_group[pi.transfer_group] = escrow_id
            charge = pi.latest_charge
            if pi.status == "succeeded" and charge is not None and charge.status == "succeeded":
                captured[escrow_id][pi.id] = charge.amount.amount

        movements: list[GatewayMovement] = []
        refunded: Counter[str] = Counter()
        pending: Counter[str] = Counter()
        for refund in fake._refunds.values():
            if not ours(refund.metadata):
                continue
            escrow_id = payment_escrows.get(refund.payment_intent)
            movements.append(
                GatewayMovement(
                    "refund",
                    refund.id,
                    refund.amount.amount,
                    escrow_id,
                    refund.metadata.get(META_OPERATION),
                    refund.status,
                )
            )
            if escrow_id is not None and refund.status == "succeeded":
                refunded[escrow_id] += refund.amount.amount
            elif escrow_id is not None and refund.status in _REFUND_OUT:
                pending[escrow_id] += refund.amount.amount

        transferred: dict[str, Counter[str]] = defaultdict(Counter)
        reversed_: dict[str, Counter[str]] = defaultdict(Counter)
        for transfer in fake._transfers.values():
            if not ours(transfer.metadata):
                continue
            escrow_id = transfer.metadata.get(META_ESCROW) or by_group.get(
                transfer.transfer_group or ""
            )
            if escrow_id is not None:
                currency.setdefault(escrow_id, transfer.amount.currency)
                transferred[escrow_id][transfer.destination] += transfer.amount.amount
            movements.append(
                GatewayMovement(
                    "transfer",
                    transfer.id,
                    transfer.amount.amount,
                    escrow_id,
                    transfer.metadata.get(META_OPERATION),
                    account=transfer.destination,
                )
            )
            for reversal in transfer.reversals:
                if escrow_id is not None:
                    reversed_[escrow_id][transfer.destination] += reversal.amount.amount
                movements.append(
                    GatewayMovement(
                        "reversal",
                        reversal.id,
                        reversal.amount.amount,
                        escrow_id,
                        reversal.metadata.get(META_OPERATION),
                        account=transfer.destination,
                    )
                )

        withdrawn: dict[str, dict[str, int]] = defaultdict(dict)
        reinstated: dict[str, dict[str, int]] = defaultdict(dict)
        for dispute in fake._disputes.values():
            escrow_id = payment_escrows.get(dispute.payment_intent)
            if escrow_id is None:
                continue
            amounts = [t.amount for t in dispute.balance_transactions]
            withdrawn[escrow_id][dispute.id] = sum(-a for a in amounts if a < 0)
            reinstated[escrow_id][dispute.id] = sum(a for a in amounts if a > 0)

        escrows = {
            escrow_id: EscrowMoney(
                escrow_id=escrow_id,
                currency=code,
                captured=dict(captured.get(escrow_id, {})),
                refunded=refunded[escrow_id],
                refunds_pending=pending[escrow_id],
                transferred=dict(transferred.get(escrow_id, {})),
                reversed=dict(reversed_.get(escrow_id, {})),
                withdrawn=dict(withdrawn.get(escrow_id, {})),
                reinstated=dict(reinstated.get(escrow_id, {})),
            )
            for escrow_id, code in currency.items()
        }
        payees = {
            account.id: account.metadata[META_PAYEE]
            for account in fake._accounts.values()
            if META_PAYEE in account.metadata
        }
        return cls(
            escrows=escrows,
            movements=tuple(movements),
            payees=payees,
            payment_escrows=payment_escrows,
        )


def books_agree(
    service: EscrowService,
    fake: FakeGateway | GatewayBooks,
    *,
    settled: bool = True,
    undelivered: bool | None = None,
) -> list[str]:
    """Compare the service's books with what really moved at `fake`; return the problems.

    `fake` may also be what `GatewayBooks.of(fake, namespace=...)` read from a fake that
    lives in another process (read it there, hand the `GatewayBooks` over).

    Per escrow and in total: funded == captured (per PaymentIntent too); refunded == refunded
    at the gateway; released net per payee == transferred minus reversed to that payee's
    account; dispute_withdrawn == withdrawn minus reinstated (per dispute too); the ledger's
    ``gateway:`` and ``payee:`` accounts say the same; held minus shortfall == what the gateway
    still holds for the escrow; at most one gateway movement per operation, of the operation's
    kind, escrow, amount and payee; no movement the books do not know; and the escrow never
    shows as held (beyond what operations in flight reserve) money the gateway no longer holds
    for it.

    Args:
        settled: True (the default) once every queued event was delivered and `recover()`
            ran past every lease and backoff: then the books must agree exactly, and an
            operation still open may only be one that has not moved money (a release waiting
            for its payee) or a refund the gateway itself still has pending. False in the
            middle of a run: an operation in flight may have moved money already ("gateway
            moved, books pending") and events not yet delivered are not booked yet, so only
            what can never be right is reported: a second movement for one operation, money
            moved for an operation the books say failed or was cancelled, a movement that does
            not match its operation or names none the books know, more funded than captured,
            and (when no event is on its way) held money the gateway no longer has.
        undelivered: with ``settled=False``, whether events may still be on their way to the
            service; default: whether the fake has events queued (False for `GatewayBooks`).
            A test that takes events out of the fake to deliver them later says True while it
            holds some.

    Returns:
        Human-readable problems, each naming the escrow, operation or gateway object; empty
        when the books agree.
    """
    if isinstance(fake, GatewayBooks):
        books, undelivered = fake, bool(undelivered)
    else:
        books = GatewayBooks.of(fake, namespace=service.namespace)
        if undelivered is None:
            undelivered = bool(fake.pending_events)
    return _Comparison(service, books, settled=settled, undelivered=undelivered).run()


@attrs.define
class _Comparison:
    service: EscrowService
    books: GatewayBooks
    settled: bool
    undelivered: bool
    problems: list[str] = attrs.Factory(list)
    #: Every operation of every escrow compared, by id.
    operations: dict[str, Operation] = attrs.Factory(dict)
    #: Per currency, the books' totals over every escrow.
    totals: dict[str, Counter[str]] = attrs.Factory(lambda: defaultdict(Counter))

    def run(self) -> list[str]:
        for escrow_id in sorted(set(self.books.escrows) | set(self._escrow_ids())):
            self._escrow(escrow_id)
        self._movements()
        if self.settled:
            self._totals()
        return self.problems

    def _escrow_ids(self) -> list[str]:
        """Every escrow in the store, through the store port, page by page."""
        found: list[str] = []
        while True:
            with self.service.store.unit_of_work() as uow:
                page = uow.escrows.ids(after=found[-1] if found else None, limit=500)
            if not page:
                return found
            found += page

    def _compare(self, escrow_id: str, what: str, books: int, gateway: int) -> None:
        if self.settled and books != gateway:
            self.problems.append(f"{escrow_id}: {what}: books {books}, gateway {gateway}")

    def _escrow(self, escrow_id: str) -> None:
        service = self.service
        try:
            escrow = service.get(escrow_id)
        except EscrowNotFoundError:
            self.problems.append(f"{escrow_id}: the gateway has objects of it, the books no escrow")
            return
        ops = service.operations(escrow_id)
        entries = service.ledger(escrow_id)
        self.operations.update((op.id, op) for op in ops)
        truth = self.books.escrows.get(escrow_id) or EscrowMoney(
            escrow_id, escrow.currency, {}, 0, 0, {}, {}, {}, {}
        )
        e = escrow.id
        succeeded = [op for op in ops if op.status is OperationStatus.SUCCEEDED]
        balances = ledger.balances(entries)

        # What came in: the gateway's captures only grow, so the books can never be ahead.
        self._compare(e, "funded vs captured", escrow.funded.amount, truth.funded)
        if not self.settled and escrow.funded.amount > truth.funded:
            self.problems.append(
                f"{e}: funded {escrow.funded.amount}, the gateway captured {truth.funded}"
            )
        funding = {op.gateway_ref: op for op in succeeded if op.kind is OperationKind.FUNDING}
        for payment_ref, amount in truth.captured.items():
            op = funding.get(payment_ref)
            if op is None and self.settled:
                self.problems.append(f"{e}: {payment_ref} captured {amount}, no funding booked")
            elif op is not None and op.gross.amount != amount:
                self.problems.append(f"{e}: {payment_ref} captured {amount}, booked {op.gross}")
        for payment_ref in sorted(str(r) for r in funding.keys() - truth.captured.keys()):
            self.problems.append(f"{e}: funding booked for {payment_ref}, which captured nothing")

        # What went back to the payer.
        refunds = sum(
            op.gross.amount
            for op in succeeded
            if op.kind in (OperationKind.REFUND, OperationKind.EXTERNAL_REFUND)
        )
        self._compare(e, "succeeded refund operations vs refunds", refunds, truth.refunded)
        self._compare(e, "refunded vs refunds", escrow.refunded.amount, truth.refunded)

        # What went to payees, and came back from them.
        books_by_payee: Counter[str] = Counter()
        for op in succeeded:
            if op.kind is OperationKind.RELEASE:
                books_by_payee[op.payee_id or ""] += op.net.amount
            elif op.kind in (OperationKind.REVERSAL, OperationKind.EXTERNAL_REVERSAL):
                books_by_payee[op.payee_id or ""] -= op.net.amount
        gateway_by_payee: Counter[str] = Counter()
        for account in truth.transferred.keys() | truth.reversed.keys():
            gateway_by_payee[self.books.payees.get(account, account)] += truth.net_to(account)
        for payee in sorted(books_by_payee.keys() | gateway_by_payee.keys()):
            net = gateway_by_payee[payee]
            self._compare(e, f"paid to {payee} (net)", books_by_payee[payee], net)
            in_ledger = balances.get((ledger.payee_account(payee), escrow.currency), 0)
            self._compare(e, f"ledger payee:{payee}", in_ledger, net)
        paid_out = escrow.released.amount - escrow.fees.amount
        self._compare(e, "released - fees vs transferred - reversed", paid_out, truth.paid_out)

        # What disputes took.
        lost = escrow.dispute_withdrawn.amount
        self._compare(e, "dispute_withdrawn vs withdrawn - reinstated", lost, truth.dispute_lost)
        booked = {d.id: d for d in service.disputes(escrow_id)}
        for dispute_ref, withdrawn in sorted(truth.withdrawn.items()):
            reinstated = truth.reinstated.get(dispute_ref, 0)
            dispute = booked.get(dispute_ref)
            if dispute is None:
                if withdrawn or reinstated:
                    self._compare(e, f"dispute {dispute_ref} (not booked) withdrawn", 0, withdrawn)
                continue
            self._compare(e, f"dispute {dispute_ref} withdrawn", dispute.withdrawn.amount,
                          withdrawn)  # fmt: skip
            self._compare(e, f"dispute {dispute_ref} reinstated", dispute.reinstated.amount,
                          reinstated)  # fmt: skip

        # The ledger's gateway account: money in minus money back to the payer or the bank.
        gateway_side = -balances.get((ledger.gateway_account(escrow.currency), escrow.currency), 0)
        expected = truth.funded - truth.refunded - truth.dispute_lost
        self._compare(e, "ledger gateway account", gateway_side, expected)

        self._held(escrow, ops, truth)

        total = self.totals[escrow.currency]
        total["funded"] += escrow.funded.amount
        total["refunded"] += refunds
        total["paid out"] += paid_out
        total["lost in disputes"] += lost

    def _held(self, escrow: Escrow, ops: list[Operation], truth: EscrowMoney) -> None:
        """The escrow never shows as held money the gateway no longer holds for it."""
        moved = {(m.kind, m.operation_id): m for m in self.books.movements if m.moved}
        in_flight = 0  # reserved by operations that may be at the gateway right now
        moved_in_flight = 0  # what those have already taken out at the gateway
        for op in ops:
            if op.status is not OperationStatus.PENDING or not op.reserves.is_positive:
                continue
            in_flight += op.reserves.amount
            kind = "transfer" if op.kind is OperationKind.RELEASE else "refund"
            movement = moved.get((kind, op.id))
            if movement is not None:
                moved_in_flight += movement.amount
        gateway_holds = truth.holds(escrow.fees.amount) + moved_in_flight
        books = escrow.held.amount - escrow.shortfall.amount
        if self.settled and books != gateway_holds:
            self.problems.append(
                f"{escrow.id}: held {escrow.held.amount} - shortfall {escrow.shortfall.amount} "
                f"= {books}, the gateway holds {gateway_holds} for it"
            )
        free_in_books = escrow.held.amount - in_flight
        free_at_gateway = max(0, gateway_holds - in_flight)
        if free_in_books > free_at_gateway and (self.settled or not self.undelivered):
            self.problems.append(
                f"{escrow.id}: shows {free_in_books} held beyond operations in flight "
                f"(available or waiting for a payee); the gateway holds {free_at_gateway} of it"
            )

    def _movements(self) -> None:
        """Every gateway movement is known to the books, once, as the right operation."""
        per_op = Counter(
            (m.kind, m.operation_id) for m in self.books.movements if m.operation_id is not None
        )
        for (kind, op_id), n in sorted(per_op.items()):
            if n > 1:
                self.problems.append(f"operation {op_id}: {n} gateway {kind}s (one at most)")
        by_ref = {(op.kind, op.gateway_ref): op for op in self.operations.values()}
        for m in self.books.movements:
            where = f"{m.escrow_id or '?'}: {m.kind} {m.ref} ({m.amount}, {m.status})"
            if m.escrow_id is None:
                self.problems.append(f"{where}: belongs to no escrow the gateway knows")
                continue
            owners = _OWNERS[m.kind]
            op = self.operations.get(m.operation_id) if m.operation_id else None
            if op is None:
                op = next((o for k in sorted(owners) if (o := by_ref.get((k, m.ref)))), None)
            if op is None:
                if m.operation_id is not None:
                    self.problems.append(f"{where}: names operation {m.operation_id}, unknown")
                elif self.settled and m.moved:
                    self.problems.append(f"{where}: made outside the library, never adopted")
                continue
            if op.kind not in owners or op.escrow_id != m.escrow_id:
                self.problems.append(
                    f"{where}: booked as {op.kind.value} {op.id} of escrow {op.escrow_id}"
                )
                continue
            self._matches(where, m, op)

    def _matches(self, where: str, m: GatewayMovement, op: Operation) -> None:
        say = self.problems.append
        expected = op.gross.amount if m.kind == "refund" else op.net.amount
        # An outside reversal beyond what the books had left to reverse is booked capped; the
        # per-payee comparison reports the difference.
        if m.amount != expected and op.kind is not OperationKind.EXTERNAL_REVERSAL:
            say(f"{where}: operation {op.id} moves {expected}")
        payee = self.books.payees.get(m.account or "")
        if payee is not None and op.payee_id is not None and payee != op.payee_id:
            say(f"{where}: went to {payee}, operation {op.id} pays {op.payee_id}")
        status = op.status
        if m.status == "succeeded":
            if status is OperationStatus.SUCCEEDED and op.gateway_ref != m.ref:
                say(f"{where}: operation {op.id} booked {op.gateway_ref} instead")
            elif status.open and self.settled:
                say(f"{where}: operation {op.id} still {status.value} after recovery")
            elif not status.open and status is not OperationStatus.SUCCEEDED:
                say(f"{where}: money moved, operation {op.id} is {status.value}")
        elif m.moved:  # a refund the gateway has pending: the operation must wait for it
            if not status.open:
                say(f"{where}: pending at the gateway, operation {op.id} is {status.value}")
        elif status is OperationStatus.SUCCEEDED and self.settled:  # failed: the money is back
            say(f"{where}: failed at the gateway, operation {op.id} is succeeded")

    def _totals(self) -> None:
        gateway: dict[str, Counter[str]] = defaultdict(Counter)
        for money in self.books.escrows.values():
            total = gateway[money.currency]
            total["funded"] += money.funded
            total["refunded"] += money.refunded
            total["paid out"] += money.paid_out
            total["lost in disputes"] += money.dispute_lost
        for currency in sorted(self.totals.keys() | gateway.keys()):
            books, truth = self.totals[currency], gateway[currency]
            for what in ("funded", "refunded", "paid out", "lost in disputes"):
                if books[what] != truth[what]:
                    self.problems.append(
                        f"total {what} in {currency}: books {books[what]}, gateway {truth[what]}"
                    )
