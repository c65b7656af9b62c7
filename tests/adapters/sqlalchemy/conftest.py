"""Stores for the SQL adapter tests: a SQLite file, and PostgreSQL in a fresh schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
from bountyescrow.testing.contracts._postgres import fresh_schema, postgres_url_or_skip


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'escrow.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SqlAlchemyStore]:
    with SqlAlchemyStore(sqlite_url) as store:
        store.migrate()
        yield store


@pytest.fixture
def pg_url() -> str:
    return postgres_url_or_skip()


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url) as schema:
        yield schema


@pytest.fixture
def pg_store(pg_url: str, pg_schema: str) -> Iterator[SqlAlchemyStore]:
    with SqlAlchemyStore(pg_url, schema=pg_schema) as store:
        store.migrate()
        yield store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> SqlAlchemyStore:
    """A migrated store on each backend."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    store: SqlAlchemyStore = request.getfixturevalue(name)
    return store
