"""How Stripe's failures become bountyescrow's gateway errors (the adapter's one choke point)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import respx
import stripe

from bountyescrow import errors
from bountyescrow.adapters.stripe import StripeGateway, _errors
from bountyescrow.domain.gateway_objects import (
    CancelPayment,
    CreatePayment,
    CreateRefund,
    CreateReversal,
    CreateTransfer,
)
from bountyescrow.domain.money import Money

from . import builders
from .support import TEST_KEY, answer

KEY = "bountyescrow:test:op_1:0"
USD = Money(5_000, "usd")

Call = Callable[[StripeGateway], object]
CALLS: Mapping[str, tuple[str, str, Call]] = {
    "create_payment": (
        "POST",
        "/v1/payment_intents",
        lambda g: g.create_payment(
            CreatePayment(amount=USD, transfer_group="g", metadata={}), idempotency_key=KEY
        ),
    ),
    "cancel_payment": (
        "POST",
        "/v1/payment_intents/pi_1/cancel",
        lambda g: g.cancel_payment(CancelPayment(payment_ref="pi_1"), idempotency_key=KEY),
    ),
    "create_transfer": (
        "POST",
        "/v1/transfers",
        lambda g: g.create_transfer(
            CreateTransfer(
                amount=USD,
                destination="acct_1",
                source_transaction="ch_1",
                transfer_group="g",
                metadata={},
            ),
            idempotency_key=KEY,
        ),
    ),
    "create_refund": (
        "POST",
        "/v1/refunds",
        lambda g: g.create_refund(
            CreateRefund(amount=USD, payment_ref="pi_1", metadata={}), idempotency_key=KEY
        ),
    ),
    "create_reversal": (
        "POST",
        "/v1/transfers/tr_1/reversals",
        lambda g: g.create_reversal(
            CreateReversal(amount=USD, transfer_ref="tr_1", metadata={}), idempotency_key=KEY
        ),
    ),
    "get_payment": ("GET", "/v1/payment_intents/pi_1", lambda g: g.get_payment("pi_1")),
    "get_account": ("GET", "/v1/accounts/acct_1", lambda g: g.get_account("acct_1")),
}


def fail(
    router: respx.MockRouter,
    gateway: StripeGateway,
    action: str,
    response: httpx.Response | Exception,
) -> errors.GatewayError:
    """Answer `action`'s request with `response`; return the gateway error it raised."""
    method, path, call = CALLS[action]
    router.route(method=method, path=path).mock(
        side_effect=response if isinstance(response, Exception) else [response]
    )
    with pytest.raises(errors.GatewayError) as caught:
        call(gateway)
    return caught.value


def stripe_error(status: int, kind: str, message: str, **fields: Any) -> httpx.Response:
    """A Stripe error answer: `kind` is the error's ``type``."""
    return answer(builders.error(kind, message, **fields), status=status)


def invalid_request(message: str, **fields: Any) -> httpx.Response:
    """Stripe's most common refusal: HTTP 400, ``invalid_request_error``."""
    return stripe_error(400, "invalid_request_error", message, **fields)


class TestDefinitiveRefusals:
    def test_a_card_error_is_a_declined_payment(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        error = fail(
            router,
            gateway,
            "create_payment",
            stripe_error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="insufficient_funds",
            ),
        )

        assert type(error) is errors.PaymentDeclinedError
        assert error.code == "card_declined"
        assert "insufficient_funds" in error.message
        assert not error.outcome_unknown

    @pytest.mark.parametrize(
        ("action", "response"),
        [
            pytest.param(
                "create_refund",
                invalid_request(
                    "Refund amount is too large.", code="amount_too_large", param="amount"
                ),
                id="invalid_request",
            ),
            pytest.param(
                "get_payment",
                stripe_error(
                    404,
                    "invalid_request_error",
                    "No such payment_intent: 'pi_1'",
                    code="resource_missing",
                ),
                id="missing_object",
            ),
            pytest.param(
                "get_account",
                invalid_request("Invalid account.", code="account_invalid"),
                id="account_invalid_outside_a_transfer",
            ),
            pytest.param(
                "create_refund",
                invalid_request(
                    "Insufficient funds in Stripe account.", code="balance_insufficient"
                ),
                id="balance_insufficient_on_a_refund",
            ),
        ],
    )
    def test_is_rejected_with_stripes_message_code_and_request_id(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        action: str,
        response: httpx.Response,
    ) -> None:
        """A code that means more on a transfer is a plain rejection on any other call."""
        stripes = response.json()["error"]

        error = fail(router, gateway, action, response)

        assert type(error) is errors.GatewayRejectedError
        assert stripes["message"] in error.message
        assert (error.code, error.request_id, error.replayed) == (
            stripes["code"],
            "req_test0001",
            False,
        )
        assert not error.outcome_unknown
        assert not error.retryable

    def test_every_error_keeps_the_stripe_exception_as_its_cause(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        error = fail(router, gateway, "create_refund", invalid_request("No."))

        assert isinstance(error.__cause__, stripe.InvalidRequestError)


class TestDestinationNotReady:
    @pytest.mark.parametrize(
        ("code", "message"),
        [
            (
                "insufficient_capabilities_for_transfer",
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
            ),
            ("account_invalid", "The destination account is not valid."),
            ("transfers_not_allowed", "The requested transfer cannot be created."),
            (None, "Your destination account needs to have the transfers capability enabled."),
        ],
    )
    def test_a_destination_that_cannot_receive_is_not_ready(
        self, router: respx.MockRouter, gateway: StripeGateway, code: str | None, message: str
    ) -> None:
        error = fail(
            router,
            gateway,
            "create_transfer",
            invalid_request(message, code=code, param="destination"),
        )

        assert type(error) is errors.DestinationNotReadyError
        assert error.code == code


class TestPlatformBalance:
    def test_a_transfer_the_platform_balance_does_not_cover_is_a_reserve_breach(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        """Not a plain refusal: the money is owed, the release must go out once topped up."""
        error = fail(
            router,
            gateway,
            "create_transfer",
            invalid_request(
                "You have insufficient available funds in your Stripe account. Try adding "
                "funds directly to your available balance by creating Charges using the "
                "4000000000000077 test card.",
                code="balance_insufficient",
            ),
        )

        assert type(error) is errors.PlatformBalanceInsufficientError
        assert not isinstance(error, errors.GatewayRejectedError)
        assert not error.outcome_unknown
        assert error.code == "balance_insufficient"
        assert "insufficient available funds" in error.message


class TestReversals:
    @pytest.mark.parametrize("code", ["balance_insufficient", "insufficient_funds"])
    def test_a_payee_balance_that_does_not_cover_the_reversal(
        self, router: respx.MockRouter, gateway: StripeGateway, code: str
    ) -> None:
        error = fail(
            router,
            gateway,
            "create_reversal",
            invalid_request("Insufficient funds.", code=code),
        )

        assert type(error) is errors.InsufficientPayeeBalanceError
        assert error.code == code


class TestCancel:
    @pytest.mark.parametrize("status", ["succeeded", "processing"])
    def test_an_intent_that_succeeded_or_is_processing_is_already_settled(
        self, router: respx.MockRouter, gateway: StripeGateway, status: str
    ) -> None:
        intent = builders.payment_intent(id="pi_1", status=status)
        error = fail(
            router,
            gateway,
            "cancel_payment",
            invalid_request(
                f"You cannot cancel this PaymentIntent because it has a status of {status}.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            ),
        )

        assert type(error) is errors.PaymentAlreadySettledError
        assert error.code == "payment_intent_unexpected_state"

    def test_an_intent_cancelled_earlier_is_returned_as_it_is(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        intent = builders.payment_intent(id="pi_1", status="canceled")
        router.post("/v1/payment_intents/pi_1/cancel").mock(
            return_value=invalid_request(
                "You cannot cancel this PaymentIntent because it has a status of canceled.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            )
        )
        fetched = router.get("/v1/payment_intents/pi_1").mock(return_value=answer(intent))

        snapshot = gateway.cancel_payment(CancelPayment(payment_ref="pi_1"), idempotency_key=KEY)

        assert snapshot.status == "canceled"
        assert fetched.called


#: Stripe's answer while another request with the key still runs (HTTP 409).
KEY_IN_USE_MESSAGE = (
    "There is currently another in-progress request using this idempotent key (that probably "
    "means you submitted twice, and the other request is still going through): "
    f"{KEY}. Please try again later."
)


class TestIdempotencyMismatch:
    def test_a_key_used_with_other_parameters_is_a_mismatch_logged_with_its_key(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        response = stripe_error(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they "
            "were first used with.",
        )
        with caplog.at_level(logging.ERROR, logger="bountyescrow.stripe"):
            error = fail(router, gateway, "create_transfer", response)

        assert type(error) is errors.IdempotencyMismatchError
        assert error.outcome_unknown
        logged = [r for r in caplog.records if r.name == "bountyescrow.stripe"]
        assert [r.levelno for r in logged] == [logging.ERROR]
        assert KEY in logged[0].getMessage()
        assert "create_transfer" in logged[0].getMessage()


class TestIdempotencyKeyInUse:
    @pytest.mark.parametrize(
        "response",
        [
            stripe_error(
                409, "idempotency_error", KEY_IN_USE_MESSAGE, code="idempotency_key_in_use"
            ),
            stripe_error(
                409, "invalid_request_error", KEY_IN_USE_MESSAGE, code="idempotency_key_in_use"
            ),
            invalid_request(KEY_IN_USE_MESSAGE, code="idempotency_key_in_use"),
        ],
        ids=["409_idempotency_error", "409_invalid_request", "400"],
    )
    def test_is_an_unknown_outcome_not_a_mismatch_and_no_error_log(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        caplog: pytest.LogCaptureFixture,
        response: httpx.Response,
    ) -> None:
        """Another request with the key may still move the money: pending, not a bug."""
        with caplog.at_level(logging.DEBUG, logger="bountyescrow"):
            error = fail(router, gateway, "create_transfer", response)

        assert type(error) is errors.IdempotencyKeyInUseError
        assert not isinstance(error, errors.IdempotencyMismatchError)
        assert error.outcome_unknown
        assert error.code == "idempotency_key_in_use"
        assert [r.levelno for r in caplog.records if r.levelno >= logging.ERROR] == []

    def test_the_sdk_retries_a_key_in_use_with_the_same_key(
        self, router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With retries on, a 409 is asked again; the other request's transfer comes back."""
        monkeypatch.setattr(stripe.HTTPXClient, "_sleep_time_seconds", lambda self, n: 0.0)
        in_use = stripe_error(
            409, "idempotency_error", KEY_IN_USE_MESSAGE, code="idempotency_key_in_use"
        )
        route = router.post("/v1/transfers").mock(
            side_effect=[in_use, answer(builders.transfer(id="tr_1"))]
        )

        with StripeGateway(api_key=TEST_KEY, max_network_retries=1) as gateway:
            snapshot = CALLS["create_transfer"][2](gateway)

        assert getattr(snapshot, "ref", None) == "tr_1"
        assert [c.request.headers["Idempotency-Key"] for c in route.calls] == [KEY, KEY]


class TestCredentials:
    @pytest.mark.parametrize(
        ("status", "kind"), [(401, "invalid_request_error"), (403, "permission_error")]
    )
    def test_refused_credentials_are_an_authentication_error(
        self, router: respx.MockRouter, gateway: StripeGateway, status: int, kind: str
    ) -> None:
        error = fail(
            router, gateway, "get_account", stripe_error(status, kind, "Invalid API Key provided")
        )

        assert type(error) is errors.GatewayAuthenticationError
        assert isinstance(error, errors.ConfigurationError)
        assert not error.outcome_unknown


class TestUnknownOutcomes:
    @pytest.mark.parametrize(
        "response",
        [
            stripe_error(429, "rate_limit_error", "Too many requests.", code="rate_limit"),
            invalid_request("Too many requests.", code="rate_limit"),
            stripe_error(500, "api_error", "An unknown error occurred"),
            stripe_error(502, "api_error", "Bad gateway"),
            stripe_error(503, "api_error", "Service unavailable"),
            stripe_error(409, "invalid_request_error", "Conflict.", code="lock_timeout"),
            httpx.ReadTimeout("read timed out"),
            httpx.ConnectError("connection refused"),
            httpx.Response(200, content=b"<html>not json</html>"),
        ],
        ids=["429", "400_rate_limit", "500", "502", "503", "409", "timeout", "connect", "not_json"],
    )
    def test_is_unavailable_and_retryable(
        self,
        router: respx.MockRouter,
        gateway: StripeGateway,
        response: httpx.Response | Exception,
    ) -> None:
        error = fail(router, gateway, "create_transfer", response)

        assert type(error) is errors.GatewayUnavailableError
        assert error.outcome_unknown
        assert error.retryable
        assert not error.replayed
        assert isinstance(error.__cause__, stripe.StripeError)

    def test_a_replayed_server_error_says_so(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        replayed = answer(
            builders.error("api_error", "An unknown error occurred"),
            status=500,
            headers={"Idempotent-Replayed": "true", "Idempotency-Key": KEY},
        )

        error = fail(router, gateway, "create_transfer", replayed)

        assert type(error) is errors.GatewayUnavailableError
        assert error.replayed
        assert "replayed" in error.message

    def test_an_answer_we_cannot_read_is_unknown_not_refused(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        broken = builders.transfer()
        del broken["destination"]

        error = fail(router, gateway, "create_transfer", answer(broken))

        assert type(error) is errors.GatewayUnavailableError
        assert isinstance(error.__cause__, KeyError)


class TestAnswersWeCannotRead:
    @pytest.mark.parametrize(
        "body",
        [
            {"object": "list", "data": None, "has_more": False, "url": "/v1/transfers"},
            {"object": "list", "data": [{"object": "transfer"}], "has_more": True, "url": "/v1/t"},
        ],
        ids=["no_list", "page_without_ids"],
    )
    def test_a_malformed_list_is_an_unknown_outcome(
        self, router: respx.MockRouter, gateway: StripeGateway, body: dict[str, Any]
    ) -> None:
        router.get("/v1/transfers").mock(return_value=answer(body))

        with pytest.raises(errors.GatewayUnavailableError):
            gateway.find_transfer(transfer_group="g", operation_id="op_1")

    def test_an_account_link_without_url_is_an_unknown_outcome(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        link = builders.account_link()
        del link["url"]
        router.post("/v1/account_links").mock(return_value=answer(link))

        with pytest.raises(errors.GatewayUnavailableError):
            gateway.create_onboarding_link(
                "acct_1", return_url="https://a", refresh_url="https://b"
            )

    def test_a_json_answer_that_is_not_an_object_is_an_unknown_outcome(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        router.get("/v1/accounts/acct_1").mock(return_value=httpx.Response(200, json=[1, 2]))

        with pytest.raises(errors.GatewayUnavailableError):
            gateway.get_account("acct_1")

    def test_an_unexpected_state_without_the_intent_stays_already_settled(
        self, router: respx.MockRouter, gateway: StripeGateway
    ) -> None:
        error = fail(
            router,
            gateway,
            "cancel_payment",
            invalid_request(
                "This PaymentIntent's status does not allow cancelling it.",
                code="payment_intent_unexpected_state",
            ),
        )

        assert type(error) is errors.PaymentAlreadySettledError
        assert _errors.reported_intent_status(error) is None
        assert _errors.reported_intent_status(ValueError("not from Stripe")) is None
