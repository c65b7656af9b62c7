"""The `bountyescrow` command line: demo, migrations and pruning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bountyescrow import Actor, EscrowService, Money, OperationStatus
from bountyescrow.adapters.sqlalchemy import HEAD
from bountyescrow.cli import ServiceFactory, main
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock
from bountyescrow.testing.contracts._postgres import (
    drop_schema,
    new_schema_name,
    postgres_url_or_skip,
)
from tests.keys import new_key


class TestDemo:
    def test_json_story_ends_with_the_invariants_holding(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["demo", "--json", "--db", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
        story = json.loads(capsys.readouterr().out)
        assert story["invariants"] == []
        assert story["escrow"]["status"] == "partially_settled"
        assert [m["kind"] for m in story["movements"]] == ["transfer", "refund"]

    def test_the_readable_story_names_each_step(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"])
        out = capsys.readouterr().out
        assert "Invariants I1-I4: all hold" in out
        assert "The hunter finishes onboarding: the transfer goes" in out

    def test_the_same_story_runs_on_postgresql(self, capsys: pytest.CaptureFixture[str]) -> None:
        url = postgres_url_or_skip()
        schema = new_schema_name()
        try:
            assert main(["demo", "--json", "--db", url, "--schema", schema]) == 0
        finally:
            drop_schema(url, schema)
        story = json.loads(capsys.readouterr().out)
        assert story["invariants"] == []
        assert story["store"].startswith("postgresql")


class TestDatabaseCommands:
    def test_upgrade_then_current_reports_the_revision(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        url = f"sqlite:///{tmp_path / 'app.db'}"
        assert main(["db", "current", "--url", url]) == 0
        assert capsys.readouterr().out.strip() == "no revision applied"
        assert main(["db", "upgrade", "--url", url]) == 0
        assert f"to revision {HEAD}" in capsys.readouterr().out
        assert main(["db", "current", "--url", url]) == 0
        assert capsys.readouterr().out.strip() == HEAD

    def test_prune_reports_what_it_removed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        url = f"sqlite:///{tmp_path / 'app.db'}"
        main(["db", "upgrade", "--url", url])
        capsys.readouterr()
        assert main(["prune", "--url", url]) == 0
        assert "'webhook_events': 0" in capsys.readouterr().out

    def test_a_password_in_the_url_is_never_printed(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """PostgreSQL here trusts local connections, so any password is accepted."""
        base = postgres_url_or_skip()
        url = make_url(base).set(password="s3cret-pw").render_as_string(hide_password=False)
        schema = new_schema_name()
        try:
            assert main(["db", "upgrade", "--url", url, "--schema", schema]) == 0
            out = capsys.readouterr().out
        finally:
            drop_schema(base, schema)
        assert "s3cret-pw" not in out
        assert "***" in out


class TestMaintenanceCommands:
    """`recover` and `check` run against the host's database with its service."""

    @staticmethod
    def factory(service: EscrowService) -> ServiceFactory:
        @contextmanager
        def build(url: str, namespace: str) -> Iterator[EscrowService]:
            yield service

        return build

    def test_recover_finishes_a_pending_release(self, capsys: pytest.CaptureFixture[str]) -> None:
        clock = ManualClock()
        fake = FakeGateway(webhook_secret="whsec_test", clock=clock)
        service = EscrowService(InMemoryStore(), fake, fee_bps=1000, clock=clock)
        poster = Actor("poster")
        esc = service.open_escrow(
            bounty_id="b1", poster_id="poster", amount=Money(25_000, "usd"), actor=poster
        )
        assert esc.payment_ref is not None
        fake.pay(esc.payment_ref)
        payee = service.register_payee("hunter", country="US")
        fake.complete_onboarding(payee.account_ref)
        fake.deliver(service)
        fake.fail_next("transfer", error="unavailable")
        op = service.release(esc.id, payee_id="hunter", actor=poster, idempotency_key=new_key())
        clock.advance(timedelta(minutes=5))

        assert main(["recover", "--url", "unused"], service_factory=self.factory(service)) == 0
        assert "completed 1" in capsys.readouterr().out
        assert service.get_operation(op.id).status is OperationStatus.SUCCEEDED

    def test_check_reports_that_the_invariants_hold(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        service = EscrowService(InMemoryStore(), FakeGateway(webhook_secret="whsec_test"))
        assert main(["check", "--url", "unused"], service_factory=self.factory(service)) == 0
        assert "invariants hold" in capsys.readouterr().out

    def test_without_a_stripe_key_the_production_service_refuses_to_start(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        assert main(["recover", "--url", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
        assert "STRIPE_API_KEY" in capsys.readouterr().err


class TestFailedWebhookEvents:
    def test_lists_failed_events_oldest_first(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
        from bountyescrow.domain.records import WebhookEventRecord, WebhookStatus

        url = f"sqlite:///{tmp_path / 'app.db'}"
        store = SqlAlchemyStore(url)
        store.migrate()
        received = ManualClock().now()
        with store.unit_of_work() as uow:
            for event_id, status in (
                ("evt_ok", WebhookStatus.PROCESSED),
                ("evt_bad", WebhookStatus.FAILED),
            ):
                uow.webhook_events.save(
                    WebhookEventRecord(
                        id=event_id,
                        type="transfer.created",
                        status=status,
                        received_at=received,
                        error="EventNotReadyError: escrow esc_1 is not committed yet",
                    )
                )
            uow.commit()
        store.dispose()
        assert main(["webhooks", "failed", "--url", url]) == 0
        out = capsys.readouterr().out
        assert "evt_bad\ttransfer.created\tattempts=1" in out
        assert "evt_ok" not in out
        assert "1 failed event(s)" in out
