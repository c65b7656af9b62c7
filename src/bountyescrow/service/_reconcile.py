"""Reconciliation: the books compared with the gateway's own objects, and safe repair.

`reconcile()` reads the gateway's objects, a window of them through its list endpoints (a
request per page, never one per escrow) or those of a few escrows, and compares each with what
the books say about it (`_reconcile_checks`): the funding PaymentIntent, the transfers of
releases with their reversals, refunds, disputes. It then walks the books, a page of escrows
per unit of work, for objects they name that no list showed, fetches those, and compares the
platform balance with the reserve. No unit of work is open while the gateway is read.

Each disagreement is a `Discrepancy` (`_reconcile_report`). With ``repair=True`` those that
only need the books to learn what the gateway did (a missed payment, refund outcome, reversal
or dispute) are applied as their webhooks would have been: `EventApplier.apply_object` in one
unit of work, then `OperationDriver.after_commit`. Repair never moves money: an object whose
booking would start a gateway call (a surplus refunded at once) is rolled back and left to a
person, and releases an applied object lets go (a dispute closed) are left to the next
`recover()`.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import attrs

from bountyescrow._alerts import alert
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.gateway_objects import GatewayObject
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.errors import (
    BountyEscrowError,
    ConfigurationError,
    GatewayError,
    GatewayRejectedError,
)
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service._applier import Applied, EventApplier
from bountyescrow.service._context import ServiceContext, log
from bountyescrow.service._driver import OperationDriver
from bountyescrow.service._reads import Reads
from bountyescrow.service._reconcile_checks import (
    MISSING,
    REFUNDS,
    REVERSALS,
    At,
    ObjectChecks,
    Run,
    refs,
)
from bountyescrow.service._reconcile_report import DiscrepancyKind, ReconciliationReport

#: A window's end, when not given: objects younger than this are left to their webhooks.
GRACE: Final = timedelta(minutes=5)
#: Escrows read per unit of work while walking the books; gateway objects compared per unit.
PAGE: Final = 200
#: The list methods a gateway needs for `reconcile` (`PaymentGateway`'s list block).
LIST_METHODS: Final = (
    "iter_payments",
    "iter_transfers",
    "iter_refunds",
    "iter_disputes",
    "get_balance",
)

_T = TypeVar("_T")


@attrs.frozen
class _Expected:
    """A gateway object the books name, to be fetched because no list showed it."""

    what: str  #: payment, transfer, refund, reversal, dispute
    ref: str
    escrow_id: str
    operation_id: str | None
    #: For reversals: the transfer they belong to.
    transfer_ref: str | None = None


class _WouldSendError(Exception):
    """Applying an object would start a gateway call: the repair is rolled back."""


def _batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Reconciler:
    """Compares the books with the gateway, for `EscrowService.reconcile`."""

    def __init__(
        self, ctx: ServiceContext, applier: EventApplier, reads: Reads, driver: OperationDriver
    ) -> None:
        self.ctx = ctx
        self.applier = applier
        self.reads = reads
        self.driver = driver
        self.checks = ObjectChecks(ctx.namespace)

    def reconcile(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        escrow_ids: Sequence[str] | None = None,
        repair: bool = False,
    ) -> ReconciliationReport:
        """See `EscrowService.reconcile`."""
        lacking = [m for m in LIST_METHODS if not callable(getattr(self.ctx.gateway, m, None))]
        if lacking:
            raise ConfigurationError(
                f"{type(self.ctx.gateway).__name__} cannot be reconciled: it lacks the list "
                f"methods of PaymentGateway ({', '.join(lacking)})"
            )
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} must be an aware datetime (with a time zone)")
        if isinstance(escrow_ids, str):
            raise TypeError("escrow_ids must be a sequence of escrow ids, not one string")
        started = time.monotonic()
        now = self.ctx.now()
        if escrow_ids is not None:
            run = Run(now=now, since=None, until=None)
            for escrow_id in dict.fromkeys(escrow_ids):
                self._escrow(run, escrow_id)
        else:
            defaulted = until is None
            until = now - GRACE if until is None else until
            if since is not None and until < since:
                raise ValueError(
                    f"until ({until}{', five minutes ago' if defaulted else ''}) is before "
                    f"since ({since})"
                )
            run = Run(now=now, since=since, until=until)
            self._window(run)
            self._reserve(run)
        if repair:
            self._repair(run)
        report = ReconciliationReport(
            discrepancies=tuple(f.discrepancy for f in run.findings),
            escrows_checked=run.escrows_checked,
            objects_read=run.objects_read,
            duration=timedelta(seconds=time.monotonic() - started),
            errors=tuple(run.errors),
            since=run.since,
            until=run.until,
        )
        self._announce(report)
        return report

    @staticmethod
    def _announce(report: ReconciliationReport) -> None:
        for found in report.unresolved:
            alert(
                "reconciliation_discrepancy",
                "%s: escrow %s, operation %s, gateway %s: the books say %s; the gateway says "
                "%s. %s (%s)",
                found.kind.value,
                found.escrow_id,
                found.operation_id,
                found.gateway_ref,
                found.ours,
                found.theirs,
                found.action,
                found.runbook,
                discrepancy=found.kind.value,
                escrow_id=found.escrow_id,
                operation_id=found.operation_id,
                gateway_ref=found.gateway_ref,
            )
        log.info(
            "reconciliation: %d escrows, %d gateway objects, %d discrepancies (%d repaired), "
            "%d errors",
            report.escrows_checked,
            report.objects_read,
            len(report.discrepancies),
            len(report.repaired),
            len(report.errors),
            extra={"reconciliation": report.counts()},
        )

    # --- scopes -------------------------------------------------------------------------------

    def _window(self, run: Run) -> None:
        """Every object the gateway lists in the window, then the books' side of it."""
        gateway: Any = self.ctx.gateway
        window = {"since": run.since, "until": run.until}
        self._compare(
            run,
            itertools.chain(
                gateway.iter_payments(**window),
                gateway.iter_transfers(**window),
                gateway.iter_refunds(**window),
                gateway.iter_disputes(**window),
            ),
        )
        after: str | None = None
        while True:
            ids, expected = self.ctx.read(functools.partial(self._books_page, run=run, after=after))
            if not ids:
                return
            run.escrows_checked += len(ids)
            self._fetch_expected(run, expected)
            after = ids[-1]

    def _escrow(self, run: Run, escrow_id: str) -> None:
        """The objects of one escrow, fetched by its payments and its transfer group."""
        escrow = self.ctx.read(lambda uow: uow.escrows.get(escrow_id))
        if escrow is None:
            run.errors.append(f"{escrow_id}: no such escrow")
            return
        run.escrows_checked += 1
        ops = self.ctx.read(lambda uow: uow.operations.for_escrow(escrow_id))
        payments = {op.gateway_ref for op in ops if op.kind is OperationKind.FUNDING}
        payments.add(escrow.payment_ref)
        try:
            self._compare(run, self._objects_of(escrow, sorted(r for r in payments if r)))
        except GatewayError as exc:
            run.errors.append(f"{escrow_id}: reading its objects: {type(exc).__name__}: {exc}")
            return
        expected = self.ctx.read(lambda uow: self._expected(uow, run, escrow_id))
        self._fetch_expected(run, expected)

    def _objects_of(self, escrow: Escrow, payments: list[str]) -> Iterator[GatewayObject]:
        gateway: Any = self.ctx.gateway
        for ref in payments:
            try:
                yield gateway.get_payment(ref)
            except GatewayRejectedError as exc:
                if exc.code != "resource_missing":
                    raise  # a missing one is reported by the books' side
        yield from gateway.iter_transfers(transfer_group=escrow.transfer_group)
        for ref in payments:
            yield from gateway.iter_refunds(payment_ref=ref)
            yield from gateway.iter_disputes(payment_ref=ref)

    # --- the gateway's side: each object against the books --------------------------------------

    def _compare(self, run: Run, objects: Iterable[GatewayObject]) -> None:
        """Compare `objects` with the books, a batch per unit of work."""
        for batch in _batched(objects, PAGE):
            run.objects_read += len(batch)
            for obj in batch:
                run.seen.update(refs(obj))
            self.ctx.read(functools.partial(self._check_batch, run=run, batch=batch))

    def _check_batch(self, uow: UnitOfWork, run: Run, batch: list[GatewayObject]) -> None:
        for obj in batch:
            self.checks.check(uow, run, obj)

    # --- the books' side: objects they name that no list showed --------------------------------

    def _books_page(
        self, uow: UnitOfWork, run: Run, after: str | None
    ) -> tuple[list[str], list[_Expected]]:
        ids = uow.escrows.ids(after=after, limit=PAGE)
        return ids, [item for i in ids for item in self._expected(uow, run, i)]

    @staticmethod
    def _expected(uow: UnitOfWork, run: Run, escrow_id: str) -> list[_Expected]:
        """The gateway objects the escrow's books name, in the window, that were not read."""
        ops = uow.operations.for_escrow(escrow_id)
        by_id = {op.id: op for op in ops}
        expected = [
            item
            for op in ops
            if op.gateway_ref is not None
            and op.gateway_ref not in run.seen
            and run.in_window(op.created_at, op.updated_at, op.sent_at)
            and (item := _expectation(op, by_id)) is not None
        ]
        disputes: list[Dispute] = uow.disputes.for_escrow(escrow_id)
        expected += [
            _Expected("dispute", d.id, escrow_id, None)
            for d in disputes
            if d.id not in run.seen and run.in_window(d.created_at, d.updated_at)
        ]
        return expected

    def _fetch_expected(self, run: Run, expected: Iterable[_Expected]) -> None:
        gateway = self.ctx.gateway
        for item in expected:
            if item.ref in run.seen:
                continue  # read meanwhile (a transfer fetched for another of its reversals)
            at = At(item.escrow_id, item.ref, item.operation_id)
            try:
                obj: GatewayObject
                if item.what == "payment":
                    obj = gateway.get_payment(item.ref)
                elif item.what == "transfer":
                    obj = gateway.get_transfer(item.ref)
                elif item.what == "refund":
                    obj = gateway.get_refund(item.ref)
                elif item.what == "dispute":
                    obj = gateway.get_dispute(item.ref)
                else:
                    obj = gateway.get_transfer(item.transfer_ref or "")
            except GatewayRejectedError as exc:
                if exc.code != "resource_missing":
                    run.errors.append(f"{item.escrow_id}: reading {item.what} {item.ref}: {exc}")
                    continue
                absent = item.transfer_ref if item.what == "reversal" else item.ref
                run.add(
                    DiscrepancyKind.MISSING_OBJECT,
                    at,
                    ours=f"{item.what} {item.ref} booked",
                    theirs=f"no such object {absent}",
                    action=MISSING,
                )
                continue
            except GatewayError as exc:
                run.errors.append(f"{item.escrow_id}: reading {item.what} {item.ref}: {exc}")
                continue
            if item.what == "reversal" and item.ref not in refs(obj):
                run.add(
                    DiscrepancyKind.MISSING_OBJECT,
                    at,
                    ours=f"reversal {item.ref} of transfer {item.transfer_ref} booked",
                    theirs="the transfer has no such reversal",
                    action=MISSING,
                )
            self._compare(run, [obj])

    # --- the platform balance -----------------------------------------------------------------

    def _reserve(self, run: Run) -> None:
        try:
            balance: dict[str, Money] = self.ctx.gateway.get_balance()
        except GatewayError as exc:
            run.errors.append(f"reading the platform balance: {exc}")
            return
        for currency in sorted(self.ctx.settings.settlement_currencies | set(balance)):
            reserve = self.reads.required_reserve(currency)
            have = balance.get(currency, Money.zero(currency))
            if reserve.is_positive and have < reserve:
                run.add(
                    DiscrepancyKind.RESERVE_BREACH,
                    At(None, currency),
                    ours=f"escrows hold {reserve}",
                    theirs=f"balance (available + pending) {have}",
                    action="escrowed money left the platform balance: top the balance up now; "
                    "make payouts manual, or cap them at the balance minus required_reserve()",
                )

    # --- repair -------------------------------------------------------------------------------

    def _repair(self, run: Run) -> None:
        """Apply what each repairable finding adopts, once per object, as a webhook would;
        then compare the applied objects again: a discrepancy is repaired only once the books
        no longer show it."""
        applied: dict[str, GatewayObject] = {}
        tried: set[str] = set()
        for finding in run.findings:
            obj = finding.adopt
            if obj is None:
                continue
            key = f"{type(obj).__name__}:{obj.ref}"
            if key not in tried:
                tried.add(key)
                if self._adopt(run, obj):
                    applied[key] = obj
        if not applied:
            return
        again = Run(now=self.ctx.now(), since=None, until=None)
        self.ctx.read(functools.partial(self._check_batch, run=again, batch=list(applied.values())))
        for index, finding in enumerate(run.findings):
            obj = finding.adopt
            if obj is None or f"{type(obj).__name__}:{obj.ref}" not in applied:
                continue
            found = finding.discrepancy
            if (found.kind.value, found.gateway_ref, found.operation_id) in again.keys:
                run.errors.append(
                    f"repairing with {obj.ref}: the books still disagree ({found.kind.value})"
                )
                continue
            run.findings[index] = attrs.evolve(
                finding, discrepancy=attrs.evolve(found, repaired=True)
            )

    def _adopt(self, run: Run, obj: GatewayObject) -> bool:
        def work(uow: UnitOfWork) -> Applied:
            applied = self.applier.apply_object(uow, obj)
            if applied.drive:
                raise _WouldSendError(", ".join(applied.drive))
            return applied

        try:
            applied = self.ctx.tx(work)
        except _WouldSendError as exc:
            run.errors.append(
                f"repairing with {obj.ref}: booking it would send operations {exc}; rolled "
                f"back, left to a person"
            )
            return False
        except BountyEscrowError as exc:
            run.errors.append(f"repairing with {obj.ref}: {type(exc).__name__}: {exc}")
            return False
        log.warning(
            "reconciliation adopted %s %s",
            type(obj).__name__,
            obj.ref,
            extra={"gateway_ref": obj.ref},
        )
        # Its events go to the hooks as after a webhook; releases it lets go (a dispute closed)
        # are left to the next recover(), so that repair itself sends nothing.
        self.driver.after_commit(Applied(status=applied.status, events=applied.events))
        return True


def _expectation(op: Operation, by_id: dict[str, Operation]) -> _Expected | None:
    """The gateway object a booked operation names, if it must exist."""
    assert op.gateway_ref is not None
    succeeded = op.status is OperationStatus.SUCCEEDED
    what: str | None = None
    transfer_ref: str | None = None
    if op.kind is OperationKind.FUNDING and succeeded:
        what = "payment"
    elif op.kind is OperationKind.RELEASE and succeeded:
        what = "transfer"
    elif op.kind in REFUNDS:
        what = "refund"
    elif op.kind in REVERSALS and succeeded:
        target = by_id.get(op.target_id or "")
        transfer_ref = target.gateway_ref if target else None
        what = "reversal" if transfer_ref else None
    if what is None:
        return None
    return _Expected(what, op.gateway_ref, op.escrow_id, op.id, transfer_ref)
