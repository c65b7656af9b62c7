"""Operations remember when their current key generation was first sent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

The gateway forgets idempotency keys after 24 h, so recovery decides between resending a key
and looking the object up by the age of the key, not of the operation (a release can wait days
for its payee before its first send). Frozen like 0001: it does not import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(*, schema: str | None, prefix: str) -> None:
    """Add `operations.sent_at`; pending operations were sent when they were created."""
    with op.batch_alter_table(f"{prefix}operations", schema=schema) as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True)))
    operations = sa.table(
        f"{prefix}operations",
        sa.column("sent_at"),
        sa.column("created_at"),
        sa.column("status"),
        schema=schema,
    )
    op.execute(
        operations.update()
        .where(operations.c.status == "pending")
        .values(sent_at=operations.c.created_at)
    )


def downgrade(*, schema: str | None, prefix: str) -> None:
    """Drop `operations.sent_at`."""
    with op.batch_alter_table(f"{prefix}operations", schema=schema) as batch:
        batch.drop_column("sent_at")
