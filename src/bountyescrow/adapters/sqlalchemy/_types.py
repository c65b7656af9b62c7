"""Column types shared by the table definitions and the migrations.

Times are stored in UTC (``timestamptz`` on PostgreSQL; on SQLite a naive UTC string, whose
lexical order is its time order, so `claim_due` can compare leases in SQL). Documents (event
data, audit before/after, stored gateway requests, open disputes) are ``jsonb`` on PostgreSQL
and JSON text on SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Callable, Mapping, Set
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from bountyescrow.domain.money import Money

#: Identifiers compare byte-wise on PostgreSQL too, so `ids(after=...)` pages in the same order
#: as Python's `sorted` (a locale collation would interleave upper and lower case).
ID = sa.String().with_variant(postgresql.VARCHAR(collation="C"), "postgresql")
#: Amounts in a currency's minor unit.
AMOUNT = sa.BigInteger()
CURRENCY = sa.String(3)


def _default(value: object) -> object:
    # Hosts and the service may put rich values into event data and audit records; store them
    # in a plain, documented JSON form instead of failing the unit of work.
    if isinstance(value, Money):
        return {"amount": value.amount, "currency": value.currency}
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Set):
        return sorted(value, key=repr)
    if isinstance(value, Decimal):
        return str(value)
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)  # type: ignore[arg-type]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


def dumps(value: object) -> str:
    """Serialise a document to compact JSON, converting Money, times, enums and sets."""
    return json.dumps(value, default=_default, separators=(",", ":"), sort_keys=True)


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware datetime, stored in UTC and read back in UTC.

    Naive datetimes are refused: the library's clock is timezone-aware, and a naive value
    would be read back as something else.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a UTC-aware time")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class JsonDocument(sa.TypeDecorator[Any]):
    """A JSON document: ``jsonb`` on PostgreSQL, text elsewhere. SQL NULL stands for None."""

    impl = sa.Text()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.Text())

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            from psycopg.types.json import Jsonb

            # Encoded once, by psycopg with our `dumps`: the generic path below would encode,
            # decode, and let the jsonb type encode again.
            def to_jsonb(value: Any) -> Any:
                return None if value is None else Jsonb(value, dumps)

            return to_jsonb
        return super().bind_processor(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        text = dumps(value)
        if dialect.name == "postgresql":
            return json.loads(text)  # the jsonb type serialises it again
        return text

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value  # jsonb arrives parsed
        return json.loads(value)
