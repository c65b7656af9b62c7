"""The store contract, run against each of our stores: in memory, SQLite, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing import InMemoryStore
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip
from bountyescrow.testing.contracts.store import StoreContract


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> EscrowStore:
        return InMemoryStore()


class TestSqliteFileStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EscrowStore]:
        with SqlAlchemyStore(f"sqlite:///{tmp_path / 'escrow.db'}") as store:
            store.migrate()
            yield store


class TestSqliteMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[EscrowStore]:
        with SqlAlchemyStore("sqlite://") as store:
            store.migrate()
            yield store


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[EscrowStore]:
        url = postgres_url_or_skip()
        with fresh_schema(url) as schema, SqlAlchemyStore(url, schema=schema) as store:
            store.migrate()
            yield store
