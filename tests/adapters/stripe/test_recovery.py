"""Crash safety end to end (DESIGN §7): `EscrowService` over `StripeGateway` and the stand-in.

Every test drives the real service, with an `InMemoryStore` and a `ManualClock`, through the
Stripe SDK's own HTTP traffic (answered by `StripeStandIn`), and checks what reached "Stripe":
the requests and their ``Idempotency-Key`` headers, the replays, and that each operation moved
money exactly once, however its first answer was lost.

Card declines are not here: the payer confirms the PaymentIntent in the host's frontend, and
the service only ever hears of the outcome through ``payment_intent.*`` events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import attrs
import httpx
import pytest
import respx

from bountyescrow import (
    Actor,
    Escrow,
    EscrowService,
    GatewayEvent,
    Money,
    Operation,
    OperationStatus,
    RecoveryReport,
    WebhookStatus,
)
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._parse import parse_object
from bountyescrow.errors import (
    DestinationNotReadyError,
    GatewayAuthenticationError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    IdempotencyKeyInUseError,
    IdempotencyMismatchError,
    PlatformBalanceInsufficientError,
)
from bountyescrow.testing import InMemoryStore, ManualClock
from tests.keys import new_key

from . import builders
from .stand_in import StripeStandIn
from .support import API, form, query

POSTER = Actor("poster-1")
ADMIN = Actor("admin-1", roles={"admin"})
HUNTER = "hunter-1"
NAMESPACE = "test"
#: Past the lease and the first back-offs (30 s, 60 s) of an operation whose answer was lost.
LATER = timedelta(minutes=2)
#: Past `EscrowSettings.gateway_key_window` (23 h): Stripe may have forgotten the key.
PAST_WINDOW = timedelta(hours=23, minutes=1)

PENDING = OperationStatus.PENDING
SUCCEEDED = OperationStatus.SUCCEEDED
FAILED = OperationStatus.FAILED
AWAITING_PAYEE = OperationStatus.AWAITING_PAYEE


def usd(amount: int) -> Money:
    return Money(amount, "usd")


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def service(
    stand_in: StripeStandIn, gateway: StripeGateway, clock: ManualClock
) -> Iterator[EscrowService]:
    svc = EscrowService(InMemoryStore(), gateway, fee_bps=1_000, namespace=NAMESPACE, clock=clock)
    yield svc
    assert svc.check_invariants() == []


class ErrorSpy:
    """Keeps every `GatewayError` the wrapped gateway methods raise (they still raise it)."""

    def __init__(self) -> None:
        self.errors: list[GatewayError] = []

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except GatewayError as exc:
                self.errors.append(exc)
                raise

        return spied


@pytest.fixture
def spy(gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch) -> ErrorSpy:
    errors = ErrorSpy()
    for name in ("create_transfer", "create_refund", "create_reversal"):
        monkeypatch.setattr(gateway, name, errors.wrap(getattr(gateway, name)))
    return errors


class FrontDoor:
    """Answers the next POSTs itself, in front of the stand-in: failures it cannot inject.

    Whatever it answers never reaches the stand-in, so nothing is stored under the key (as
    with a refused API key or a connection that never opened). Its requests are still listed
    in ``stand_in.requests``.
    """

    def __init__(self, router: respx.MockRouter, stand_in: StripeStandIn) -> None:
        (self._route,) = router.routes
        self._stand_in = stand_in
        self._behind = self._route.side_effect
        self._route.side_effect = self._handle
        self._next: list[Callable[[httpx.Request], httpx.Response]] = []

    def answer_next_post(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self._next.append(answer)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self._next:
            self._stand_in.requests.append(request)
            return self._next.pop(0)(request)
        assert callable(self._behind)
        response = self._behind(request)
        assert isinstance(response, httpx.Response)
        return response


@pytest.fixture
def front_door(router: respx.MockRouter, stand_in: StripeStandIn) -> FrontDoor:
    return FrontDoor(router, stand_in)


def unauthorized(request: httpx.Request) -> httpx.Response:
    body = builders.error(
        "invalid_request_error", "Invalid API Key provided: sk_test_****************0000"
    )
    return httpx.Response(401, json=body, headers={"Request-Id": "req_unauthorized"})


def connection_refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


# --- helpers ------------------------------------------------------------------------------------


def deliver(service: EscrowService, event_type: str, data: dict[str, Any]) -> WebhookStatus:
    """Apply the event Stripe would send about the stand-in's object `data`."""
    event = GatewayEvent(
        id=f"evt_{uuid.uuid4().hex[:24]}",
        type=event_type,
        object=parse_object(data),
        livemode=False,
    )
    return service.apply_event(event)


def funded(service: EscrowService, stand_in: StripeStandIn, amount: int = 25_000) -> Escrow:
    """Open an escrow, let the poster pay, and deliver ``payment_intent.succeeded``."""
    escrow = service.open_escrow(
        bounty_id="bounty-1", poster_id=POSTER.id, amount=usd(amount), actor=POSTER
    )
    assert escrow.payment_ref is not None
    stand_in.succeed(escrow.payment_ref)
    status = deliver(
        service, "payment_intent.succeeded", stand_in.payment_intents[escrow.payment_ref]
    )
    assert status is WebhookStatus.PROCESSED
    escrow = service.get(escrow.id)
    assert escrow.held == usd(amount)
    assert escrow.charge_ref in stand_in.charges
    return escrow


def ready_payee(service: EscrowService, stand_in: StripeStandIn, payee_id: str = HUNTER) -> str:
    """Register the payee, finish onboarding at the stand-in, deliver ``account.updated``."""
    payee = service.register_payee(payee_id, email=f"{payee_id}@example.com", country="US")
    stand_in.activate(payee.account_ref)
    deliver(service, "account.updated", stand_in.accounts[payee.account_ref])
    assert service.get_payee(payee_id).ready
    return payee.account_ref


def release(service: EscrowService, escrow: Escrow, amount: int = 10_000) -> Operation:
    """The poster releases `amount` to the hunter, with a fresh idempotency key."""
    return service.release(
        escrow.id, payee_id=HUNTER, amount=usd(amount), actor=POSTER, idempotency_key=new_key()
    )


def payable(service: EscrowService, stand_in: StripeStandIn) -> Escrow:
    """A funded escrow whose hunter is ready to be paid."""
    escrow = funded(service, stand_in)
    ready_payee(service, stand_in)
    return escrow


def released(
    service: EscrowService, stand_in: StripeStandIn, escrow: Escrow, amount: int = 10_000
) -> Operation:
    """A release that went through at the first attempt."""
    op = release(service, escrow, amount)
    assert op.status is SUCCEEDED
    return op


def key(op: Operation, generation: int = 0) -> str:
    return f"bountyescrow:{NAMESPACE}:{op.id}:{generation}"


def sent(stand_in: StripeStandIn, method: str, path: str) -> list[httpx.Request]:
    """The requests that reached "Stripe" with this method and path, oldest first."""
    return [r for r in stand_in.requests if r.method == method and r.url.path == path]


def answers(stand_in: StripeStandIn, idempotency_key: str) -> list[httpx.Response]:
    """The answers given to requests with this key (a lost answer is not listed)."""
    return [r for r in stand_in.responses if r.headers.get("Idempotency-Key") == idempotency_key]


def reversal_path(transfer_ref: str) -> str:
    return f"/v1/transfers/{transfer_ref}/reversals"


def reversals(stand_in: StripeStandIn) -> list[dict[str, Any]]:
    return [rev for tr in stand_in.transfers.values() for rev in tr["reversals"]["data"]]


def paid_on_the_retry_with_the_same_key(
    service: EscrowService, stand_in: StripeStandIn, op: Operation
) -> None:
    """The release went out once, on the second POST, under the first POST's key."""
    posts = sent(stand_in, "POST", "/v1/transfers")
    assert [p.headers["Idempotency-Key"] for p in posts] == [key(op), key(op)]
    (transfer,) = stand_in.transfers.values()
    done = service.get_operation(op.id)
    assert (done.status, done.gateway_ref) == (SUCCEEDED, transfer["id"])


def recover_after(
    service: EscrowService,
    stand_in: StripeStandIn,
    clock: ManualClock,
    op: Operation,
    later: timedelta,
) -> None:
    """Recover `later` after `op` began; past the key window Stripe has forgotten its key."""
    clock.set(op.created_at + later)
    if later == PAST_WINDOW:
        stand_in._keys.clear()
    assert counts(service.recover()) == ONE_DONE


def sent_once_without_paying_twice(
    stand_in: StripeStandIn,
    op: Operation,
    later: timedelta,
    posts: list[httpx.Request],
    lookups: list[httpx.Request],
) -> None:
    """Inside the key window the same key is replayed; past it one look-up and no resend."""
    if later == LATER:
        assert [p.headers["Idempotency-Key"] for p in posts] == [key(op), key(op)]
        assert form(posts[1]) == form(posts[0])
        (replay,) = answers(stand_in, key(op))
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert lookups == []
    else:
        assert len(posts) == 1
        assert len(lookups) == 1


def counts(report: RecoveryReport) -> RecoveryReport:
    """The report's counts: the oldest pending age is asserted in tests/service."""
    return attrs.evolve(report, oldest_pending_age=None)


def nothing_due(service: EscrowService) -> None:
    assert counts(service.recover()) == RecoveryReport(
        claimed=0, completed=0, still_pending=0, errors=0
    )


ONE_DONE = RecoveryReport(claimed=1, completed=1, still_pending=0, errors=0)
ONE_PENDING = RecoveryReport(claimed=1, completed=0, still_pending=1, errors=0)


# --- 1 to 3: transfers whose answer was lost ------------------------------------------------------


class TestTransferWithLostAnswer:
    def test_timeout_after_the_effect_is_resent_with_the_same_key_and_replayed(
        self, service: EscrowService, stand_in: StripeStandIn, clock: ManualClock, spy: ErrorSpy
    ) -> None:
        escrow = funded(service, stand_in)
        account = ready_payee(service, stand_in)
        stand_in.fail_next("timeout_after_effect")

        op = release(service, escrow)

        assert (op.status, op.gateway_ref, op.claimed_until) == (PENDING, None, None)
        assert len(stand_in.transfers) == 1  # Stripe made it; the answer was lost
        (timeout,) = spy.errors
        assert isinstance(timeout, GatewayUnavailableError)
        assert not timeout.replayed
        nothing_due(service)  # not before its back-off

        clock.advance(LATER)
        assert counts(service.recover()) == ONE_DONE

        first, second = sent(stand_in, "POST", "/v1/transfers")
        assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == key(op)
        assert form(second) == form(first)
        (replay,) = answers(stand_in, key(op))
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert sent(stand_in, "GET", "/v1/transfers") == []  # inside the window: no look-up
        (transfer,) = stand_in.transfers.values()
        assert replay.json()["id"] == transfer["id"]
        assert (transfer["destination"], transfer["amount"]) == (account, 9_000)
        assert transfer["source_transaction"] == escrow.charge_ref
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref, done.generation) == (SUCCEEDED, transfer["id"], 0)
        escrow = service.get(escrow.id)
        assert (escrow.released, escrow.fees, escrow.available) == (
            usd(10_000),
            usd(1_000),
            usd(15_000),
        )
        nothing_due(service)

    def test_replayed_500_waits_for_the_key_window_then_sends_a_new_generation(
        self, service: EscrowService, stand_in: StripeStandIn, clock: ManualClock, spy: ErrorSpy
    ) -> None:
        escrow = payable(service, stand_in)
        stand_in.fail_next("server_error")  # stored under the key, nothing made

        op = release(service, escrow)
        assert op.status is PENDING
        assert op.gateway_status == "unknown"

        # The retry with the same key gets the stored 500 back.
        clock.advance(LATER)
        assert counts(service.recover()) == ONE_PENDING
        first, second = spy.errors
        assert isinstance(first, GatewayUnavailableError)
        assert not first.replayed
        assert isinstance(second, GatewayUnavailableError)
        assert second.replayed
        assert answers(stand_in, key(op))[-1].headers["Idempotent-Replayed"] == "true"
        op = service.get_operation(op.id)
        assert (op.status, op.gateway_status, op.generation) == (PENDING, "replayed_error", 0)

        # Inside the window the same key would only replay the 500: look up, then wait.
        clock.advance(LATER)
        assert counts(service.recover()) == ONE_PENDING
        posts = sent(stand_in, "POST", "/v1/transfers")
        assert len(posts) == 2
        (lookup,) = sent(stand_in, "GET", "/v1/transfers")
        assert query(lookup)["transfer_group"] == escrow.transfer_group
        op = service.get_operation(op.id)
        assert (op.status, op.generation) == (PENDING, 0)
        assert op.next_attempt_at == op.created_at + timedelta(hours=23)
        clock.advance(timedelta(hours=12))
        nothing_due(service)
        assert len(sent(stand_in, "POST", "/v1/transfers")) == 2
        assert stand_in.transfers == {}

        # Past the window: look up again, find nothing, send generation 1.
        clock.set(op.created_at + PAST_WINDOW)
        assert counts(service.recover()) == ONE_DONE
        lookups = sent(stand_in, "GET", "/v1/transfers")
        assert len(lookups) == 2
        assert query(lookups[-1])["transfer_group"] == escrow.transfer_group
        posts = sent(stand_in, "POST", "/v1/transfers")
        assert [p.headers["Idempotency-Key"] for p in posts] == [key(op), key(op), key(op, 1)]
        assert form(posts[2]) == form(posts[0])
        (transfer,) = stand_in.transfers.values()
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref, done.generation) == (SUCCEEDED, transfer["id"], 1)
        assert transfer["metadata"]["bountyescrow_operation_id"] == op.id

    def test_replayed_500_after_the_effect_is_settled_by_the_look_up(
        self, service: EscrowService, stand_in: StripeStandIn, clock: ManualClock
    ) -> None:
        escrow = payable(service, stand_in)
        stand_in.fail_next("server_error_after_effect")

        op = release(service, escrow)
        assert op.status is PENDING
        clock.advance(LATER)
        assert counts(service.recover()) == ONE_PENDING  # the same key: the stored 500 again

        clock.advance(LATER)
        assert counts(service.recover()) == ONE_DONE

        assert len(sent(stand_in, "POST", "/v1/transfers")) == 2  # nothing sent after the replay
        (lookup,) = sent(stand_in, "GET", "/v1/transfers")
        assert query(lookup)["transfer_group"] == escrow.transfer_group
        (transfer,) = stand_in.transfers.values()
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref, done.generation) == (SUCCEEDED, transfer["id"], 0)

    def test_past_the_key_window_the_look_up_finds_the_transfer_and_nothing_is_resent(
        self, service: EscrowService, stand_in: StripeStandIn, clock: ManualClock
    ) -> None:
        escrow = payable(service, stand_in)
        stand_in.fail_next("timeout_after_effect")
        op = release(service, escrow)
        assert op.status is PENDING
        (transfer,) = stand_in.transfers.values()

        # Nobody recovered for a day; Stripe forgot the key (resending it would pay again).
        clock.set(op.created_at + PAST_WINDOW)
        stand_in._keys.clear()
        assert counts(service.recover()) == ONE_DONE

        assert len(sent(stand_in, "POST", "/v1/transfers")) == 1
        (lookup,) = sent(stand_in, "GET", "/v1/transfers")
        assert query(lookup)["transfer_group"] == escrow.transfer_group
        assert list(stand_in.transfers) == [transfer["id"]]
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref, done.generation) == (SUCCEEDED, transfer["id"], 0)
        assert service.get(escrow.id).released == usd(10_000)

    def test_past_the_key_window_with_nothing_made_sends_a_new_generation(
        self, service: EscrowService, stand_in: StripeStandIn, clock: ManualClock
    ) -> None:
        escrow = payable(service, stand_in)
        stand_in.fail_next("timeout")  # lost on the way: nothing made, nothing stored
        op = release(service, escrow)
        assert stand_in.transfers == {}

        clock.set(op.created_at + PAST_WINDOW)
        assert counts(service.recover()) == ONE_DONE

        posts = sent(stand_in, "POST", "/v1/transfers")
        assert [p.headers["Idempotency-Key"] for p in posts] == [key(op), key(op, 1)]
        assert len(sent(stand_in, "GET", "/v1/transfers")) == 1
        (transfer,) = stand_in.transfers.values()
        assert service.get_operation(op.id).gateway_ref == transfer["id"]


# --- 4: refunds and reversals whose answer was lost ---------------------------------------------


@pytest.mark.parametrize("later", [LATER, PAST_WINDOW], ids=["same-key", "look-up"])
class TestRefundAndReversalWithLostAnswer:
    """Inside the key window the same key is replayed; past it the look-up finds the object."""

    def test_refund(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        clock: ManualClock,
        later: timedelta,
    ) -> None:
        escrow = funded(service, stand_in)
        stand_in.fail_next("timeout_after_effect")

        op = service.refund(escrow.id, amount=usd(10_000), actor=ADMIN, idempotency_key=new_key())

        assert op.status is PENDING
        assert len(stand_in.refunds) == 1
        recover_after(service, stand_in, clock, op, later)

        (refund,) = stand_in.refunds.values()
        assert (refund["amount"], refund["payment_intent"]) == (10_000, escrow.payment_ref)
        lookups = sent(stand_in, "GET", "/v1/refunds")
        sent_once_without_paying_twice(
            stand_in, op, later, sent(stand_in, "POST", "/v1/refunds"), lookups
        )
        assert all(query(lookup)["payment_intent"] == escrow.payment_ref for lookup in lookups)
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref) == (SUCCEEDED, refund["id"])
        escrow = service.get(escrow.id)
        assert (escrow.refunded, escrow.available) == (usd(10_000), usd(15_000))

    def test_reversal(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        clock: ManualClock,
        later: timedelta,
    ) -> None:
        escrow = payable(service, stand_in)
        release = released(service, stand_in, escrow)
        assert release.gateway_ref is not None
        stand_in.fail_next("timeout_after_effect")

        op = service.reverse(escrow.id, release.id, actor=ADMIN, idempotency_key=new_key())

        assert op.status is PENDING
        assert len(reversals(stand_in)) == 1
        recover_after(service, stand_in, clock, op, later)

        (reversal,) = reversals(stand_in)
        assert (reversal["amount"], reversal["transfer"]) == (9_000, release.gateway_ref)
        path = reversal_path(release.gateway_ref)
        sent_once_without_paying_twice(
            stand_in, op, later, sent(stand_in, "POST", path), sent(stand_in, "GET", path)
        )
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref) == (SUCCEEDED, reversal["id"])
        assert service.get_operation(release.id).reversed == usd(9_000)
        escrow = service.get(escrow.id)
        assert escrow.available == usd(25_000)


# --- 5: Stripe's error classes through the service ----------------------------------------------


class TestStripeErrorsThroughTheService:
    def test_destination_without_transfers_capability_puts_the_release_back_to_awaiting_payee(
        self, service: EscrowService, stand_in: StripeStandIn, spy: ErrorSpy
    ) -> None:
        escrow = funded(service, stand_in)
        account = ready_payee(service, stand_in)
        # Stripe paused the capability; the account.updated event has not arrived yet.
        stand_in.accounts[account]["capabilities"]["transfers"] = "inactive"

        op = release(service, escrow)

        (error,) = spy.errors
        assert isinstance(error, DestinationNotReadyError)
        assert error.code == "insufficient_capabilities_for_transfer"
        assert op.status is AWAITING_PAYEE
        assert op.error is not None
        assert "capabilities" in op.error
        assert stand_in.transfers == {}
        assert not service.get_payee(HUNTER).ready
        assert service.get(escrow.id).available == usd(15_000)  # still held for the payee

    def test_release_put_back_to_awaiting_payee_is_paid_once_the_payee_is_ready_again(
        self, service: EscrowService, stand_in: StripeStandIn
    ) -> None:
        escrow = funded(service, stand_in)
        account = ready_payee(service, stand_in)
        stand_in.accounts[account]["capabilities"]["transfers"] = "inactive"
        op = release(service, escrow)
        assert op.status is AWAITING_PAYEE

        stand_in.activate(account)
        deliver(service, "account.updated", stand_in.accounts[account])

        # The first key's answer was a definitive refusal: nothing moved under it, and Stripe
        # replays that 400 to the same key, so the release must go out under another key.
        done = service.get_operation(op.id)
        assert (done.status, done.error) == (SUCCEEDED, None)
        first, again = sent(stand_in, "POST", "/v1/transfers")
        assert first.headers["Idempotency-Key"] == key(op)
        assert again.headers["Idempotency-Key"] != key(op)
        assert form(again) == form(first)
        (transfer,) = stand_in.transfers.values()
        assert (done.gateway_ref, transfer["destination"]) == (transfer["id"], account)
        assert service.get_payee(HUNTER).ready

    def test_invalid_transfer_fails_with_stripes_message_and_frees_the_money(
        self, service: EscrowService, stand_in: StripeStandIn, spy: ErrorSpy
    ) -> None:
        escrow = payable(service, stand_in)
        assert escrow.charge_ref is not None
        del stand_in.charges[escrow.charge_ref]  # Stripe no longer knows the source charge

        op = release(service, escrow)

        (error,) = spy.errors
        assert type(error) is GatewayRejectedError
        assert error.code == "resource_missing"
        assert op.status is FAILED
        assert op.error is not None
        assert f"No such charge: '{escrow.charge_ref}'" in op.error
        assert stand_in.transfers == {}
        escrow = service.get(escrow.id)
        assert (escrow.available, escrow.reserved, escrow.released) == (
            usd(25_000),
            usd(0),
            usd(0),
        )

    def test_invalid_refund_fails_with_stripes_message_and_frees_the_money(
        self, service: EscrowService, stand_in: StripeStandIn, spy: ErrorSpy
    ) -> None:
        escrow = funded(service, stand_in)
        assert escrow.charge_ref is not None
        # Refunded in the Dashboard a moment ago; its charge.refunded event is still on its way.
        stand_in.charges[escrow.charge_ref]["amount_refunded"] = 20_000

        op = service.refund(escrow.id, amount=usd(10_000), actor=ADMIN, idempotency_key=new_key())

        (error,) = spy.errors
        assert type(error) is GatewayRejectedError
        assert op.status is FAILED
        assert op.error is not None
        assert (
            "Refund amount (10000) is greater than unrefunded amount on charge (5000)" in op.error
        )
        assert stand_in.refunds == {}
        escrow = service.get(escrow.id)
        assert (escrow.available, escrow.refunded) == (usd(25_000), usd(0))

    def test_idempotency_error_keeps_the_operation_pending_and_alerts(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        clock: ManualClock,
        spy: ErrorSpy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        escrow = payable(service, stand_in)
        stand_in.fail_next("timeout")  # lost before Stripe saw it: the key is still unused
        op = release(service, escrow)
        assert op.status is PENDING
        # Something else (a bug, a second deployment on the namespace) uses the key first.
        other = httpx.post(
            f"{API}/v1/transfers",
            content=urlencode(
                {"amount": "1", "currency": "usd", "destination": "acct_1Qelsewhere"}
            ),
            headers={
                "Idempotency-Key": key(op),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert other.status_code == 400

        clock.advance(LATER)
        with caplog.at_level(logging.ERROR, logger="bountyescrow"):
            assert counts(service.recover()) == ONE_PENDING

        mismatch = spy.errors[-1]
        assert isinstance(mismatch, IdempotencyMismatchError)
        alerts = [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        assert any(op.id in r.getMessage() for r in alerts)
        logged = [r for r in caplog.records if r.name == "bountyescrow.stripe"]
        assert any(key(op) in r.getMessage() for r in logged)
        op = service.get_operation(op.id)
        assert op.status is PENDING
        assert op.error is not None
        assert "Keys for idempotent requests" in op.error
        assert op.next_attempt_at == clock.now() + timedelta(hours=1)

        # Retried hourly, never failed; nothing moved.
        clock.advance(timedelta(hours=1))
        assert counts(service.recover()) == ONE_PENDING
        assert service.get_operation(op.id).status is PENDING
        assert stand_in.transfers == {}
        assert service.get(escrow.id).available == usd(15_000)

    def test_a_key_still_in_use_stays_pending_briefly_without_an_alert(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        clock: ManualClock,
        spy: ErrorSpy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Stripe's 409: not a bug, so no hourly back-off and no page; the same key again."""
        escrow = payable(service, stand_in)
        stand_in.fail_next("key_in_use")

        with caplog.at_level(logging.WARNING, logger="bountyescrow"):
            op = release(service, escrow)

        (error,) = spy.errors
        assert isinstance(error, IdempotencyKeyInUseError)
        assert op.status is PENDING
        assert op.next_attempt_at is not None
        assert op.next_attempt_at <= clock.now() + timedelta(minutes=1)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert stand_in.transfers == {}

        clock.advance(LATER)
        assert counts(service.recover()) == ONE_DONE
        paid_on_the_retry_with_the_same_key(service, stand_in, op)

    def test_a_platform_balance_that_was_paid_out_keeps_the_release_owed_and_alerts(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        clock: ManualClock,
        spy: ErrorSpy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """``balance_insufficient`` on a transfer is a reserve breach, not a failed release."""
        escrow = payable(service, stand_in)
        stand_in.fail_next("balance_insufficient")

        with caplog.at_level(logging.ERROR, logger="bountyescrow.alerts"):
            op = release(service, escrow)

        (error,) = spy.errors
        assert isinstance(error, PlatformBalanceInsufficientError)
        assert op.status is PENDING
        alerts = [r for r in caplog.records if r.name == "bountyescrow.alerts"]
        assert [getattr(r, "alert", None) for r in alerts] == ["reserve_breach"]
        assert stand_in.transfers == {}
        assert service.get(escrow.id).available == usd(15_000)  # still reserved

        clock.advance(timedelta(hours=3))  # the balance was topped up meanwhile
        assert counts(service.recover()) == ONE_DONE
        (transfer,) = stand_in.transfers.values()
        done = service.get_operation(op.id)
        assert (done.status, done.gateway_ref) == (SUCCEEDED, transfer["id"])

    def test_refused_api_key_keeps_the_operation_pending_with_the_error(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        front_door: FrontDoor,
        clock: ManualClock,
        spy: ErrorSpy,
    ) -> None:
        escrow = payable(service, stand_in)
        front_door.answer_next_post(unauthorized)

        op = release(service, escrow)

        (error,) = spy.errors
        assert isinstance(error, GatewayAuthenticationError)
        assert op.status is PENDING
        assert op.error is not None
        assert "Stripe refused the API key" in op.error
        assert op.next_attempt_at == clock.now() + timedelta(hours=1)
        assert stand_in.transfers == {}

        clock.advance(LATER)
        nothing_due(service)  # a refused key backs off an hour
        clock.advance(timedelta(hours=1))
        assert counts(service.recover()) == ONE_DONE  # the key was fixed meanwhile

        paid_on_the_retry_with_the_same_key(service, stand_in, op)

    @pytest.mark.parametrize("fault", ["rate_limit", "timeout", "connection_refused"])
    def test_rate_limits_and_connection_errors_stay_pending_until_recovered(
        self,
        service: EscrowService,
        stand_in: StripeStandIn,
        front_door: FrontDoor,
        clock: ManualClock,
        spy: ErrorSpy,
        fault: str,
    ) -> None:
        escrow = payable(service, stand_in)
        if fault == "connection_refused":
            front_door.answer_next_post(connection_refused)
        else:
            stand_in.fail_next("rate_limit" if fault == "rate_limit" else "timeout")

        op = release(service, escrow)

        (error,) = spy.errors
        assert isinstance(error, GatewayUnavailableError)
        assert not error.replayed
        assert (op.status, op.gateway_status) == (PENDING, "unknown")
        assert op.error is not None
        assert stand_in.transfers == {}

        clock.advance(LATER)
        assert counts(service.recover()) == ONE_DONE

        paid_on_the_retry_with_the_same_key(service, stand_in, op)
