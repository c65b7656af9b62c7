"""Initial tables: escrows, operations, disputes, payees, ledger, audit, events, webhooks, keys.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen on purpose: this file does not import the live table definitions, so later changes to
them need a new revision. Tables live in `schema` on PostgreSQL, or carry `prefix` on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ESCROW_STATUSES = (
    "awaiting_funding",
    "cancelled",
    "disputed",
    "funded",
    "partially_settled",
    "refunded",
    "released",
    "settled",
)
OPERATION_KINDS = (
    "cancel",
    "external_refund",
    "external_reversal",
    "funding",
    "refund",
    "release",
    "reversal",
)
OPERATION_STATUSES = ("awaiting_payee", "cancelled", "failed", "pending", "succeeded")
WEBHOOK_STATUSES = ("failed", "ignored", "processed")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade(*, schema: str | None, prefix: str) -> None:
    """Create every table and index."""
    pg = op.get_bind().dialect.name == "postgresql"
    p = prefix

    def n(name: str) -> str:
        return f"{p}{name}"

    def ident() -> sa.types.TypeEngine[str]:
        return postgresql.VARCHAR(collation="C") if pg else sa.String()

    def doc() -> sa.types.TypeEngine[Any]:
        return postgresql.JSONB() if pg else sa.Text()

    def ts() -> sa.DateTime:
        return sa.DateTime(timezone=True)

    def seq() -> sa.Column[int]:
        return sa.Column("seq", sa.BigInteger() if pg else sa.Integer(), sa.Identity(always=True))

    def amount(name: str, *, nullable: bool = False) -> sa.Column[int]:
        return sa.Column(name, sa.BigInteger(), nullable=nullable)

    sqlite_kw = {} if pg else {"sqlite_autoincrement": True}

    op.create_table(
        n("escrows"),
        sa.Column("id", ident(), nullable=False),
        sa.Column("bounty_id", ident(), nullable=False),
        sa.Column("poster_id", ident(), nullable=False),
        sa.Column("request_id", ident()),
        sa.Column("currency", sa.String(3), nullable=False),
        amount("amount"),
        amount("funded"),
        amount("held"),
        amount("reserved"),
        amount("released"),
        amount("refunded"),
        amount("fees"),
        amount("dispute_withdrawn"),
        amount("shortfall"),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        amount("fee_fixed", nullable=True),
        sa.Column("fee_fixed_currency", sa.String(3)),
        sa.Column("transfer_group", sa.String(), nullable=False),
        sa.Column("payment_ref", sa.String()),
        sa.Column("charge_ref", sa.String()),
        sa.Column("payment_status", sa.String()),
        sa.Column("last_payment_error", sa.Text()),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("fixed_fee_charged", sa.Boolean(), nullable=False),
        sa.Column("open_disputes", doc(), nullable=False),
        sa.Column("fraud_warning", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("funded_at", ts()),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("escrows_pkey")),
        sa.CheckConstraint("amount >= 0", name=n("escrows_amount_nonneg")),
        sa.CheckConstraint("funded >= 0", name=n("escrows_funded_nonneg")),
        sa.CheckConstraint("held >= 0", name=n("escrows_held_nonneg")),
        sa.CheckConstraint("reserved >= 0", name=n("escrows_reserved_nonneg")),
        sa.CheckConstraint("reserved <= held", name=n("escrows_reserved_le_held")),
        sa.CheckConstraint(_in("status", ESCROW_STATUSES), name=n("escrows_status")),
        schema=schema,
    )
    op.create_index(
        n("ix_escrows_bounty_poster"), n("escrows"), ["bounty_id", "poster_id"], schema=schema
    )
    op.create_index(n("ix_escrows_poster"), n("escrows"), ["poster_id"], schema=schema)

    escrows_id = f"{schema}.{n('escrows')}.id" if schema else f"{n('escrows')}.id"

    op.create_table(
        n("operations"),
        sa.Column("id", ident(), nullable=False),
        sa.Column("escrow_id", ident(), nullable=False),
        sa.Column("bounty_id", ident()),
        sa.Column("request_id", ident()),
        sa.Column("actor_id", ident(), nullable=False),
        sa.Column("payee_id", ident()),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        amount("gross"),
        amount("fee"),
        amount("net"),
        amount("fixed_fee", nullable=True),
        amount("reversed", nullable=True),
        amount("shortfall", nullable=True),
        sa.Column("gateway_ref", sa.String()),
        sa.Column("gateway_status", sa.String()),
        sa.Column("request", doc()),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("claimed_until", ts()),
        sa.Column("next_attempt_at", ts()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("target_id", ident()),
        sa.Column("reason", sa.Text()),
        sa.Column("correlation_id", sa.String()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("updated_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("operations_pkey")),
        sa.ForeignKeyConstraint(["escrow_id"], [escrows_id], name=n("operations_escrow_id_fkey")),
        sa.CheckConstraint("gross >= 0", name=n("operations_gross_nonneg")),
        sa.CheckConstraint("fee >= 0", name=n("operations_fee_nonneg")),
        sa.CheckConstraint("net >= 0", name=n("operations_net_nonneg")),
        sa.CheckConstraint(_in("kind", OPERATION_KINDS), name=n("operations_kind")),
        sa.CheckConstraint(_in("status", OPERATION_STATUSES), name=n("operations_status")),
        schema=schema,
    )
    op.create_index(
        n("operations_kind_gateway_ref"),
        n("operations"),
        ["kind", "gateway_ref"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("gateway_ref IS NOT NULL"),
        sqlite_where=sa.text("gateway_ref IS NOT NULL"),
    )
    op.create_index(
        n("ix_operations_claim"),
        n("operations"),
        ["status", "claimed_until", "next_attempt_at"],
        schema=schema,
    )
    op.create_index(
        n("ix_operations_escrow"), n("operations"), ["escrow_id", "created_at"], schema=schema
    )
    op.create_index(
        n("ix_operations_payee_status"), n("operations"), ["payee_id", "status"], schema=schema
    )
    op.create_index(n("ix_operations_bounty"), n("operations"), ["bounty_id"], schema=schema)

    op.create_table(
        n("disputes"),
        sa.Column("id", ident(), nullable=False),
        sa.Column("escrow_id", ident(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        amount("amount"),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text()),
        amount("withdrawn"),
        amount("reinstated"),
        amount("from_held"),
        amount("from_shortfall"),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("updated_at", ts(), nullable=False),
        sa.Column("charge_refundable", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=n("disputes_pkey")),
        sa.ForeignKeyConstraint(["escrow_id"], [escrows_id], name=n("disputes_escrow_id_fkey")),
        sa.CheckConstraint("amount >= 0", name=n("disputes_amount_nonneg")),
        sa.CheckConstraint("withdrawn >= 0", name=n("disputes_withdrawn_nonneg")),
        sa.CheckConstraint("reinstated >= 0", name=n("disputes_reinstated_nonneg")),
        schema=schema,
    )
    op.create_index(
        n("ix_disputes_escrow"), n("disputes"), ["escrow_id", "created_at"], schema=schema
    )

    op.create_table(
        n("payees"),
        sa.Column("id", ident(), nullable=False),
        sa.Column("account_ref", sa.String(), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("email", sa.String()),
        sa.Column("created_at", ts()),
        sa.Column("updated_at", ts()),
        sa.PrimaryKeyConstraint("id", name=n("payees_pkey")),
        sa.UniqueConstraint("account_ref", name=n("payees_account_ref")),
        schema=schema,
    )

    op.create_table(
        n("ledger_entries"),
        seq(),
        sa.Column("escrow_id", ident(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(), nullable=False),
        sa.Column("operation_id", ident()),
        sa.Column("created_at", ts()),
        sa.PrimaryKeyConstraint("seq", name=n("ledger_entries_pkey")),
        sa.ForeignKeyConstraint(
            ["escrow_id"], [escrows_id], name=n("ledger_entries_escrow_id_fkey")
        ),
        sa.UniqueConstraint("kind", "ref", name=n("ledger_entries_kind_ref")),
        schema=schema,
        **sqlite_kw,
    )
    op.create_index(
        n("ix_ledger_entries_escrow"), n("ledger_entries"), ["escrow_id", "seq"], schema=schema
    )
    entries_seq = f"{schema}.{n('ledger_entries')}.seq" if schema else f"{n('ledger_entries')}.seq"
    op.create_table(
        n("ledger_postings"),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        amount("amount"),
        sa.PrimaryKeyConstraint("entry_seq", "line", name=n("ledger_postings_pkey")),
        sa.ForeignKeyConstraint(
            ["entry_seq"], [entries_seq], name=n("ledger_postings_entry_seq_fkey")
        ),
        schema=schema,
    )
    op.create_index(
        n("ix_ledger_postings_account"),
        n("ledger_postings"),
        ["account", "currency"],
        schema=schema,
    )

    op.create_table(
        n("audit"),
        seq(),
        sa.Column("escrow_id", ident()),
        sa.Column("operation_id", ident()),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor_id", ident(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("before", doc(), nullable=False),
        sa.Column("after", doc(), nullable=False),
        sa.Column("correlation_id", sa.String()),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=n("audit_pkey")),
        schema=schema,
        **sqlite_kw,
    )
    op.create_index(n("ix_audit_escrow"), n("audit"), ["escrow_id", "seq"], schema=schema)

    op.create_table(
        n("domain_events"),
        seq(),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("escrow_id", ident()),
        sa.Column("operation_id", ident()),
        sa.Column("data", doc(), nullable=False),
        sa.Column("created_at", ts()),
        sa.PrimaryKeyConstraint("seq", name=n("domain_events_pkey")),
        schema=schema,
        **sqlite_kw,
    )

    op.create_table(
        n("webhook_events"),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", ts(), nullable=False),
        sa.Column("processed_at", ts()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("payload", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=n("webhook_events_pkey")),
        sa.CheckConstraint(_in("status", WEBHOOK_STATUSES), name=n("webhook_events_status")),
        schema=schema,
    )
    op.create_index(
        n("ix_webhook_events_received"), n("webhook_events"), ["received_at"], schema=schema
    )

    op.create_table(
        n("idempotency_keys"),
        sa.Column("actor_id", ident(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("expires_at", ts(), nullable=False),
        sa.Column("locked_until", ts()),
        sa.Column("result_kind", sa.String(32)),
        sa.Column("result_ref", sa.String()),
        sa.Column("error_type", sa.String()),
        sa.Column("error_message", sa.Text()),
        sa.PrimaryKeyConstraint("actor_id", "key", name=n("idempotency_keys_pkey")),
        schema=schema,
    )
    op.create_index(
        n("ix_idempotency_keys_expires"), n("idempotency_keys"), ["expires_at"], schema=schema
    )


def downgrade(*, schema: str | None, prefix: str) -> None:
    """Drop every table (children first)."""
    for name in (
        "idempotency_keys",
        "webhook_events",
        "domain_events",
        "audit",
        "ledger_postings",
        "ledger_entries",
        "payees",
        "disputes",
        "operations",
        "escrows",
    ):
        op.drop_table(f"{prefix}{name}", schema=schema)
