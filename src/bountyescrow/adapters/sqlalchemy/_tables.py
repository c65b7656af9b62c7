"""The tables, as SQLAlchemy Core metadata (no ORM mapping: the domain classes stay plain).

On PostgreSQL the tables live in their own schema (default ``bountyescrow``); on SQLite, which
has no schemas, every table and index name carries the prefix ``<schema>_`` instead. Index and
constraint names are ``<prefix><logical name>``; the logical names (``operations_kind_gateway_ref``)
are what `StorageError.details["constraint"]` reports.

The migrations in `migrations/versions/` create the same tables; a test compares the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs
import sqlalchemy as sa

from bountyescrow.adapters.sqlalchemy._types import AMOUNT, CURRENCY, ID, JsonDocument, UtcDateTime
from bountyescrow.domain.escrow import EscrowStatus
from bountyescrow.domain.operation import OperationKind, OperationStatus
from bountyescrow.domain.records import WebhookStatus

DEFAULT_SCHEMA = "bountyescrow"
#: Alembic revision of the newest migration shipped with this version.
HEAD = "0002"

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def check_schema_name(schema: str) -> str:
    """Return `schema` if it is a plain lower-case identifier, else raise ValueError."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(
            f"schema {schema!r} must be a lower-case identifier (letters, digits, underscore, "
            "at most 40 characters), such as 'bountyescrow'"
        )
    return schema


def _seq_column() -> sa.Column[int]:
    # An always-generated identity on PostgreSQL; an AUTOINCREMENT rowid alias on SQLite (which
    # needs the type INTEGER), so numbers are never reused.
    return sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.Identity(always=True)
    )


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in sorted(values))})"


@attrs.frozen
class Tables:
    """Every table of one store, with where they live."""

    metadata: sa.MetaData
    #: The PostgreSQL schema, or None on SQLite.
    schema: str | None
    #: The table and index name prefix ("" on PostgreSQL).
    prefix: str
    #: Alembic's version table for our migrations (never the host's ``alembic_version``).
    version_table: str
    escrows: sa.Table
    operations: sa.Table
    disputes: sa.Table
    payees: sa.Table
    ledger_entries: sa.Table
    ledger_postings: sa.Table
    audit: sa.Table
    domain_events: sa.Table
    webhook_events: sa.Table
    idempotency_keys: sa.Table

    def logical_name(self, name: str) -> str:
        """A table, index or constraint name without the store's prefix."""
        if self.prefix and name.startswith(self.prefix):
            return name[len(self.prefix) :]
        return name


def layout(schema: str, *, sqlite: bool) -> tuple[str | None, str]:
    """Return (PostgreSQL schema or None, name prefix) for a store's `schema` setting."""
    check_schema_name(schema)
    return (None, f"{schema}_") if sqlite else (schema, "")


def build_tables(*, schema: str | None, prefix: str) -> Tables:
    """Build the metadata for tables in `schema` (PostgreSQL) or behind `prefix` (SQLite)."""
    md = sa.MetaData(schema=schema)
    p = prefix

    def n(name: str) -> str:
        return f"{p}{name}"

    escrows = sa.Table(
        n("escrows"),
        md,
        sa.Column("id", ID, primary_key=True),
        sa.Column("bounty_id", ID, nullable=False),
        sa.Column("poster_id", ID, nullable=False),
        sa.Column("request_id", ID),
        sa.Column("currency", CURRENCY, nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("funded", AMOUNT, nullable=False),
        sa.Column("held", AMOUNT, nullable=False),
        sa.Column("reserved", AMOUNT, nullable=False),
        sa.Column("released", AMOUNT, nullable=False),
        sa.Column("refunded", AMOUNT, nullable=False),
        sa.Column("fees", AMOUNT, nullable=False),
        sa.Column("dispute_withdrawn", AMOUNT, nullable=False),
        sa.Column("shortfall", AMOUNT, nullable=False),
        sa.Column("fee_bps", sa.Integer, nullable=False),
        sa.Column("fee_fixed", AMOUNT),
        sa.Column("fee_fixed_currency", CURRENCY),
        sa.Column("transfer_group", sa.String, nullable=False),
        sa.Column("payment_ref", sa.String),
        sa.Column("charge_ref", sa.String),
        sa.Column("payment_status", sa.String),
        sa.Column("last_payment_error", sa.Text),
        sa.Column("cancelled", sa.Boolean, nullable=False),
        sa.Column("fixed_fee_charged", sa.Boolean, nullable=False),
        sa.Column("open_disputes", JsonDocument, nullable=False),
        sa.Column("fraud_warning", sa.Boolean, nullable=False),
        # Derived from the amounts on every write, for the host's reports; never read back.
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("funded_at", UtcDateTime),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("escrows_pkey")),
        sa.CheckConstraint("amount >= 0", name=n("escrows_amount_nonneg")),
        sa.CheckConstraint("funded >= 0", name=n("escrows_funded_nonneg")),
        sa.CheckConstraint("held >= 0", name=n("escrows_held_nonneg")),
        sa.CheckConstraint("reserved >= 0", name=n("escrows_reserved_nonneg")),
        sa.CheckConstraint("reserved <= held", name=n("escrows_reserved_le_held")),
        sa.CheckConstraint(
            _in("status", (s.value for s in EscrowStatus)), name=n("escrows_status")
        ),
        sa.Index(n("ix_escrows_bounty_poster"), "bounty_id", "poster_id"),
        sa.Index(n("ix_escrows_poster"), "poster_id"),
    )

    operations = sa.Table(
        n("operations"),
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("escrow_id", ID, nullable=False),
        # Copied from the escrow on insert so the table reads as a wallet-transactions table.
        sa.Column("bounty_id", ID),
        sa.Column("request_id", ID),
        sa.Column("actor_id", ID, nullable=False),
        sa.Column("payee_id", ID),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("currency", CURRENCY, nullable=False),
        sa.Column("gross", AMOUNT, nullable=False),
        sa.Column("fee", AMOUNT, nullable=False),
        sa.Column("net", AMOUNT, nullable=False),
        sa.Column("fixed_fee", AMOUNT),
        sa.Column("reversed", AMOUNT),
        sa.Column("shortfall", AMOUNT),
        sa.Column("gateway_ref", sa.String),
        sa.Column("gateway_status", sa.String),
        sa.Column("request", JsonDocument),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("sent_at", UtcDateTime),
        sa.Column("claimed_until", UtcDateTime),
        sa.Column("next_attempt_at", UtcDateTime),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("target_id", ID),
        sa.Column("reason", sa.Text),
        sa.Column("correlation_id", sa.String),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("operations_pkey")),
        sa.ForeignKeyConstraint(["escrow_id"], [escrows.c.id], name=n("operations_escrow_id_fkey")),
        sa.CheckConstraint("gross >= 0", name=n("operations_gross_nonneg")),
        sa.CheckConstraint("fee >= 0", name=n("operations_fee_nonneg")),
        sa.CheckConstraint("net >= 0", name=n("operations_net_nonneg")),
        sa.CheckConstraint(
            _in("kind", (k.value for k in OperationKind)), name=n("operations_kind")
        ),
        sa.CheckConstraint(
            _in("status", (s.value for s in OperationStatus)), name=n("operations_status")
        ),
        # I4: one operation per gateway object and kind.
        sa.Index(
            n("operations_kind_gateway_ref"),
            "kind",
            "gateway_ref",
            unique=True,
            postgresql_where=sa.text("gateway_ref IS NOT NULL"),
            sqlite_where=sa.text("gateway_ref IS NOT NULL"),
        ),
        sa.Index(n("ix_operations_claim"), "status", "claimed_until", "next_attempt_at"),
        sa.Index(n("ix_operations_escrow"), "escrow_id", "created_at"),
        sa.Index(n("ix_operations_payee_status"), "payee_id", "status"),
        sa.Index(n("ix_operations_bounty"), "bounty_id"),
    )

    disputes = sa.Table(
        n("disputes"),
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("escrow_id", ID, nullable=False),
        sa.Column("currency", CURRENCY, nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("withdrawn", AMOUNT, nullable=False),
        sa.Column("reinstated", AMOUNT, nullable=False),
        sa.Column("from_held", AMOUNT, nullable=False),
        sa.Column("from_shortfall", AMOUNT, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("charge_refundable", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("disputes_pkey")),
        sa.ForeignKeyConstraint(["escrow_id"], [escrows.c.id], name=n("disputes_escrow_id_fkey")),
        sa.CheckConstraint("amount >= 0", name=n("disputes_amount_nonneg")),
        sa.CheckConstraint("withdrawn >= 0", name=n("disputes_withdrawn_nonneg")),
        sa.CheckConstraint("reinstated >= 0", name=n("disputes_reinstated_nonneg")),
        sa.Index(n("ix_disputes_escrow"), "escrow_id", "created_at"),
    )

    payees = sa.Table(
        n("payees"),
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("account_ref", sa.String, nullable=False),
        sa.Column("ready", sa.Boolean, nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("email", sa.String),
        sa.Column("created_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name=n("payees_pkey")),
        sa.UniqueConstraint("account_ref", name=n("payees_account_ref")),
    )

    ledger_entries = sa.Table(
        n("ledger_entries"),
        md,
        _seq_column(),
        sa.Column("escrow_id", ID, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("ref", sa.String, nullable=False),
        sa.Column("operation_id", ID),
        sa.Column("created_at", UtcDateTime),
        sa.PrimaryKeyConstraint("seq", name=n("ledger_entries_pkey")),
        sa.ForeignKeyConstraint(
            ["escrow_id"], [escrows.c.id], name=n("ledger_entries_escrow_id_fkey")
        ),
        # I4: one ledger effect per (kind, gateway object or operation).
        sa.UniqueConstraint("kind", "ref", name=n("ledger_entries_kind_ref")),
        sa.Index(n("ix_ledger_entries_escrow"), "escrow_id", "seq"),
        sqlite_autoincrement=True,
    )

    ledger_postings = sa.Table(
        n("ledger_postings"),
        md,
        sa.Column("entry_seq", sa.BigInteger, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("account", sa.String, nullable=False),
        sa.Column("currency", CURRENCY, nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.PrimaryKeyConstraint("entry_seq", "line", name=n("ledger_postings_pkey")),
        sa.ForeignKeyConstraint(
            ["entry_seq"], [ledger_entries.c.seq], name=n("ledger_postings_entry_seq_fkey")
        ),
        sa.Index(n("ix_ledger_postings_account"), "account", "currency"),
    )

    audit = sa.Table(
        n("audit"),
        md,
        _seq_column(),
        sa.Column("escrow_id", ID),
        sa.Column("operation_id", ID),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor_id", ID, nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("before", JsonDocument, nullable=False),
        sa.Column("after", JsonDocument, nullable=False),
        sa.Column("correlation_id", sa.String),
        sa.Column("detail", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=n("audit_pkey")),
        sa.Index(n("ix_audit_escrow"), "escrow_id", "seq"),
        sqlite_autoincrement=True,
    )

    domain_events = sa.Table(
        n("domain_events"),
        md,
        _seq_column(),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("escrow_id", ID),
        sa.Column("operation_id", ID),
        sa.Column("data", JsonDocument, nullable=False),
        sa.Column("created_at", UtcDateTime),
        sa.PrimaryKeyConstraint("seq", name=n("domain_events_pkey")),
        sqlite_autoincrement=True,
    )

    webhook_events = sa.Table(
        n("webhook_events"),
        md,
        sa.Column("id", sa.String, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("processed_at", UtcDateTime),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("payload", sa.Text),
        sa.PrimaryKeyConstraint("id", name=n("webhook_events_pkey")),
        sa.CheckConstraint(
            _in("status", (s.value for s in WebhookStatus)), name=n("webhook_events_status")
        ),
        sa.Index(n("ix_webhook_events_received"), "received_at"),
    )

    idempotency_keys = sa.Table(
        n("idempotency_keys"),
        md,
        sa.Column("actor_id", ID, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("locked_until", UtcDateTime),
        sa.Column("result_kind", sa.String(32)),
        sa.Column("result_ref", sa.String),
        sa.Column("error_type", sa.String),
        sa.Column("error_message", sa.Text),
        sa.PrimaryKeyConstraint("actor_id", "key", name=n("idempotency_keys_pkey")),
        sa.Index(n("ix_idempotency_keys_expires"), "expires_at"),
    )

    return Tables(
        metadata=md,
        schema=schema,
        prefix=prefix,
        version_table=f"{prefix or DEFAULT_SCHEMA + '_'}alembic_version",
        escrows=escrows,
        operations=operations,
        disputes=disputes,
        payees=payees,
        ledger_entries=ledger_entries,
        ledger_postings=ledger_postings,
        audit=audit,
        domain_events=domain_events,
        webhook_events=webhook_events,
        idempotency_keys=idempotency_keys,
    )
