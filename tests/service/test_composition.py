"""The service is composed of parts with explicit dependencies, not a tower of mixins."""

from __future__ import annotations

import inspect

import pytest

from bountyescrow import Actor, EscrowService, EscrowSettings, Money
from bountyescrow.domain.gateway_objects import PaymentSnapshot
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.service import (
    _applier,
    _commands,
    _context,
    _driver,
    _intake,
    _payees,
    _reads,
    _recovery,
    _runner,
)
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock

PARTS = [
    _context.ServiceContext,
    _applier.EventApplier,
    _driver.OperationDriver,
    _reads.Reads,
    _runner.CommandRunner,
    _commands.EscrowCommands,
    _payees.Payees,
    _intake.EventIntake,
    _recovery.Recovery,
]


class TestComposition:
    @pytest.mark.parametrize("part", [EscrowService, *PARTS], ids=lambda c: c.__name__)
    def test_no_part_inherits_from_another(self, part: type) -> None:
        assert part.__mro__ == (part, object)

    @pytest.mark.parametrize("part", PARTS[1:], ids=lambda c: c.__name__)
    def test_each_part_names_what_it_needs_in_its_constructor(self, part: type) -> None:
        params = list(inspect.signature(part.__init__).parameters)
        assert params[:2] == ["self", "ctx"]

    def test_a_part_works_alone(self) -> None:
        """The event applier books a payment with nothing but a context and a store."""
        clock = ManualClock()
        store, fake = InMemoryStore(), FakeGateway(clock=clock)
        service = EscrowService(store, fake, clock=clock, namespace="t")
        escrow = service.open_escrow(
            bounty_id="b1",
            poster_id="u1",
            amount=Money(5_000, "usd"),
            actor=Actor("u1"),
        )
        assert escrow.payment_ref is not None
        ctx = _context.ServiceContext(
            store=store,
            gateway=fake,
            policy=service.policy,
            clock=clock,
            namespace="t",
            settings=EscrowSettings(),
            hooks=(),
        )
        applier = _applier.EventApplier(ctx)
        fake.pay(escrow.payment_ref)
        paid = fake.get_payment(escrow.payment_ref)
        assert isinstance(paid, PaymentSnapshot)
        applied = ctx.tx(lambda uow: applier.apply_object(uow, paid))
        assert applied.status is WebhookStatus.PROCESSED
        assert _reads.Reads(ctx).get(escrow.id).funded == Money(5_000, "usd")
