"""The adapter as a package: its public names, its extra, its URLs and its CLI functions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

import bountyescrow.adapters.sqlalchemy as adapter
from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore, prune
from bountyescrow.adapters.sqlalchemy._engine import normalise_url
from bountyescrow.domain.records import WebhookStatus
from bountyescrow.errors import ConfigurationError
from bountyescrow.testing import InMemoryStore
from bountyescrow.testing.contracts.store import (
    T0,
    make_audit,
    make_entry,
    make_escrow,
    make_idempotency,
    make_webhook_event,
)


def test_public_names() -> None:
    """The public surface is listed by hand; changing it is a decision, not an accident."""
    assert sorted(adapter.__all__) == [
        "DEFAULT_SCHEMA",
        "HEAD",
        "SqlAlchemyStore",
        "alembic_include_object",
        "current",
        "metadata",
        "prune",
        "upgrade",
    ]
    for name in adapter.__all__:
        assert getattr(adapter, name) is not None


def test_importing_without_sqlalchemy_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sqlalchemy"] = None  # as if the extra were not installed
        try:
            import bountyescrow.adapters.sqlalchemy
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'bountyescrow[sqlalchemy]'" in result.stdout


def test_importing_creates_no_engine_and_reads_no_environment() -> None:
    code = textwrap.dedent(
        """
        import os, sqlalchemy
        created = []
        real = sqlalchemy.create_engine
        sqlalchemy.create_engine = lambda *a, **k: created.append(a) or real(*a, **k)
        os.environ.clear()
        import bountyescrow.adapters.sqlalchemy
        print(len(created))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0"


class TestUrls:
    @pytest.mark.parametrize(
        "url",
        ["postgresql://app@db/app", "postgres://app@db/app", "postgresql+psycopg://app@db/app"],
    )
    def test_postgres_urls_use_psycopg_3(self, url: str) -> None:
        assert normalise_url(url).drivername == "postgresql+psycopg"

    def test_other_drivers_are_kept(self) -> None:
        assert normalise_url("sqlite:///x.db").drivername == "sqlite"

    def test_an_unsupported_database_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="PostgreSQL and SQLite"):
            SqlAlchemyStore("mysql://app@db/app")

    def test_repr_hides_the_password(self) -> None:
        store = SqlAlchemyStore("postgresql://app:hunter2@db.example/app")
        try:
            assert "hunter2" not in repr(store)
            assert "db.example" in repr(store)
        finally:
            store.dispose()


class TestPrune:
    def _fill(self, store: SqlAlchemyStore | InMemoryStore) -> None:
        now = T0 + timedelta(days=40)
        with store.unit_of_work() as uow:
            uow.escrows.add(make_escrow())
            uow.ledger.add(make_entry())
            uow.audit.add(make_audit())
            uow.webhook_events.save(make_webhook_event("evt_old"))  # received at T0: 40 days
            uow.webhook_events.save(make_webhook_event("evt_ignored", status=WebhookStatus.IGNORED))
            uow.webhook_events.save(make_webhook_event("evt_failed", status=WebhookStatus.FAILED))
            uow.webhook_events.save(make_webhook_event("evt_recent", received_at=now))
            uow.idempotency.save(make_idempotency(key="expired"))
            uow.idempotency.save(make_idempotency(key="live", expires_at=now + timedelta(hours=1)))
            uow.commit()

    def test_prune_by_url_trims_events_and_keys_but_never_ledger_or_audit(
        self, sqlite_store: SqlAlchemyStore, sqlite_url: str
    ) -> None:
        self._fill(sqlite_store)
        now = T0 + timedelta(days=40)
        assert prune(sqlite_url, now) == {"webhook_events": 2, "idempotency_keys": 1}
        assert prune(sqlite_url, now) == {"webhook_events": 0, "idempotency_keys": 0}
        with sqlite_store.unit_of_work() as uow:
            assert uow.webhook_events.get("evt_failed") is not None
            assert uow.webhook_events.get("evt_recent") is not None
            assert uow.idempotency.get("poster_1", "live") is not None
            assert len(uow.ledger.for_escrow("esc_1")) == 1
            assert len(uow.audit.for_escrow("esc_1")) == 1

    def test_prune_keeps_35_days_of_events_by_default(self, sqlite_store: SqlAlchemyStore) -> None:
        self._fill(sqlite_store)
        assert prune(sqlite_store, T0 + timedelta(days=34))["webhook_events"] == 0
        assert prune(sqlite_store, T0 + timedelta(days=36))["webhook_events"] == 2

    def test_prune_takes_any_store(self) -> None:
        store = InMemoryStore()
        self._fill(store)
        counts = prune(store, T0 + timedelta(days=40), keep_events_days=50)
        assert counts == {"webhook_events": 0, "idempotency_keys": 1}

    def test_prune_refuses_a_negative_retention(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            prune(InMemoryStore(), T0, keep_events_days=-1)
