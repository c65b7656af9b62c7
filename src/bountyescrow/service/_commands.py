"""The commands on escrows (the money-moving ones run intent, call, record: DESIGN §7).

Seven commands, each its validation, its `decide` function for step 1 and its sending; kept in
one module (about 600 lines) because they share the runner and read alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from bountyescrow.domain import transitions as tr
from bountyescrow.domain.escrow import Escrow, EscrowStatus
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import (
    PaymentSnapshot,
)
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.transitions import Outcome
from bountyescrow.errors import (
    BountyEscrowError,
    EscrowExistsError,
    GatewayError,
    InvalidTransitionError,
    OperationNotFoundError,
    PayeeNotFoundError,
    ReversalFailedError,
    ValidationError,
)
from bountyescrow.ports.policy import Actor
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service import _idempotency as idem
from bountyescrow.service import _validation as valid
from bountyescrow.service._context import Denied, ServiceContext, log, new_id
from bountyescrow.service._driver import KeyHolder, OperationDriver
from bountyescrow.service._gateway_alerts import credentials_refused
from bountyescrow.service._reads import Reads
from bountyescrow.service._runner import CommandRunner, Started


class _ChargeUnknownError(Exception):
    """Step 1 of a release found its escrow without a charge id (see `_fetch_release_source`)."""

    def __init__(self, escrow: Escrow) -> None:
        super().__init__(f"escrow {escrow.id} has no charge id recorded")
        self.escrow = escrow


def _needs_charge(escrow: Escrow) -> bool:
    """A funded escrow a release could start from, but whose funding recorded no charge."""
    return (
        escrow.charge_ref is None
        and escrow.payment_ref is not None
        and escrow.funded.is_positive
        and not escrow.frozen
    )


class EscrowCommands:
    """The commands on escrows: open, cancel, release, refund, reverse, cancel a waiting
    release, clear a fraud warning. Each validates, runs step 1 through the runner, then sends
    the operation through the driver. `EscrowService` documents them for hosts.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        runner: CommandRunner,
        driver: OperationDriver,
        reads: Reads,
        fees: FeeSchedule,
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.driver = driver
        self.reads = reads
        self.fees = fees

    # --- opening and cancelling ---------------------------------------------------------------

    def open_escrow(
        self,
        *,
        bounty_id: str,
        poster_id: str,
        amount: Money,
        actor: Actor,
        request_id: str | None = None,
        allow_additional: bool = False,
        description: str | None = None,
        receipt_email: str | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Escrow:
        """Open an escrow for a bounty and create the payment the poster will confirm.

        See `EscrowService.open_escrow`.
        """
        actor = valid.actor_of(actor)
        valid.metadata_id(bounty_id, "bounty_id")
        valid.text(poster_id, "poster_id")
        money = valid.money(amount, "amount", self.ctx.settings, charge=True)
        assert money is not None
        fixed = self.fees.fixed
        if fixed is not None and fixed.amount and fixed.currency != money.currency:
            raise ValidationError(
                f"the fee schedule's fixed fee is {fixed}, but the escrow would be in "
                f"{money.currency}; a release could never take it. Open escrows in "
                f"{fixed.currency}, or use a fee schedule without a fixed fee in another currency"
            )
        now = self.ctx.now()
        params: dict[str, Any] = {
            "bounty_id": bounty_id,
            "poster_id": poster_id,
            "amount": money,
            "request_id": request_id,
            "allow_additional": allow_additional,
            "description": description,
            "receipt_email": receipt_email,
        }
        print_ = idem.fingerprint("open", params)
        escrow_id, op_id = new_id("esc"), new_id("op")
        committed: list[DomainEvent] = []

        def work(uow: UnitOfWork) -> Started | Denied | BountyEscrowError:
            replay = self.runner.replayed(uow, actor, idempotency_key, "open", print_, now)
            if replay is not None:
                return replay
            decision = self.ctx.policy.decide(actor, "open", None, {**params, "now": now})
            if not decision.allowed:
                return self.ctx.deny(uow, actor, "open", None, decision.reason, correlation_id)
            if not allow_additional:
                # Concurrent opens of one (bounty, poster) run one after the other from here,
                # so the second sees the first's escrow (READ COMMITTED reads it anew).
                uow.escrows.lock_bounty(bounty_id, poster_id)
                for other in uow.escrows.find(bounty_id=bounty_id, poster_id=poster_id):
                    if other.is_open:
                        exc = EscrowExistsError(
                            f"escrow {other.id} for bounty {bounty_id!r} and poster "
                            f"{poster_id!r} is {other.status.value}; use it, or pass "
                            "allow_additional=True for a second one",
                            existing_id=other.id,
                        )
                        return self.runner.refused(
                            uow, exc, actor, idempotency_key, "open", print_, now
                        )
            escrow = Escrow.new(
                id=escrow_id,
                bounty_id=bounty_id,
                poster_id=poster_id,
                amount=money,
                fee_schedule=self.fees,
                created_at=now,
                request_id=request_id,
            )
            outcome = tr.start_funding(
                escrow,
                op_id=op_id,
                actor_id=actor.id,
                now=now,
                payment_method_types=self.ctx.settings.payment_method_types,
                description=description,
                receipt_email=receipt_email,
                namespace=self.ctx.namespace,
            )
            lease = now + self.ctx.lease
            outcome = attrs.evolve(
                outcome,
                operations=tuple(
                    attrs.evolve(o, claimed_until=lease, sent_at=now, correlation_id=correlation_id)
                    for o in outcome.operations
                ),
            )
            committed[:] = self.ctx.persist(
                uow,
                outcome,
                before=None,
                action="open",
                actor_id=actor.id,
                correlation_id=correlation_id,
                new_operations=[op_id],
                new_escrow=True,
            )
            key = self.runner.started_key(
                uow,
                actor,
                idempotency_key,
                "open",
                print_,
                now,
                kind="escrow",
                ref=escrow_id,
                lease=lease,
            )
            [funding] = outcome.operations
            return Started(escrow_id, new=True, operation=funding, escrow=outcome.escrow, key=key)

        result = self.runner.step1(self.ctx.tx(work))
        secret: str | None = None
        recorded: Escrow | None = None
        if result.new:
            self.ctx.publish(committed)
            assert result.operation is not None
            secret, recorded = self._drive_funding(
                result.operation, escrow=result.escrow, key=result.key
            )
        else:
            funding = next(
                (o for o in self.reads.operations(result.ref) if o.kind is OperationKind.FUNDING),
                None,
            )
            if funding is not None and funding.gateway_ref is None:
                secret = self._resume_funding(funding.id)
        # The escrow as the funding's step 3 committed it, or as it is now.
        escrow = recorded or self.reads.get(result.ref)
        if secret is None and escrow.payment_ref and escrow.status is EscrowStatus.AWAITING_FUNDING:
            try:
                secret = self.ctx.gateway.get_payment(escrow.payment_ref).client_secret
            except GatewayError as exc:
                credentials_refused(
                    exc, f"fetching the payment of {escrow.id}", escrow_id=escrow.id
                )
                log.warning("could not fetch the client secret of %s: %s", escrow.id, exc)
        return attrs.evolve(escrow, client_secret=secret)

    def _drive_funding(
        self, funding: Operation, *, escrow: Escrow | None = None, key: KeyHolder = None
    ) -> tuple[str | None, Escrow | None]:
        """Send a funding: the client secret, and the escrow as step 3 committed it."""
        secret: list[str | None] = [None]

        def capture(result: object) -> None:
            if isinstance(result, PaymentSnapshot):
                secret[0] = result.client_secret

        recorded = self.driver.drive_leased(funding, escrow=escrow, key=key, on_result=capture)
        return secret[0], recorded.escrow

    def _resume_funding(self, op_id: str) -> str | None:
        """Send a funding a replayed `open_escrow` found unsent, unless someone else does."""
        claimed = self.driver.claim_operation(op_id)
        return None if claimed is None else self._drive_funding(claimed)[0]

    def cancel(
        self,
        escrow_id: str,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Escrow:
        """Cancel an escrow before it is funded (cancels its payment at the gateway).

        See `EscrowService.cancel`.
        """
        actor = valid.actor_of(actor)

        def decide(uow: UnitOfWork, escrow: Escrow, now: datetime, op_id: str) -> Outcome:
            outcome = tr.start_cancel(escrow, op_id=op_id, actor_id=actor.id, now=now)
            cancel_op = outcome.operations[0]
            if cancel_op.request is None:  # the payment was never created: nothing to call
                funding = next(
                    (
                        o
                        for o in uow.operations.for_escrow(escrow.id)
                        if o.kind is OperationKind.FUNDING
                    ),
                    None,
                )
                done = tr.complete_cancel(escrow, cancel_op, funding, now=now)
                return attrs.evolve(done, events=outcome.events + done.events)
            return outcome

        started = self.runner.run(
            action="cancel",
            actor=actor,
            escrow_id=escrow_id,
            params={},
            decide=decide,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        op = self.runner.send_or_resume(started)
        escrow = self.reads.get(escrow_id)
        if op.status is OperationStatus.FAILED:
            raise InvalidTransitionError(
                f"cannot cancel escrow {escrow_id}: {op.error}; it is now "
                f"{escrow.status.value}, refund it instead",
                current=escrow.status.value,
                attempted="cancel",
            )
        return escrow

    # --- moving money -------------------------------------------------------------------------

    def release(
        self,
        escrow_id: str,
        *,
        payee_id: str,
        amount: Money | None = None,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Operation:
        """Pay `amount` (gross; None: everything available) to a payee, minus the fee.

        See `EscrowService.release`.
        """
        actor = valid.actor_of(actor)
        idempotency_key = valid.required_key(idempotency_key, "release")
        valid.text(payee_id, "payee_id")
        money = valid.money(amount, "amount", self.ctx.settings, optional=True)

        def start(payment: PaymentSnapshot | None) -> Started:
            def decide(uow: UnitOfWork, escrow: Escrow, now: datetime, op_id: str) -> Outcome:
                payee = uow.payees.get(payee_id)
                if payee is None:
                    raise PayeeNotFoundError(
                        f"payee {payee_id!r} is not registered; call register_payee first"
                    )
                if payment is None and _needs_charge(escrow):
                    raise _ChargeUnknownError(escrow)  # rolls step 1 back: fetch, then run it again
                return tr.start_release(
                    escrow,
                    op_id=op_id,
                    payee=payee,
                    gross=money,
                    actor_id=actor.id,
                    now=now,
                    namespace=self.ctx.namespace,
                    payment=payment,
                )

            return self.runner.run(
                action="release",
                actor=actor,
                escrow_id=escrow_id,
                params={"payee_id": payee_id, "amount": money},
                decide=decide,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
            )

        try:
            started = start(None)
        except _ChargeUnknownError as unknown:
            started = start(self._fetch_release_source(unknown.escrow))
        return self.runner.send_or_resume(started)

    def _fetch_release_source(self, escrow: Escrow) -> PaymentSnapshot:
        """The escrow's PaymentIntent, fetched because the escrow has no charge id recorded.

        A funding booked from a PaymentIntent without ``latest_charge`` leaves the escrow
        without the charge every transfer must name as ``source_transaction``. Step 1 found
        that and rolled back; with no transaction open the PaymentIntent is fetched, and step 1
        runs again with it (`tr.start_release` takes its charge and records it on the escrow).

        Raises:
            InvalidTransitionError: Stripe names no charge either. Nothing was written, and
                nothing is stored under the idempotency key: the same call goes ahead once
                the charge is known.
            GatewayError: the fetch failed; nothing was written.
        """
        assert escrow.payment_ref is not None  # `_needs_charge` checked it
        payment = self.ctx.gateway.get_payment(escrow.payment_ref)
        tr.release_source(escrow, payment)
        log.info(
            "escrow %s had no charge recorded; its PaymentIntent %s names %s",
            escrow.id,
            payment.ref,
            payment.charge_ref,
            extra={"escrow_id": escrow.id},
        )
        return payment

    def refund(
        self,
        escrow_id: str,
        *,
        amount: Money | None = None,
        actor: Actor,
        reason: str | None = None,
        reverse_releases: bool = False,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Operation:
        """Give `amount` (None: everything available) back to the poster.

        See `EscrowService.refund`.
        """
        actor = valid.actor_of(actor)
        idempotency_key = valid.required_key(idempotency_key, "refund")
        money = valid.money(amount, "amount", self.ctx.settings, optional=True)
        params = {"amount": money, "reason": reason, "reverse_releases": reverse_releases}
        # The key is checked before any effect: a replay returns the first refund without
        # reversing releases made since, and other parameters are refused before reversing.
        if reverse_releases and not self.runner.key_replays(
            actor, idempotency_key, "refund", escrow_id, params
        ):
            self._reverse_all(escrow_id, actor, idempotency_key, correlation_id)

        def decide(uow: UnitOfWork, escrow: Escrow, now: datetime, op_id: str) -> Outcome:
            # While frozen, only whoever the policy lets refund a frozen escrow (admins) may,
            # and only while Stripe says every disputed charge can still be refunded.
            allow_frozen = (
                escrow.frozen
                and self.ctx.policy.decide(actor, "refund_frozen", escrow, {"now": now}).allowed
            )
            if allow_frozen and any(
                d.open and not d.charge_refundable for d in uow.disputes.for_escrow(escrow.id)
            ):
                allow_frozen = False
            return tr.start_refund(
                escrow,
                op_id=op_id,
                amount=money,
                actor_id=actor.id,
                now=now,
                reason=reason,
                allow_frozen=allow_frozen,
                namespace=self.ctx.namespace,
            )

        started = self.runner.run(
            action="refund",
            actor=actor,
            escrow_id=escrow_id,
            params=params,
            decide=decide,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return self.runner.send_or_resume(started)

    def _reverse_all(
        self, escrow_id: str, actor: Actor, key: str, correlation_id: str | None
    ) -> None:
        for release in self.reads.operations(escrow_id):
            if (
                release.kind is not OperationKind.RELEASE
                or release.status is not OperationStatus.SUCCEEDED
            ):
                continue
            if release.reversed is not None and release.reversed >= release.net:
                continue
            reversal = self.reverse(
                escrow_id,
                release.id,
                actor=actor,
                idempotency_key=f"{key}:reverse:{release.id}",
                correlation_id=correlation_id,
            )
            if reversal.status is not OperationStatus.SUCCEEDED:
                missing = reversal.net
                raise ReversalFailedError(
                    f"reversal {reversal.id} of release {release.id} is {reversal.status.value}"
                    f" ({reversal.error or 'outcome unknown'}); {missing} could not be pulled "
                    "back from the payee, so nothing was refunded",
                    shortfall=missing,
                    operation_id=reversal.id,
                )

    def reverse(
        self,
        escrow_id: str,
        operation_id: str,
        *,
        amount: Money | None = None,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Operation:
        """Pull (part of) a succeeded release back from the payee into the escrow.

        See `EscrowService.reverse`.
        """
        actor = valid.actor_of(actor)
        idempotency_key = valid.required_key(idempotency_key, "reverse")
        money = valid.money(amount, "amount", self.ctx.settings, optional=True)

        def decide(uow: UnitOfWork, escrow: Escrow, now: datetime, op_id: str) -> Outcome:
            release = uow.operations.get(operation_id)
            if release is None or release.escrow_id != escrow.id:
                raise OperationNotFoundError(f"no operation {operation_id!r} in escrow {escrow.id}")
            pending = sum(
                (
                    o.net.amount
                    for o in uow.operations.for_escrow(escrow.id)
                    if o.kind is OperationKind.REVERSAL
                    and o.target_id == release.id
                    and o.status.open
                ),
                0,
            )
            return tr.start_reversal(
                escrow,
                release,
                op_id=op_id,
                amount=money,
                pending_reversals=Money(pending, escrow.currency),
                actor_id=actor.id,
                now=now,
                namespace=self.ctx.namespace,
            )

        started = self.runner.run(
            action="reverse",
            actor=actor,
            escrow_id=escrow_id,
            params={"operation_id": operation_id, "amount": money},
            decide=decide,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return self.runner.send_or_resume(started)

    def cancel_operation(
        self,
        operation_id: str,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Operation:
        """Cancel a release still waiting for its payee; its money is available again."""
        actor = valid.actor_of(actor)
        now = self.ctx.now()
        print_ = idem.fingerprint("cancel_operation", {"operation_id": operation_id})
        committed: list[DomainEvent] = []

        def work(uow: UnitOfWork) -> Denied | None:
            if idempotency_key is not None and idem.existing(
                uow,
                actor_id=actor.id,
                key=idempotency_key,
                action="cancel_operation",
                print_=print_,
                now=now,
            ):
                return None
            target = uow.operations.get(operation_id)
            if target is None:
                raise OperationNotFoundError(f"no operation with id {operation_id!r}")
            escrow = self.reads.lock_escrow_or_404(uow, target.escrow_id)
            decision = self.ctx.policy.decide(
                actor, "cancel_operation", escrow, {"operation_id": operation_id, "now": now}
            )
            if not decision.allowed:
                return self.ctx.deny(
                    uow, actor, "cancel_operation", escrow.id, decision.reason, correlation_id
                )
            op = uow.operations.get(operation_id)
            assert op is not None
            outcome = tr.cancel_waiting(escrow, op, now=now)
            committed[:] = self.ctx.persist(
                uow,
                outcome,
                before=escrow,
                action="cancel_operation",
                actor_id=actor.id,
                correlation_id=correlation_id,
            )
            if idempotency_key is not None:
                uow.idempotency.save(
                    attrs.evolve(
                        self.runner.idem_record(
                            actor, idempotency_key, "cancel_operation", print_, now
                        ),
                        result_kind="operation",
                        result_ref=operation_id,
                    )
                )
            return None

        denied = self.ctx.tx(work)
        if denied is not None:
            raise denied.error
        self.ctx.publish(committed)
        return self.reads.get_operation(operation_id)

    def clear_fraud_warning(
        self, escrow_id: str, *, actor: Actor, correlation_id: str | None = None
    ) -> Escrow:
        """Let an escrow frozen by an early fraud warning move again (admins)."""
        actor = valid.actor_of(actor)
        committed: list[DomainEvent] = []

        def work(uow: UnitOfWork) -> Denied | Escrow:
            escrow = self.reads.lock_escrow_or_404(uow, escrow_id)
            decision = self.ctx.policy.decide(actor, "clear_fraud_warning", escrow, {})
            if not decision.allowed:
                return self.ctx.deny(
                    uow, actor, "clear_fraud_warning", escrow_id, decision.reason, correlation_id
                )
            outcome = tr.clear_fraud_warning(escrow)
            committed[:] = self.ctx.persist(
                uow,
                outcome,
                before=escrow,
                action="clear_fraud_warning",
                actor_id=actor.id,
                correlation_id=correlation_id,
            )
            return outcome.escrow

        result = self.ctx.tx(work)
        if isinstance(result, Denied):
            raise result.error
        self.ctx.publish(committed)
        if result.frozen:
            return result
        # Releases that waited for the escrow to unfreeze (their payee ready) go out now.
        waiting = self.ctx.read(
            lambda uow: [
                op.id
                for op in uow.operations.for_escrow(escrow_id)
                if op.status is OperationStatus.AWAITING_PAYEE
            ]
        )
        for op_id in waiting:
            self.driver.send_ready_release(op_id)
        return self.reads.get(escrow_id) if waiting else result
