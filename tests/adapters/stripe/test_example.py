"""`examples/stripe_test_mode.py`, run against the Stripe stand-in instead of Stripe.

This drives the real `EscrowService` through `StripeGateway`: open, pay, onboard, release,
refund, with the service's invariants checked at the end by the example itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .stand_in import StripeStandIn
from .support import TEST_KEY

EXAMPLE = Path(__file__).parents[3] / "examples" / "stripe_test_mode.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stripe_test_mode_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    return load_example()


# The example confirms the payment with a plain stripe.HTTPXClient (playing the poster's
# browser), which sends its body as httpx's deprecated data=; the gateway's own client does not.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
class TestStripeTestModeExample:
    def test_the_hunter_onboards_and_gets_paid(
        self,
        example: ModuleType,
        stand_in: StripeStandIn,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        def onboard(prompt: str = "") -> str:
            for account in stand_in.accounts:
                stand_in.activate(account)
            return ""

        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        monkeypatch.setattr("builtins.input", onboard)

        assert example.main() == 0

        (transfer,) = stand_in.transfers.values()
        assert (transfer["amount"], transfer["source_transaction"]) == (
            13_500,
            next(iter(stand_in.charges)),
        )
        assert [r["amount"] for r in stand_in.refunds.values()] == [10_000]
        assert "invariants: all hold" in capsys.readouterr().out

    def test_without_onboarding_the_release_waits_and_everything_is_refunded(
        self,
        example: ModuleType,
        stand_in: StripeStandIn,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr(sys.stdin, "isatty", lambda: False)

        assert example.main() == 0

        assert stand_in.transfers == {}
        assert [r["amount"] for r in stand_in.refunds.values()] == [25_000]
        out = capsys.readouterr().out
        assert "awaiting_payee" in out
        assert "invariants: all hold" in out

    @pytest.mark.parametrize("key", ["", "sk_live_51Qlive"])
    def test_refuses_to_run_without_a_test_key(
        self, key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("STRIPE_API_KEY", key)

        assert load_example().main() == 2
        assert "test mode" in capsys.readouterr().out
