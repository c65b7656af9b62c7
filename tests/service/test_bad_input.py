"""Bad input is refused with a message that says what was wrong, before anything is written.

"Nothing written" is checked three ways: the store committed no unit of work, the outbox
(`service.events()`) is unchanged and the gateway moved no money.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from bountyescrow import Actor, EscrowService, EscrowSettings, Money, errors
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from tests.keys import new_key

from .conftest import ADMIN, HUNTER, POSTER, funded, ready_payee, usd


@attrs.frozen
class Snapshot:
    commits: int
    events: list[Any]
    movements: list[Any]
    escrows: list[Any]


class NothingWritten:
    """Takes a snapshot, then checks that a refused call changed none of it."""

    def __init__(self, service: EscrowService, store: InMemoryStore, fake: FakeGateway) -> None:
        self.service, self.store, self.fake = service, store, fake
        self.before = self._take()

    def _take(self) -> Snapshot:
        events = self.service.events(limit=10_000)
        escrows = self.service.find()
        movements = self.fake.movements
        # Taken last: the reads above run (read-only) units of work of their own.
        return Snapshot(self.store.commits, events, movements, escrows)

    def check(self) -> None:
        commits = self.store.commits
        assert commits == self.before.commits, "a refused call committed a unit of work"
        after = self._take()
        assert after.events == self.before.events
        assert after.movements == self.before.movements
        assert after.escrows == self.before.escrows


@attrs.frozen
class World:
    """A funded escrow of 25,000 usd and a ready hunter."""

    service: EscrowService
    escrow_id: str
    store: InMemoryStore
    fake: FakeGateway

    def snapshot(self) -> NothingWritten:
        return NothingWritten(self.service, self.store, self.fake)


@pytest.fixture
def world(service: EscrowService, store: InMemoryStore, fake: FakeGateway) -> World:
    esc = funded(service, fake)
    ready_payee(service, fake)
    return World(service, esc.id, store, fake)


def refused(
    guard: NothingWritten,
    call: Callable[[], object],
    error: type[Exception],
    *words: str,
) -> Exception:
    """Run `call`, expect `error` whose message names every one of `words`, nothing written."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    guard.check()
    return info.value


def open_with(service: EscrowService, **changes: Any) -> Callable[[], object]:
    kwargs: dict[str, Any] = {
        "bounty_id": "b-new",
        "poster_id": POSTER.id,
        "amount": usd(25_000),
        "actor": POSTER,
    }
    kwargs.update(changes)
    return lambda: service.open_escrow(**kwargs)


class TestAmounts:
    @pytest.mark.parametrize(
        ("amount", "words"),
        [
            pytest.param(25_000, ("Money", "int"), id="int"),
            pytest.param(250.0, ("Money", "float"), id="float"),
            pytest.param(True, ("Money", "bool"), id="bool"),
            pytest.param("25000", ("Money", "str"), id="str"),
            pytest.param(Money(25_000, "eur"), ("eur", "settle"), id="not-a-settlement-currency"),
            pytest.param(Money(-5, "usd"), ("positive",), id="negative"),
            pytest.param(Money(0, "usd"), ("positive",), id="zero"),
            pytest.param(Money(100_000_000, "usd"), ("limit", "99999999"), id="over-8-digits"),
            pytest.param(Money(49, "usd"), ("minimum charge",), id="below-minimum-charge"),
        ],
    )
    def test_open_escrow_refuses(
        self, world: World, amount: object, words: tuple[str, ...]
    ) -> None:
        service = world.service
        refused(world.snapshot(), open_with(service, amount=amount), errors.ValidationError, *words)

    @pytest.mark.parametrize(
        ("amount", "words"),
        [
            pytest.param(1_000, ("Money", "int"), id="int"),
            pytest.param(10.5, ("Money", "float"), id="float"),
            pytest.param(False, ("Money", "bool"), id="bool"),
            pytest.param(Money(1_000, "eur"), ("eur", "settle"), id="not-a-settlement-currency"),
            pytest.param(Money(-1_000, "usd"), ("positive",), id="negative"),
            pytest.param(Money(0, "usd"), ("positive",), id="zero"),
            pytest.param(Money(100_000_000, "usd"), ("limit",), id="over-8-digits"),
        ],
    )
    @pytest.mark.parametrize("command", ["release", "refund", "reverse"])
    def test_money_moving_commands_refuse(
        self, world: World, command: str, amount: object, words: tuple[str, ...]
    ) -> None:
        service, esc_id = world.service, world.escrow_id
        release = service.release(
            esc_id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        calls: dict[str, Callable[[], object]] = {
            "release": lambda: service.release(
                esc_id, payee_id=HUNTER, amount=amount, actor=POSTER, idempotency_key=new_key()
            ),
            "refund": lambda: service.refund(
                esc_id, amount=amount, actor=ADMIN, idempotency_key=new_key()
            ),
            "reverse": lambda: service.reverse(
                esc_id, release.id, amount=amount, actor=ADMIN, idempotency_key=new_key()
            ),
        }
        refused(world.snapshot(), calls[command], errors.ValidationError, *words)

    def test_a_small_release_is_not_held_to_the_minimum_charge(self, world: World) -> None:
        """The minimum charge applies to the payment, not to what is paid out of it."""
        service, esc_id = world.service, world.escrow_id
        op = service.release(
            esc_id, payee_id=HUNTER, amount=usd(40), actor=POSTER, idempotency_key=new_key()
        )
        assert op.net == usd(36)


class TestCurrencies:
    @pytest.fixture
    def two_currencies(
        self, store: InMemoryStore, fake: FakeGateway, clock: ManualClock
    ) -> Iterator[EscrowService]:
        settings = EscrowSettings(settlement_currencies=frozenset({"usd", "eur", "kwd"}))
        service = EscrowService(
            store, fake, fee_bps=1000, namespace="test", clock=clock, settings=settings
        )
        yield service
        assert service.check_invariants() == []

    @pytest.mark.parametrize("command", ["release", "refund"])
    def test_an_amount_in_another_currency_than_the_escrow_is_refused(
        self,
        two_currencies: EscrowService,
        store: InMemoryStore,
        fake: FakeGateway,
        command: str,
    ) -> None:
        service = two_currencies
        esc = funded(service, fake)
        ready_payee(service, fake)
        eur = Money(1_000, "eur")
        calls: dict[str, Callable[[], object]] = {
            "release": lambda: service.release(
                esc.id, payee_id=HUNTER, amount=eur, actor=POSTER, idempotency_key=new_key()
            ),
            "refund": lambda: service.refund(
                esc.id, amount=eur, actor=ADMIN, idempotency_key=new_key()
            ),
        }
        guard = NothingWritten(service, store, fake)
        refused(guard, calls[command], errors.ValidationError, "eur", "usd", esc.id)

    def test_a_three_decimal_amount_must_end_in_zero(
        self, two_currencies: EscrowService, store: InMemoryStore, fake: FakeGateway
    ) -> None:
        guard = NothingWritten(two_currencies, store, fake)
        call = open_with(two_currencies, amount=Money(12_345, "kwd"))
        refused(guard, call, errors.ValidationError, "kwd", "multiple of 10", "end in 0")

    def test_a_three_decimal_amount_ending_in_zero_is_accepted(
        self, two_currencies: EscrowService
    ) -> None:
        esc = two_currencies.open_escrow(
            bounty_id="b-kwd", poster_id=POSTER.id, amount=Money(12_340, "kwd"), actor=POSTER
        )
        assert esc.amount == Money(12_340, "kwd")
        assert esc.payment_ref is not None


class TestIdsAndActors:
    @pytest.mark.parametrize(
        "command", ["release", "refund", "reverse", "cancel", "clear_fraud_warning"]
    )
    def test_unknown_escrow(self, world: World, command: str) -> None:
        service = world.service
        calls: dict[str, Callable[[], object]] = {
            "release": lambda: service.release(
                "esc_nope", payee_id=HUNTER, actor=POSTER, idempotency_key=new_key()
            ),
            "refund": lambda: service.refund("esc_nope", actor=ADMIN, idempotency_key=new_key()),
            "reverse": lambda: service.reverse(
                "esc_nope", "op_nope", actor=ADMIN, idempotency_key=new_key()
            ),
            "cancel": lambda: service.cancel("esc_nope", actor=POSTER),
            "clear_fraud_warning": lambda: service.clear_fraud_warning("esc_nope", actor=ADMIN),
        }
        refused(world.snapshot(), calls[command], errors.EscrowNotFoundError, "esc_nope")

    def test_reading_an_unknown_escrow_names_it(self, world: World) -> None:
        service = world.service
        with pytest.raises(errors.EscrowNotFoundError, match="esc_nope"):
            service.get("esc_nope")
        with pytest.raises(errors.OperationNotFoundError, match="op_nope"):
            service.get_operation("op_nope")

    def test_unknown_operation_on_reverse(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        refused(
            world.snapshot(),
            lambda: service.reverse(esc_id, "op_nope", actor=ADMIN, idempotency_key=new_key()),
            errors.OperationNotFoundError,
            "op_nope",
        )

    def test_an_operation_of_another_escrow_is_unknown_to_reverse(
        self, world: World, fake: FakeGateway
    ) -> None:
        service, esc_id = world.service, world.escrow_id
        other = funded(service, fake, bounty="b2")
        release = service.release(
            other.id, payee_id=HUNTER, amount=usd(1_000), actor=POSTER, idempotency_key=new_key()
        )
        refused(
            world.snapshot(),
            lambda: service.reverse(esc_id, release.id, actor=ADMIN, idempotency_key=new_key()),
            errors.OperationNotFoundError,
            release.id,
            esc_id,
        )

    def test_unknown_operation_on_cancel_operation(self, world: World) -> None:
        service = world.service
        refused(
            world.snapshot(),
            lambda: service.cancel_operation("op_nope", actor=POSTER),
            errors.OperationNotFoundError,
            "op_nope",
        )

    def test_unregistered_payee_on_release(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        refused(
            world.snapshot(),
            lambda: service.release(
                esc_id, payee_id="nobody", actor=POSTER, idempotency_key=new_key()
            ),
            errors.PayeeNotFoundError,
            "nobody",
            "register_payee",
        )

    @pytest.mark.parametrize(
        "bounty_id", ["", "   ", None, 7], ids=["empty", "blank", "none", "int"]
    )
    def test_bounty_id_must_be_a_non_empty_string(self, world: World, bounty_id: object) -> None:
        service = world.service
        call = open_with(service, bounty_id=bounty_id)
        refused(world.snapshot(), call, errors.ValidationError, "bounty_id", "non-empty")

    def test_empty_payee_id_on_release(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        refused(
            world.snapshot(),
            lambda: service.release(esc_id, payee_id="", actor=POSTER, idempotency_key=new_key()),
            errors.ValidationError,
            "payee_id",
        )

    @pytest.mark.parametrize(
        "actor", ["poster-1", None, {"id": "poster-1"}], ids=["str", "none", "dict"]
    )
    def test_actor_must_be_an_actor(self, world: World, actor: object) -> None:
        service, esc_id = world.service, world.escrow_id
        for call in (
            open_with(service, actor=actor),
            lambda: service.release(
                esc_id, payee_id=HUNTER, actor=actor, idempotency_key=new_key()
            ),
            lambda: service.refund(esc_id, actor=actor, idempotency_key=new_key()),
            lambda: service.cancel(esc_id, actor=actor),
        ):
            refused(world.snapshot(), call, errors.ValidationError, "actor", "Actor")

    def test_actor_roles_must_not_be_a_bare_string(self) -> None:
        """``roles="admin"`` would grant the roles "a", "d", "m"...; it is refused."""
        with pytest.raises(TypeError, match="collection"):
            Actor("m1", roles="admin")  # type: ignore[arg-type]

    @pytest.mark.parametrize("country", ["USA", "U", "", "1A", None], ids=str)
    def test_register_payee_needs_a_two_letter_country(
        self, world: World, fake: FakeGateway, country: object
    ) -> None:
        service = world.service
        refused(
            world.snapshot(),
            lambda: service.register_payee("hunter-9", country=country),
            errors.ValidationError,
            "country",
            "two-letter",
        )
        with pytest.raises(errors.PayeeNotFoundError):
            service.get_payee("hunter-9")


class TestIdempotencyKeyReuse:
    def test_same_key_other_parameters_is_a_conflict_and_writes_nothing(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        first = service.release(
            esc_id, payee_id=HUNTER, amount=usd(1_000), actor=POSTER, idempotency_key="k"
        )
        refused(
            world.snapshot(),
            lambda: service.release(
                esc_id, payee_id=HUNTER, amount=usd(2_000), actor=POSTER, idempotency_key="k"
            ),
            errors.IdempotencyConflictError,
            "'k'",
            "other parameters",
        )
        assert [op.id for op in service.operations(esc_id) if op.kind == "release"] == [first.id]

    def test_same_key_for_another_command_is_a_conflict(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        service.refund(esc_id, amount=usd(1_000), actor=ADMIN, idempotency_key="k")
        refused(
            world.snapshot(),
            lambda: service.release(
                esc_id, payee_id=HUNTER, amount=usd(1_000), actor=ADMIN, idempotency_key="k"
            ),
            errors.IdempotencyConflictError,
            "'k'",
            "refund",
        )

    def test_same_key_other_open_escrow_is_a_conflict(self, world: World) -> None:
        service = world.service
        open_with(service, idempotency_key="open-k")()
        call = open_with(service, idempotency_key="open-k", amount=usd(30_000))
        refused(world.snapshot(), call, errors.IdempotencyConflictError, "'open-k'")


class TestConstruction:
    @pytest.mark.parametrize("namespace", ["my:app", "", ":"], ids=["colon", "empty", "only"])
    def test_a_namespace_must_be_non_empty_without_a_colon(
        self, store: InMemoryStore, fake: FakeGateway, namespace: str
    ) -> None:
        with pytest.raises(errors.ValidationError) as info:
            EscrowService(store, fake, namespace=namespace)
        assert "namespace" in str(info.value)
        assert "':'" in str(info.value)
        assert store.commits == 0

    def test_settings_refuse_an_unknown_currency(self) -> None:
        with pytest.raises(ValueError, match="unknown currencies"):
            EscrowSettings(settlement_currencies=frozenset({"USD"}))


class TestIdempotencyKeyRequired:
    """Money-moving calls without an idempotency key are refused: a double click must not
    become two transfers."""

    @pytest.mark.parametrize("key", [None, "", "   ", 42])
    @pytest.mark.parametrize("command", ["release", "refund", "reverse"])
    def test_money_moving_commands_refuse_a_missing_key(
        self, world: World, command: str, key: object
    ) -> None:
        service, esc_id = world.service, world.escrow_id
        release = service.release(
            esc_id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key=new_key()
        )
        calls: dict[str, Callable[[], object]] = {
            "release": lambda: service.release(
                esc_id,
                payee_id=HUNTER,
                actor=POSTER,
                idempotency_key=key,  # type: ignore[arg-type]
            ),
            "refund": lambda: service.refund(esc_id, actor=ADMIN, idempotency_key=key),  # type: ignore[arg-type]
            "reverse": lambda: service.reverse(
                esc_id,
                release.id,
                actor=ADMIN,
                idempotency_key=key,  # type: ignore[arg-type]
            ),
        }
        refused(
            world.snapshot(), calls[command], errors.ValidationError, command, "idempotency_key"
        )

    def test_two_identical_releases_with_one_key_move_the_money_once(self, world: World) -> None:
        service, esc_id = world.service, world.escrow_id
        first = service.release(
            esc_id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key="click"
        )
        second = service.release(
            esc_id, payee_id=HUNTER, amount=usd(5_000), actor=POSTER, idempotency_key="click"
        )
        assert second.id == first.id
        assert [m.kind for m in world.fake.movements] == ["transfer"]
