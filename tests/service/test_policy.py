"""The default `RoleBasedPolicy`, exercised through the service: who may do what.

Each row of the table runs one action as one role against a real escrow. An allowed call
succeeds; a denied one raises `PermissionDeniedError`, is audited (for actions on an escrow)
and leaves every amount, operation and gateway movement as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest

from bountyescrow import (
    Actor,
    EscrowService,
    EscrowStatus,
    FeeSchedule,
    Operation,
    OperationStatus,
    RoleBasedPolicy,
    errors,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, open_escrow, ready_payee, usd

STRANGER = Actor("stranger-1")
#: The hunter who was paid from the escrow: a payee with an operation in it.
PAYEE = Actor(HUNTER)
ROLES = {"poster": POSTER, "admin": ADMIN, "payee": PAYEE, "stranger": STRANGER}
WAITING_HUNTER = "hunter-2"


@attrs.frozen
class Scene:
    """One action ready to run as any actor, on the escrow it concerns."""

    escrow_id: str
    call: Callable[[Actor], Any]
    succeeded: Callable[[Any], bool]
    #: False for actions that concern no escrow (their denial has no escrow audit trail).
    escrow_scoped: bool = True


def _paid_to_hunter(service: EscrowService, fake: FakeGateway) -> tuple[str, Operation]:
    """A funded escrow of 25,000 from which the poster released 5,000 to the hunter."""
    esc = funded(service, fake)
    ready_payee(service, fake)
    release = service.release(
        esc.id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
    )
    assert release.status is OperationStatus.SUCCEEDED
    return esc.id, release


def _open(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    return Scene(
        esc_id,
        lambda actor: service.open_escrow(
            bounty_id="b2", poster_id=POSTER.id, amount=usd(10_000), actor=actor
        ),
        lambda esc: esc.status is EscrowStatus.AWAITING_FUNDING and esc.bounty_id == "b2",
        escrow_scoped=False,
    )


def _cancel(service: EscrowService, fake: FakeGateway) -> Scene:
    # Only an unfunded escrow can be cancelled, so nobody can have been paid from it: the
    # payee role is the hunter the poster paid from their other escrow.
    _paid_to_hunter(service, fake)
    unfunded = open_escrow(service, bounty="b2")
    return Scene(
        unfunded.id,
        lambda actor: service.cancel(unfunded.id, actor=actor),
        lambda esc: esc.status is EscrowStatus.CANCELLED,
    )


def _release(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    return Scene(
        esc_id,
        lambda actor: service.release(
            esc_id, payee_id=HUNTER, amount=usd(1_000), actor=actor, idempotency_key=new_key()
        ),
        lambda op: op.status is OperationStatus.SUCCEEDED,
    )


def _refund(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    return Scene(
        esc_id,
        lambda actor: service.refund(
            esc_id, amount=usd(1_000), actor=actor, idempotency_key=new_key()
        ),
        lambda op: op.status is OperationStatus.SUCCEEDED,
    )


def _reverse(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, release = _paid_to_hunter(service, fake)
    return Scene(
        esc_id,
        lambda actor: service.reverse(esc_id, release.id, actor=actor, idempotency_key=new_key()),
        lambda op: op.status is OperationStatus.SUCCEEDED,
    )


def _cancel_operation(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    service.register_payee(WAITING_HUNTER, country="US")
    waiting = service.release(
        esc_id, payee_id=WAITING_HUNTER, amount=usd(2_000), actor=POSTER, idempotency_key=new_key()
    )
    assert waiting.status is OperationStatus.AWAITING_PAYEE
    return Scene(
        esc_id,
        lambda actor: service.cancel_operation(waiting.id, actor=actor),
        lambda op: op.status is OperationStatus.CANCELLED,
    )


def _read(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    return Scene(
        esc_id,
        lambda actor: service.get(esc_id, actor=actor),
        lambda esc: esc.id == esc_id,
    )


def _register_payee(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    account = service.get_payee(HUNTER).account_ref
    return Scene(
        esc_id,
        lambda actor: service.register_payee(HUNTER, country="US", actor=actor),
        lambda payee: payee.id == HUNTER and payee.account_ref == account,
        escrow_scoped=False,
    )


def _onboarding_link(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    account = service.get_payee(HUNTER).account_ref
    return Scene(
        esc_id,
        lambda actor: service.onboarding_link(
            HUNTER,
            return_url="https://app.test/done",
            refresh_url="https://app.test/again",
            actor=actor,
        ),
        lambda url: url.startswith(f"https://connect.fake.test/onboard/{account}?"),
        escrow_scoped=False,
    )


def _clear_fraud_warning(service: EscrowService, fake: FakeGateway) -> Scene:
    esc_id, _ = _paid_to_hunter(service, fake)
    payment_ref = service.get(esc_id).payment_ref
    assert payment_ref is not None
    fake.early_fraud_warning(payment_ref)
    fake.deliver(service)
    assert service.get(esc_id).frozen
    return Scene(
        esc_id,
        lambda actor: service.clear_fraud_warning(esc_id, actor=actor),
        lambda esc: not esc.frozen,
    )


SCENES: dict[str, Callable[[EscrowService, FakeGateway], Scene]] = {
    "open": _open,
    "cancel": _cancel,
    "release": _release,
    "refund": _refund,
    "reverse": _reverse,
    "cancel_operation": _cancel_operation,
    "read": _read,
    "register_payee": _register_payee,
    "onboarding_link": _onboarding_link,
    "clear_fraud_warning": _clear_fraud_warning,
}

#: action -> the roles the default policy allows; every other role is denied.
ALLOWED: dict[str, set[str]] = {
    "open": {"poster", "admin"},
    "cancel": {"poster", "admin"},
    "release": {"poster", "admin"},
    "refund": {"admin"},
    "reverse": {"admin"},
    "cancel_operation": {"poster", "admin"},
    "read": {"poster", "admin", "payee"},
    "register_payee": {"payee", "admin"},
    "onboarding_link": {"payee", "admin"},
    "clear_fraud_warning": {"admin"},
}

TABLE = [
    pytest.param(action, role, role in allowed, id=f"{action}-{role}")
    for action, allowed in ALLOWED.items()
    for role in ROLES
]


def money_state(service: EscrowService, fake: FakeGateway, escrow_id: str) -> tuple[Any, ...]:
    """Everything about an escrow's money that a refused command must leave alone."""
    esc = service.get(escrow_id)
    amounts = (
        esc.status,
        esc.funded,
        esc.held,
        esc.reserved,
        esc.released,
        esc.refunded,
        esc.fees,
        esc.frozen,
        esc.cancelled,
    )
    ops = [(op.id, op.kind, op.status, op.gross) for op in service.operations(escrow_id)]
    return amounts, ops, fake.movements, len(service.ledger(escrow_id))


def denials(service: EscrowService, escrow_id: str) -> list[tuple[str, str]]:
    return [(r.actor_id, r.action) for r in service.audit_trail(escrow_id) if not r.allowed]


class TestRoleBasedPolicyThroughTheService:
    @pytest.mark.parametrize(("action", "role", "allowed"), TABLE)
    def test_action_by_role(
        self,
        service: EscrowService,
        fake: FakeGateway,
        action: str,
        role: str,
        allowed: bool,
    ) -> None:
        """An allowed call succeeds; a denied one is refused, audited and changes no money."""
        scene = SCENES[action](service, fake)
        actor = ROLES[role]
        before = money_state(service, fake, scene.escrow_id)
        if allowed:
            result = scene.call(actor)
            assert scene.succeeded(result)
            assert denials(service, scene.escrow_id) == []
            return
        with pytest.raises(errors.PermissionDeniedError) as info:
            scene.call(actor)
        assert actor.id in str(info.value)
        assert money_state(service, fake, scene.escrow_id) == before
        if scene.escrow_scoped:
            assert denials(service, scene.escrow_id) == [(actor.id, action)]
        if action == "open":
            assert service.find(bounty_id="b2") == []

    def test_an_admin_of_another_role_name_is_a_stranger(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> None:
        """With ``admin_role="ops"``, the role "admin" grants nothing."""
        service = EscrowService(
            store, fake, RoleBasedPolicy(admin_role="ops"), fee_bps=1000, clock=clock
        )
        esc = funded(service, fake)
        with pytest.raises(errors.PermissionDeniedError):
            service.refund(esc.id, amount=usd(1_000), actor=ADMIN, idempotency_key=new_key())
        op = service.refund(
            esc.id,
            amount=usd(1_000),
            actor=Actor("ops-1", roles={"ops"}),
            idempotency_key=new_key(),
        )
        assert op.status is OperationStatus.SUCCEEDED
        assert service.check_invariants() == []

    def test_a_payee_registers_their_own_account(self, service: EscrowService) -> None:
        payee = service.register_payee("hunter-9", country="US", actor=Actor("hunter-9"))
        assert payee.id == "hunter-9"
        assert service.get_payee("hunter-9").account_ref == payee.account_ref

    def test_nobody_registers_a_payee_for_someone_else(self, service: EscrowService) -> None:
        with pytest.raises(errors.PermissionDeniedError):
            service.register_payee("hunter-9", country="US", actor=POSTER)
        with pytest.raises(errors.PayeeNotFoundError):
            service.get_payee("hunter-9")


class TestReleaseToThePoster:
    @pytest.mark.parametrize("actor", [POSTER, ADMIN], ids=["poster", "admin"])
    def test_is_refused_audited_and_moves_nothing(
        self, service: EscrowService, fake: FakeGateway, actor: Actor
    ) -> None:
        esc = funded(service, fake)
        ready_payee(service, fake, POSTER.id)
        before = money_state(service, fake, esc.id)
        with pytest.raises(errors.PermissionDeniedError, match="own poster"):
            service.release(esc.id, payee_id=POSTER.id, actor=actor, idempotency_key=new_key())
        assert money_state(service, fake, esc.id) == before
        assert denials(service, esc.id) == [(actor.id, "release")]


class TestMinHoldBeforeRelease:
    HOLD = timedelta(days=3)

    @pytest.fixture
    def guarded(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> Iterator[EscrowService]:
        service = EscrowService(
            store,
            fake,
            RoleBasedPolicy(min_hold_before_release=self.HOLD),
            fee_bps=1000,
            clock=clock,
        )
        yield service
        assert service.check_invariants() == []

    def test_a_posters_release_before_the_hold_is_denied(
        self, guarded: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(guarded, fake)
        ready_payee(guarded, fake)
        clock.advance(self.HOLD - timedelta(minutes=1))
        with pytest.raises(errors.PermissionDeniedError, match="held"):
            guarded.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert fake.movements == []
        assert guarded.get(esc.id).available == usd(25_000)
        assert denials(guarded, esc.id) == [(POSTER.id, "release")]

    def test_after_the_hold_the_poster_may_release(
        self, guarded: EscrowService, fake: FakeGateway, clock: ManualClock
    ) -> None:
        esc = funded(guarded, fake)
        ready_payee(guarded, fake)
        with pytest.raises(errors.PermissionDeniedError):
            guarded.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        clock.advance(self.HOLD)
        op = guarded.release(esc.id, payee_id=HUNTER, actor=POSTER, idempotency_key=new_key())
        assert op.status is OperationStatus.SUCCEEDED
        assert guarded.get(esc.id).status is EscrowStatus.RELEASED

    def test_an_admin_is_exempt(self, guarded: EscrowService, fake: FakeGateway) -> None:
        esc = funded(guarded, fake)
        ready_payee(guarded, fake)
        op = guarded.release(esc.id, payee_id=HUNTER, actor=ADMIN, idempotency_key=new_key())
        assert op.status is OperationStatus.SUCCEEDED


class TestReadsWithAnActor:
    """Every per-escrow read checks the actor when one is given."""

    @pytest.mark.parametrize("read", ["operations", "ledger", "audit_trail", "disputes"])
    def test_a_stranger_is_refused_and_the_poster_is_not(
        self, service: EscrowService, fake: FakeGateway, read: str
    ) -> None:
        esc = funded(service, fake)
        assert getattr(service, read)(esc.id, actor=POSTER) == getattr(service, read)(esc.id)
        with pytest.raises(errors.PermissionDeniedError):
            getattr(service, read)(esc.id, actor=Actor("stranger"))


class TestFeeSettings:
    def test_fee_bps_and_a_fee_schedule_together_are_refused(
        self, store: InMemoryStore, fake: FakeGateway
    ) -> None:
        with pytest.raises(errors.ValidationError, match="either fee_bps or fees"):
            EscrowService(store, fake, fee_bps=500, fees=FeeSchedule(1000))
