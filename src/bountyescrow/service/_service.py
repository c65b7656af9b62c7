"""`EscrowService`: the library's front door, a facade over the service's parts.

The parts are composed here, each taking what it needs in its constructor (DESIGN §3):

- `ServiceContext`: the ports, settings, lease and hooks, and the unit-of-work helpers;
- `EventApplier`: turns gateway objects (events, polled objects, call answers) into
  transitions inside a unit of work;
- `OperationDriver`: steps 2 and 3 of intent, call, record;
- `Recovery`: `recover()`, which re-drives what was left pending;
- `Reconciler`: `reconcile()`, the books against the gateway's own objects;
- `Reads`: escrows, operations, ledger, audit trail, events, invariants;
- `CommandRunner`: step 1 of every command (authorization, idempotency, the intent);
- `EscrowCommands`, `Payees`, `EventIntake`: the commands, payees, and gateway events in.

Every public method below delegates to one of them; this class holds no logic of its own
beyond checking its arguments at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bountyescrow.domain import metadata_rules
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule
from bountyescrow.domain.gateway_objects import GatewayEvent, GatewayObject
from bountyescrow.domain.ledger import JournalEntry
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import AuditRecord, WebhookEventRecord, WebhookStatus
from bountyescrow.errors import ValidationError
from bountyescrow.policy import RoleBasedPolicy
from bountyescrow.ports.clock import Clock, SystemClock
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.ports.policy import Actor, AuthorizationPolicy
from bountyescrow.ports.store import EscrowStore, UnitOfWork
from bountyescrow.service._applier import Applied, EventApplier
from bountyescrow.service._commands import EscrowCommands
from bountyescrow.service._context import EventHook, ServiceContext
from bountyescrow.service._driver import OperationDriver
from bountyescrow.service._intake import EventIntake
from bountyescrow.service._payees import Payees
from bountyescrow.service._reads import Reads
from bountyescrow.service._reconcile import Reconciler
from bountyescrow.service._reconcile_report import ReconciliationReport
from bountyescrow.service._recovery import Recovery, RecoveryReport
from bountyescrow.service._runner import CommandRunner
from bountyescrow.service._settings import EscrowSettings


class EscrowService:
    """Holds posters' money for bounties and pays it to hunters or back, on a gateway.

    Args:
        store: where state lives (`InMemoryStore`, `SqlAlchemyStore`, ...).
        gateway: the payment provider (`StripeGateway`, `FakeGateway`).
        policy: who may do what; `RoleBasedPolicy()` by default.
        fee_bps: the platform fee in basis points (1000 = 10 %), or pass `fees`.
        fees: a full `FeeSchedule` (basis points plus a fixed part per escrow).
        namespace: names this deployment in every gateway idempotency key and in the metadata
            of every gateway object.
        clock: where time comes from (tests pass a manual clock).
        settings: `EscrowSettings` (settlement currencies, leases, limits...).
        hooks: callables given each domain event after its commit (at least once; the
            durable outbox is `events()`).

    Every mutating method takes keyword-only ``actor``, ``idempotency_key`` and
    ``correlation_id``. Money-moving methods record the operation before calling the
    gateway; when the gateway's answer is unknown they return the operation ``pending``
    (never raise), and `recover()` finishes it.

    Raises:
        ValidationError: a bad namespace or fee schedule.
        ConfigurationError: a lease not longer than the gateway's longest call.
    """

    def __init__(
        self,
        store: EscrowStore,
        gateway: PaymentGateway,
        policy: AuthorizationPolicy | None = None,
        *,
        fee_bps: int = 0,
        fees: FeeSchedule | None = None,
        namespace: str = "default",
        clock: Clock | None = None,
        settings: EscrowSettings | None = None,
        hooks: Sequence[EventHook] = (),
    ) -> None:
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise ValidationError(
                f"namespace must be a non-empty string without ':', got {namespace!r}"
            )
        problem = metadata_rules.value_problem(namespace, "namespace")
        if problem is not None:
            raise ValidationError(problem)
        if fees is not None and fee_bps:
            raise ValidationError("pass either fee_bps or fees, not both")
        settings = settings or EscrowSettings()
        schedule = fees if fees is not None else FeeSchedule(fee_bps)
        fixed = schedule.fixed
        if (
            fixed is not None
            and fixed.amount
            and fixed.currency not in settings.settlement_currencies
        ):
            raise ValidationError(
                f"the fixed fee {fixed} is in {fixed.currency!r}, which is not a settlement "
                f"currency ({sorted(settings.settlement_currencies)}); no escrow could carry it"
            )
        self.fees = schedule
        self.ctx = ServiceContext(
            store=store,
            gateway=gateway,
            policy=policy or RoleBasedPolicy(),
            clock=clock or SystemClock(),
            namespace=namespace,
            settings=settings,
            hooks=hooks,
        )
        self._applier = EventApplier(self.ctx)
        self._driver = OperationDriver(self.ctx, self._applier)
        self._reads = Reads(self.ctx)
        runner = CommandRunner(self.ctx, self._driver, self._reads)
        self._commands = EscrowCommands(self.ctx, runner, self._driver, self._reads, schedule)
        self._payees = Payees(self.ctx)
        self._intake = EventIntake(self.ctx, self._applier, self._driver)
        self._recovery = Recovery(self.ctx, self._driver, self._applier)
        self._reconciler = Reconciler(self.ctx, self._applier, self._reads, self._driver)

    # --- what it was built with ------------------------------------------------------------

    @property
    def store(self) -> EscrowStore:
        """Where state lives."""
        return self.ctx.store

    @property
    def gateway(self) -> PaymentGateway:
        """The payment provider."""
        return self.ctx.gateway

    @property
    def policy(self) -> AuthorizationPolicy:
        """Who may do what."""
        return self.ctx.policy

    @property
    def clock(self) -> Clock:
        """Where time comes from."""
        return self.ctx.clock

    @property
    def namespace(self) -> str:
        """This deployment's name in gateway keys and metadata."""
        return self.ctx.namespace

    @property
    def settings(self) -> EscrowSettings:
        """The settings."""
        return self.ctx.settings

    @property
    def lease(self) -> timedelta:
        """The lease operations are driven under (see `EscrowSettings.lease`)."""
        return self.ctx.lease

    def gateway_key(self, op: Operation) -> str:
        """The idempotency key sent to the gateway for the operation's current generation."""
        return self.ctx.gateway_key(op)

    def now(self) -> datetime:
        """The clock's time."""
        return self.ctx.now()

    # --- commands, payees, gateway events, reads, recovery -----------------------------------

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

        Returns the escrow, `awaiting_funding`, with `client_secret` for the host's frontend
        (on this return value only). If the gateway's answer is unknown the escrow is returned
        without a client secret; call again with the same idempotency key to get it.

        Raises:
            ValidationError: bad amount, currency or ids.
            EscrowExistsError: this poster's escrow for the bounty is open already.
            PermissionDeniedError: the actor may not open it.
        """
        return self._commands.open_escrow(
            bounty_id=bounty_id,
            poster_id=poster_id,
            amount=amount,
            actor=actor,
            request_id=request_id,
            allow_additional=allow_additional,
            description=description,
            receipt_email=receipt_email,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    def cancel(
        self,
        escrow_id: str,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Escrow:
        """Cancel an escrow before it is funded (cancels its payment at the gateway).

        Raises:
            InvalidTransitionError: it is funded, or the payment succeeded or is processing
                (the funding is then applied; refund instead).
        """
        return self._commands.cancel(
            escrow_id, actor=actor, idempotency_key=idempotency_key, correlation_id=correlation_id
        )

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

        May be called several times (milestones, several hunters). A payee whose account
        is not ready yet gets an `awaiting_payee` operation that holds the money and is sent
        when onboarding completes. Requires ``idempotency_key``. When the escrow has no
        charge id recorded yet, the PaymentIntent is fetched first for its latest charge (the
        transfer's `source_transaction`).

        Raises:
            ValidationError, InsufficientFundsError, EscrowFrozenError, PayeeNotFoundError,
            PermissionDeniedError.
            InvalidTransitionError: not funded, or the gateway names no charge to transfer from
                (nothing is written; retry with the same key once it does).
            GatewayError: fetching the PaymentIntent failed (nothing is written).
        """
        return self._commands.release(
            escrow_id,
            payee_id=payee_id,
            amount=amount,
            actor=actor,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

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

        With ``reverse_releases=True`` every succeeded release is reversed first, and the
        refund is made only if all reversals succeeded. While the escrow is frozen only an
        admin may refund, and only while the gateway still lets the charge be refunded.

        Raises:
            ReversalFailedError: a reversal failed (its shortfall says how much is missing).
            ValidationError, InsufficientFundsError, EscrowFrozenError, PermissionDeniedError.
        """
        return self._commands.refund(
            escrow_id,
            amount=amount,
            actor=actor,
            reason=reason,
            reverse_releases=reverse_releases,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
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

        `amount` is the transfer amount to pull back (None: all not yet reversed); the fee
        share comes back with it (`reversal_fee_share`). A payee whose balance no longer
        covers it makes the reversal `failed`.
        """
        return self._commands.reverse(
            escrow_id,
            operation_id,
            amount=amount,
            actor=actor,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    def cancel_operation(
        self,
        operation_id: str,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Operation:
        """Cancel a release still waiting for its payee; its money is available again."""
        return self._commands.cancel_operation(
            operation_id,
            actor=actor,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    def clear_fraud_warning(
        self, escrow_id: str, *, actor: Actor, correlation_id: str | None = None
    ) -> Escrow:
        """Let an escrow frozen by an early fraud warning move again (admins)."""
        return self._commands.clear_fraud_warning(
            escrow_id, actor=actor, correlation_id=correlation_id
        )

    def register_payee(
        self,
        payee_id: str,
        *,
        country: str,
        email: str | None = None,
        actor: Actor | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Payee:
        """Create the payee's connected account (once per payee; later calls return it).

        A later call for a registered payee returns it unchanged (its email and country are
        not updated). With `idempotency_key`, reusing the key with another payee, country or
        email raises `IdempotencyConflictError`.

        Raises:
            ValidationError: a bad payee id or country, or a country the gateway cannot pay
                from the platform's (cross-border payouts reach the US, UK, EEA, Canada and
                Switzerland); nothing is written.
        """
        return self._payees.register_payee(
            payee_id,
            country=country,
            email=email,
            actor=actor,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    def onboarding_link(
        self, payee_id: str, *, return_url: str, refresh_url: str, actor: Actor | None = None
    ) -> str:
        """A one-time URL where the payee completes onboarding at the gateway."""
        return self._payees.onboarding_link(
            payee_id, return_url=return_url, refresh_url=refresh_url, actor=actor
        )

    def get_payee(self, payee_id: str) -> Payee:
        """The registered payee. Raises `PayeeNotFoundError`."""
        return self._payees.get_payee(payee_id)

    def apply_event(self, event: GatewayEvent, *, payload: str | None = None) -> WebhookStatus:
        """Apply one gateway event; what the webhook dispatcher calls.

        Returns ``processed`` or ``ignored``. An event seen before (processed or ignored)
        changes nothing. The event id is recorded in the same transaction as its effect.
        `payload` (the raw body) is kept only if the event fails, for `replay`.

        An event is *ignored without being recorded* when it is not about this deployment:
        its object's metadata names another `namespace`, or neither its metadata nor its ids
        (PaymentIntent, charge's PaymentIntent, transfer, refund, dispute, payee account)
        are ours; nothing is fetched for it. So is a Connect event (one naming a connected
        ``account``) of the other mode: Stripe sends both modes' Connect events to live
        endpoints.

        This method trusts nobody's signature: a PaymentIntent reported as succeeded is
        fetched from the gateway, and what the gateway says is applied. (The webhook
        dispatcher verifies the request's signature first and applies the signed snapshot.)

        Raises:
            EventNotReadyError: the event names an escrow whose creation has not committed yet
                (answer 500 so the gateway redelivers); after `event_not_ready_window` such an
                event is ignored.
            WebhookPayloadError: the event is from the other mode (live vs test) and names no
                connected account.
            GatewayRejectedError: the gateway refused to show an object of ours (an alert
                ``gateway_object_unavailable`` is raised; the event is recorded failed).
        """
        return self._intake.apply_event(event, payload=payload)

    def failed_events(self, *, limit: int = 100) -> list[WebhookEventRecord]:
        """Gateway events whose processing failed, oldest first (replay them)."""
        return self._intake.failed_events(limit=limit)

    def webhook_event(self, event_id: str) -> WebhookEventRecord | None:
        """The log record of a gateway event, if it was seen."""
        return self._intake.webhook_event(event_id)

    def get(self, escrow_id: str, *, actor: Actor | None = None) -> Escrow:
        """The escrow. With `actor`, the read is authorized. Raises `EscrowNotFoundError`."""
        return self._reads.get(escrow_id, actor=actor)

    def find(self, *, bounty_id: str | None = None, poster_id: str | None = None) -> list[Escrow]:
        """Escrows of a bounty and/or a poster, oldest first."""
        return self._reads.find(bounty_id=bounty_id, poster_id=poster_id)

    def get_operation(self, operation_id: str) -> Operation:
        """The operation. Raises `OperationNotFoundError`."""
        return self._reads.get_operation(operation_id)

    def operations(self, escrow_id: str, *, actor: Actor | None = None) -> list[Operation]:
        """The escrow's operations, oldest first. With `actor`, the read is authorized."""
        return self._reads.operations(escrow_id, actor=actor)

    def ledger(self, escrow_id: str, *, actor: Actor | None = None) -> list[JournalEntry]:
        """The escrow's journal entries in booking order. With `actor`, the read is authorized."""
        return self._reads.ledger(escrow_id, actor=actor)

    def audit_trail(self, escrow_id: str, *, actor: Actor | None = None) -> list[AuditRecord]:
        """The escrow's audit records in order. With `actor`, the read is authorized."""
        return self._reads.audit_trail(escrow_id, actor=actor)

    def disputes(self, escrow_id: str, *, actor: Actor | None = None) -> list[Dispute]:
        """The escrow's disputes. With `actor`, the read is authorized."""
        return self._reads.disputes(escrow_id, actor=actor)

    def events(self, after: int = 0, *, limit: int = 100) -> list[DomainEvent]:
        """Domain events after the cursor `after` (an event's `seq`), oldest first."""
        return self._reads.events(after, limit=limit)

    def required_reserve(self, currency: str) -> Money:
        """How much must stay in the platform balance: everything held in `currency`."""
        return self._reads.required_reserve(currency)

    def nearing_max_hold(self, *, within: timedelta = timedelta(days=7)) -> list[Escrow]:
        """Escrows still holding money whose `max_hold` ends within `within`."""
        return self._reads.nearing_max_hold(within=within)

    def check_invariants(self) -> list[str]:
        """Check I1-I4 over every escrow; returns the violations (empty when all hold)."""
        return self._reads.check_invariants()

    def claim(self, op_id: str) -> bool:
        """Lease a pending operation to this caller; False if someone else holds it."""
        return self._driver.claim(op_id)

    def drive(
        self,
        op_id: str,
        *,
        lookup_first: bool = False,
        idem: tuple[str, str] | None = None,
        on_result: Callable[[GatewayObject], None] | None = None,
    ) -> Operation:
        """Send a claimed pending operation and record the answer. Returns the operation.

        `on_result` sees the gateway's answer (the caller that needs a client secret).
        """
        return self._driver.drive(op_id, lookup_first=lookup_first, idem=idem, on_result=on_result)

    def recover(self, *, limit: int = 100) -> RecoveryReport:
        """Re-drive operations left pending: unknown outcomes, crashes, awaited results.

        Claims due operations with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so many
        instances may run it at once) and resends each stored request unchanged. After a
        replayed server error, or once the gateway may have forgotten the key, it first looks
        the object up; only if it is absent and the key window has passed does it send a new
        key generation.
        """
        return self._recovery.recover(limit=limit)

    def reconcile(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        escrow_ids: Sequence[str] | None = None,
        repair: bool = False,
    ) -> ReconciliationReport:
        """Compare the books with the gateway's own objects; with `repair`, adopt what was missed.

        Without `escrow_ids`, every object the gateway lists as created in ``[since, until)``
        is compared (its list endpoints, a page at a time), then the books are walked a page
        of escrows at a time for objects they name in the window that no list showed, and the
        platform balance is compared with `required_reserve` per currency. `since` None starts
        at the beginning; `until` None is five minutes ago (younger objects are left to their
        webhooks). With `escrow_ids`, only those escrows' objects are compared, whatever their
        age (no balance check).

        With ``repair=True`` the repairable discrepancies (a missed payment, refund outcome,
        reversal or dispute, a release or refund whose answer was lost) are applied as their
        webhooks would have been; repair never sends money (see `Discrepancy.repairable`).

        Returns:
            A `ReconciliationReport`: every `Discrepancy` found (repaired ones marked), the
            counts, and what could not be checked (`errors`).

        Raises:
            ConfigurationError: the gateway has no list methods (`PaymentGateway`).
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: a list of the gateway could not be read.
        """
        return self._reconciler.reconcile(
            since=since, until=until, escrow_ids=escrow_ids, repair=repair
        )

    def apply_object(self, uow: UnitOfWork, obj: GatewayObject) -> Applied:
        """Apply one gateway object inside `uow`."""
        return self._applier.apply_object(uow, obj)

    def _apply_signed_event(self, event: GatewayEvent, *, payload: str | None) -> WebhookStatus:
        """`apply_event` for an event whose webhook signature the dispatcher just verified."""
        return self._intake.apply_signed_event(event, payload=payload)
