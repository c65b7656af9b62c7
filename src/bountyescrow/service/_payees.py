"""Payees: connected accounts that receive releases."""

from __future__ import annotations

from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import AuditRecord, IdempotencyRecord
from bountyescrow.errors import (
    PayeeNotFoundError,
    ValidationError,
)
from bountyescrow.ports.gateway import PaymentGateway
from bountyescrow.ports.policy import Actor
from bountyescrow.ports.store import UnitOfWork
from bountyescrow.service import _idempotency as idem
from bountyescrow.service import _validation as valid
from bountyescrow.service._context import ServiceContext
from bountyescrow.service._gateway_alerts import watching_credentials


class Payees:
    """Registering payees and onboarding them at the gateway."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    # --- payees -------------------------------------------------------------------------------

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

        See `EscrowService.register_payee`.

        Raises:
            ValidationError: `country` is not a two-letter code, or the gateway cannot pay a
                payee there (`PaymentGateway.payee_country_problem`: for Stripe, a country
                outside the regions its cross-border payouts connect); nothing was written
                and no account was created.
        """
        valid.metadata_id(payee_id, "payee_id")
        if not isinstance(country, str) or len(country) != 2 or not country.isalpha():
            raise ValidationError(f"country must be a two-letter ISO code, got {country!r}")
        actor = valid.actor_of(actor) if actor is not None else Actor(payee_id)
        decision = self.ctx.policy.decide(actor, "register_payee", None, {"payee_id": payee_id})
        if not decision.allowed:
            denied = self.ctx.tx(
                lambda uow: self.ctx.deny(
                    uow, actor, "register_payee", None, decision.reason, correlation_id
                )
            )
            raise denied.error
        now = self.ctx.now()
        print_ = idem.fingerprint(
            "register_payee", {"payee_id": payee_id, "country": country, "email": email}
        )

        def check_key(uow: UnitOfWork) -> None:
            if idempotency_key is not None:
                idem.existing(
                    uow,
                    actor_id=actor.id,
                    key=idempotency_key,
                    action="register_payee",
                    print_=print_,
                    now=now,
                )

        self.ctx.read(check_key)
        existing = self.ctx.read(lambda uow: uow.payees.get(payee_id))
        if existing is not None:
            return existing
        with watching_credentials("register_payee", payee_id=payee_id):
            problem = _country_problem(self.ctx.gateway, country.upper())
            if problem is not None:
                raise ValidationError(f"cannot register payee {payee_id!r}: {problem}")
            account = self.ctx.gateway.create_account(
                payee_id=payee_id,
                email=email,
                country=country.upper(),
                idempotency_key=f"bountyescrow:{self.ctx.namespace}:payee:{payee_id}",
            )
        payee = Payee(
            id=payee_id,
            account_ref=account.ref,
            ready=account.ready,
            country=country.upper(),
            email=email,
            created_at=now,
            updated_at=now,
        )

        committed: list[DomainEvent] = []

        def work(uow: UnitOfWork) -> Payee:
            check_key(uow)
            if idempotency_key is not None:
                uow.idempotency.save(
                    IdempotencyRecord(
                        actor_id=actor.id,
                        key=idempotency_key,
                        action="register_payee",
                        fingerprint=print_,
                        created_at=now,
                        expires_at=now + self.ctx.settings.idempotency_ttl,
                        result_kind="payee",
                        result_ref=payee_id,
                    )
                )
            current = uow.payees.get(payee_id, for_update=True)
            if current is not None:
                return current
            uow.payees.save(payee)
            uow.audit.add(
                AuditRecord(
                    action="register_payee",
                    actor_id=actor.id,
                    escrow_id=None,
                    created_at=now,
                    after={"payee_id": payee_id, "account": account.ref},
                    correlation_id=correlation_id,
                )
            )
            committed[:] = [
                uow.events.add(
                    DomainEvent(
                        type="payee.registered",
                        escrow_id=None,
                        data={"payee_id": payee_id},
                        created_at=now,
                    )
                )
            ]
            return payee

        registered = self.ctx.tx(work)
        self.ctx.publish(committed)
        return registered

    def onboarding_link(
        self, payee_id: str, *, return_url: str, refresh_url: str, actor: Actor | None = None
    ) -> str:
        """A one-time URL where the payee completes onboarding at the gateway."""
        actor = valid.actor_of(actor) if actor is not None else Actor(payee_id)
        decision = self.ctx.policy.decide(actor, "onboarding_link", None, {"payee_id": payee_id})
        if not decision.allowed:
            reason = decision.reason
            denied = self.ctx.tx(
                lambda uow: self.ctx.deny(uow, actor, "onboarding_link", None, reason, None)
            )
            raise denied.error
        payee = self.get_payee(payee_id)
        with watching_credentials("onboarding_link", payee_id=payee_id):
            return self.ctx.gateway.create_onboarding_link(
                payee.account_ref,
                return_url=valid.text(return_url, "return_url"),
                refresh_url=valid.text(refresh_url, "refresh_url"),
            )

    def get_payee(self, payee_id: str) -> Payee:
        """The registered payee. Raises `PayeeNotFoundError`."""
        payee = self.ctx.read(lambda uow: uow.payees.get(payee_id))
        if payee is None:
            raise PayeeNotFoundError(f"payee {payee_id!r} is not registered")
        return payee


def _country_problem(gateway: PaymentGateway, country: str) -> str | None:
    """The gateway's reason to refuse a payee in `country`, asked before anything is written.

    Gateways written before `PaymentGateway.payee_country_problem` existed lack it: their
    `create_account` alone decides.
    """
    ask = getattr(gateway, "payee_country_problem", None)
    return ask(country) if callable(ask) else None
