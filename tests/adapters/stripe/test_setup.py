"""Building a `StripeGateway`: keys and modes, the SDK client, globals, imports, exports."""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from datetime import timedelta

import httpx
import pytest
import respx
import stripe

import bountyescrow.adapters.stripe as adapter
from bountyescrow import errors
from bountyescrow.adapters.stripe import StripeGateway
from bountyescrow.adapters.stripe._gateway import _HTTPXClient
from bountyescrow.domain.gateway_objects import CreateTransfer
from bountyescrow.domain.money import Money
from bountyescrow.ports.gateway import PaymentGateway

from . import builders
from .support import LIVE_KEY, TEST_KEY, answer

KEY = "bountyescrow:test:op_1:0"
TRANSFER = CreateTransfer(
    amount=Money(1_000, "usd"),
    destination="acct_1",
    source_transaction=None,
    transfer_group="g",
    metadata={},
)


def client(key: str, *, stripe_account: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        key,
        stripe_account=stripe_account,
        http_client=_HTTPXClient(allow_sync_methods=True),
        max_network_retries=0,
    )


class TestModes:
    @pytest.mark.parametrize(
        ("key", "live"),
        [
            (TEST_KEY, False),
            (LIVE_KEY, True),
            ("rk_test_51Qrestricted", False),
            ("rk_live_51Qrestricted", True),
        ],
    )
    def test_the_mode_comes_from_the_key(self, key: str, live: bool) -> None:
        assert StripeGateway(api_key=key).livemode is live
        assert StripeGateway(client(key)).livemode is live

    @pytest.mark.parametrize("key", ["pk_test_51Qpublishable", "whsec_123", "sk_foo"])
    def test_a_key_that_cannot_move_money_is_refused(self, key: str) -> None:
        with pytest.raises(errors.ConfigurationError, match="secret key"):
            StripeGateway(api_key=key)

    def test_a_mode_that_contradicts_the_key_is_refused(self) -> None:
        with pytest.raises(errors.ConfigurationError, match="contradicts"):
            StripeGateway(api_key=TEST_KEY, livemode=True)

    def test_a_client_whose_key_says_no_mode_needs_livemode(self) -> None:
        with pytest.raises(errors.ConfigurationError, match="livemode="):
            StripeGateway(client("sk_custom_proxy_key"))

        assert StripeGateway(client("sk_custom_proxy_key"), livemode=False).livemode is False


class TestConstruction:
    def test_needs_exactly_one_of_client_and_api_key(self) -> None:
        with pytest.raises(errors.ConfigurationError):
            StripeGateway()
        with pytest.raises(errors.ConfigurationError):
            StripeGateway(client(TEST_KEY), api_key=TEST_KEY)

    def test_refuses_a_client_acting_on_a_connected_account(self) -> None:
        with pytest.raises(errors.ConfigurationError, match="platform account"):
            StripeGateway(client(TEST_KEY, stripe_account="acct_1"))

    def test_refuses_bad_retries_timeout_and_platform_country(self) -> None:
        with pytest.raises(errors.ConfigurationError):
            StripeGateway(api_key=TEST_KEY, max_network_retries=-1)
        with pytest.raises(errors.ConfigurationError):
            StripeGateway(api_key=TEST_KEY, timeout=0)
        with pytest.raises(errors.ConfigurationError, match="platform_country"):
            StripeGateway(api_key=TEST_KEY, platform_country="USA")

    def test_normalizes_the_platform_country(self) -> None:
        assert StripeGateway(api_key=TEST_KEY, platform_country="gb").platform_country == "GB"

    def test_uses_a_client_it_is_given(self, router: respx.MockRouter) -> None:
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))
        gateway = StripeGateway(client("sk_test_given"))

        gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        assert route.calls.last.request.headers["Authorization"] == "Bearer sk_test_given"

    def test_repr_shows_the_mode_but_never_the_key(self) -> None:
        gateway = StripeGateway(api_key=LIVE_KEY, platform_country="FR")

        assert repr(gateway) == "StripeGateway(livemode=True, platform_country='FR')"
        assert LIVE_KEY not in repr(gateway)

    def test_close_is_safe_with_a_client_given_and_twice(self) -> None:
        StripeGateway(client(TEST_KEY)).close()
        gateway = StripeGateway(api_key=TEST_KEY)
        gateway.close()
        gateway.close()


def sent_timeout(route: respx.Route) -> dict[str, float]:
    """The httpx timeout the last request went out with, per step."""
    return dict(route.calls.last.request.extensions["timeout"])


class TestCallDuration:
    """`max_call_duration` bounds every attempt the SDK makes, so a lease can outlast it."""

    def test_the_default_outlasts_three_attempts_of_thirty_seconds_and_the_backoff(
        self, router: respx.MockRouter
    ) -> None:
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))

        with StripeGateway(api_key=TEST_KEY) as gateway:
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        timeout = sent_timeout(route)
        assert timeout == {"connect": 5.0, "read": 30.0, "write": 5.0, "pool": 5.0}
        # Three attempts of every step, the SDK's back-off (0.5 s, then 1 s), a margin.
        longest = 3 * sum(timeout.values()) + 0.5 + 1.0
        assert gateway.max_call_duration == timedelta(seconds=longest + 10)

    @pytest.mark.parametrize(
        ("timeout", "retries", "expected"),
        [
            (10.0, 0, 10 + 15 + 10),
            (2.0, 1, 2 * (2 + 3 * 2) + 0.5 + 10),
            (60.0, 5, 6 * 75 + (0.5 + 1 + 2 + 4 + 5) + 10),
        ],
    )
    def test_follows_the_timeout_and_the_retries(
        self, router: respx.MockRouter, timeout: float, retries: int, expected: float
    ) -> None:
        """The SDK's back-off doubles from 0.5 s up to 5 s."""
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))

        with StripeGateway(
            api_key=TEST_KEY, timeout=timeout, max_network_retries=retries
        ) as gateway:
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        assert sum(sent_timeout(route).values()) * (retries + 1) < expected
        assert gateway.max_call_duration == timedelta(seconds=expected)

    def test_a_client_given_counts_with_its_own_timeout_and_retries(self) -> None:
        httpx_client = stripe.StripeClient(
            TEST_KEY, http_client=_HTTPXClient(timeout=10, allow_sync_methods=True),
            max_network_retries=1,
        )  # fmt: skip
        sdk_default = stripe.StripeClient(TEST_KEY)  # requests, 80 s, the SDK's 2 retries
        split = stripe.StripeClient(
            TEST_KEY,
            http_client=_HTTPXClient(
                timeout=httpx.Timeout(20, connect=2, write=1, pool=1), allow_sync_methods=True
            ),
            max_network_retries=0,
        )

        # httpx applies a plain number to each of its four steps; requests to two.
        assert StripeGateway(httpx_client).max_call_duration == timedelta(seconds=90.5)
        assert StripeGateway(sdk_default).max_call_duration == timedelta(seconds=491.5)
        assert StripeGateway(split).max_call_duration == timedelta(seconds=34)

    def test_a_client_without_a_finite_timeout_is_refused(self) -> None:
        unbounded = stripe.StripeClient(
            TEST_KEY,
            http_client=_HTTPXClient(timeout=httpx.Timeout(None), allow_sync_methods=True),
        )

        with pytest.raises(errors.ConfigurationError, match="unbounded"):
            StripeGateway(unbounded)


class TestSdkGlobals:
    def test_the_sdks_module_settings_stay_untouched(self, router: respx.MockRouter) -> None:
        router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))
        before = (
            stripe.api_key,
            stripe.default_http_client,
            stripe.max_network_retries,
            stripe.api_base,
            stripe.api_version,
            stripe.proxy,
        )

        with StripeGateway(api_key=TEST_KEY, max_network_retries=1) as gateway:
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        assert stripe.api_key is None
        assert stripe.default_http_client is None
        after = (
            stripe.api_key,
            stripe.default_http_client,
            stripe.max_network_retries,
            stripe.api_base,
            stripe.api_version,
            stripe.proxy,
        )
        assert after == before

    def test_the_request_uses_the_gateways_key_and_no_connected_account(
        self, router: respx.MockRouter
    ) -> None:
        route = router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))

        with StripeGateway(api_key=TEST_KEY) as gateway:
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        headers = route.calls.last.request.headers
        assert headers["Authorization"] == f"Bearer {TEST_KEY}"
        assert "Stripe-Account" not in headers
        assert headers["Stripe-Version"] == stripe.api_version


class TestSdkRetries:
    @pytest.fixture(autouse=True)
    def no_backoff(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The SDK sleeps 0.5 s or more between retries; the test only needs the retries.
        monkeypatch.setattr(stripe.HTTPXClient, "_sleep_time_seconds", lambda self, n: 0.0)

    def test_retries_twice_by_default_with_the_same_key(self, router: respx.MockRouter) -> None:
        server_error = answer(builders.error("api_error", "An unknown error occurred"), 500)
        route = router.post("/v1/transfers").mock(
            side_effect=[server_error, server_error, answer(builders.transfer(id="tr_1"))]
        )

        with StripeGateway(api_key=TEST_KEY) as gateway:
            snapshot = gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        assert snapshot.ref == "tr_1"
        assert [call.request.headers["Idempotency-Key"] for call in route.calls] == [KEY] * 3

    def test_max_network_retries_is_passed_to_the_sdk(self, router: respx.MockRouter) -> None:
        server_error = answer(builders.error("api_error", "An unknown error occurred"), 500)
        route = router.post("/v1/transfers").mock(return_value=server_error)

        with (
            StripeGateway(api_key=TEST_KEY, max_network_retries=1) as gateway,
            pytest.raises(errors.GatewayUnavailableError),
        ):
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)

        assert route.call_count == 2


class TestNoWarnings:
    def test_a_post_raises_no_httpx_deprecation_warning(self, router: respx.MockRouter) -> None:
        """stripe.HTTPXClient sends the body as data=, which httpx deprecates; ours does not."""
        router.post("/v1/transfers").mock(return_value=answer(builders.transfer()))

        with warnings.catch_warnings(), StripeGateway(api_key=TEST_KEY) as gateway:
            warnings.simplefilter("error")
            gateway.create_transfer(TRANSFER, idempotency_key=KEY)


class TestPackage:
    def test_exports_only_the_gateway(self) -> None:
        assert adapter.__all__ == ["StripeGateway"]
        assert adapter.StripeGateway is StripeGateway

    def test_implements_every_method_of_the_port_with_its_signature(self) -> None:
        for name, member in inspect.getmembers(PaymentGateway):
            if name.startswith("_"):
                continue
            ours = inspect.getattr_static(StripeGateway, name)
            if isinstance(member, property):
                assert isinstance(ours, property), name
                continue
            assert list(inspect.signature(ours).parameters) == list(
                inspect.signature(member).parameters
            ), name

    def test_importing_without_the_sdk_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._forget_adapter(monkeypatch)
        monkeypatch.setitem(sys.modules, "stripe", None)

        with pytest.raises(ImportError, match=r"pip install 'bountyescrow\[stripe\]'"):
            importlib.import_module("bountyescrow.adapters.stripe")

    def test_importing_with_an_sdk_too_old_names_the_version(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._forget_adapter(monkeypatch)
        monkeypatch.setattr(stripe, "VERSION", "12.5.0")

        with pytest.raises(ImportError, match=r"stripe>=13 \(found 12\.5\.0\)"):
            importlib.import_module("bountyescrow.adapters.stripe")

    @staticmethod
    def _forget_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(sys.modules):
            if name == adapter.__name__ or name.startswith(adapter.__name__ + "."):
                monkeypatch.delitem(sys.modules, name)


class TestHttpClient:
    def test_sends_a_form_body_as_content_and_leaves_other_data_alone(self) -> None:
        http = _HTTPXClient(allow_sync_methods=True)

        _, post = http._get_request_args_kwargs("post", "https://x", {}, "a=1")
        _, get = http._get_request_args_kwargs("get", "https://x", {}, None)
        _, other = http._get_request_args_kwargs("post", "https://x", {}, {"a": "1"})

        assert (post["content"], "data" in post) == ("a=1", False)
        assert "content" not in get
        assert "data" not in get
        assert other["data"] == {"a": "1"}
        http.close()  # type: ignore[no-untyped-call]
