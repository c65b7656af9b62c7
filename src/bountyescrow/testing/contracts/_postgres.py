"""Finding the test PostgreSQL server and giving each test its own schema.

Plain functions, so any test module (contract suites, adapter tests, a host's own tests) can
reuse them:

- `postgres_url_or_skip()` returns the server URL, or skips the test when the server cannot be
  reached (fails it instead when ``BOUNTYESCROW_REQUIRE_POSTGRES=1``, as CI sets).
- `fresh_schema(url)` yields a new, unique schema name and drops the schema afterwards.

The URL comes from ``BOUNTYESCROW_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

URL_VARIABLE = "BOUNTYESCROW_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "BOUNTYESCROW_REQUIRE_POSTGRES"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "be_test_"

_lock = threading.Lock()
# url -> None when reachable, else why not: one connection attempt per URL and process.
_checked: dict[str, str | None] = {}


def postgres_url() -> str:
    """The test server's URL, from the environment or the default (bare URLs use psycopg 3)."""
    url = os.environ.get(URL_VARIABLE) or DEFAULT_URL
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def postgres_required() -> bool:
    """True when an unreachable server must fail the tests instead of skipping them."""
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def _unreachable_reason(url: str) -> str | None:
    try:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool
    except ImportError as exc:  # pragma: no cover - the sqlalchemy extra is missing
        return f"SQLAlchemy is not installed ({exc})"
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    except Exception as exc:  # a missing driver or a malformed URL
        return f"{type(exc).__name__}: {exc}"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def _display(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: nothing to hide
        return url


def postgres_url_or_skip() -> str:
    """Return the test server's URL, or skip (or fail, when required) if it is unreachable."""
    url = postgres_url()
    with _lock:
        if url not in _checked:
            _checked[url] = _unreachable_reason(url)
        reason = _checked[url]
    if reason is not None:
        message = f"PostgreSQL not reachable at {_display(url)}: {reason}"
        if postgres_required():
            pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1)")
        pytest.skip(message)
    return url


def new_schema_name() -> str:
    """A fresh, unique schema name such as ``be_test_3f9a1c2b7d4e``."""
    return f"{SCHEMA_PREFIX}{secrets.token_hex(6)}"


def drop_schema(url: str, schema: str) -> None:
    """Drop `schema` and everything in it, if it exists."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if not schema.startswith(SCHEMA_PREFIX) or not schema.replace("_", "").isalnum():
        raise ValueError(f"refusing to drop {schema!r}: not a test schema")
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.dispose()


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """Yield a unique schema name (not created yet: `migrate()` creates it); drop it after."""
    schema = new_schema_name()
    try:
        yield schema
    finally:
        drop_schema(url, schema)
