"""The store's statements, built once per store and run with parameter dictionaries.

A statement built per call (``insert(t).values(row)``, ``select(t).where(t.c.id == value)``)
makes SQLAlchemy turn every value into a new bound parameter and compute a new cache key over
the whole statement before it can find the compiled SQL: from 0.2 ms (a SELECT by id) to 0.9 ms
(a 30-column INSERT) of CPU more per statement on PostgreSQL. A statement built once finds its
compiled form at once; the values travel as a parameter dictionary (``bindparam`` names below).
Statements run rarely (reports, paging, recovery, pruning) are still built per call.

UPDATEs set only the columns that changed, so there is one statement per set of columns;
they are built on first use and kept (a store sees a few dozen such sets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from bountyescrow.adapters.sqlalchemy._tables import Tables

#: The parameter that names the row an UPDATE changes (a column's own name is reserved for
#: its new value in the SET clause).
KEY = "b_key"
#: The bind parameter of a guarded UPDATE: the status the writer's copy was based on.
STATUS = "b_status"


def _by_id(table: sa.Table, columns: Sequence[sa.ColumnElement[Any]]) -> sa.Select[Any]:
    return sa.select(*columns).where(table.c.id == sa.bindparam("id"))


class Statements:
    """Every statement the store runs more than rarely, for one store's tables and dialect."""

    def __init__(self, tables: Tables, *, postgresql: bool) -> None:
        self.tables = tables
        #: The dialect's INSERT, which knows ``ON CONFLICT``.
        self.insert: Callable[[sa.Table], Any] = (
            pg_dialect.insert if postgresql else sqlite_dialect.insert
        )
        self._updates: dict[tuple[str, tuple[str, ...], bool], sa.Update] = {}
        t = tables
        e, o = t.escrows, t.operations

        # `status` is derived from the amounts for the host's reports and never read back;
        # `bounty_id` of an operation is copied from its escrow on insert, likewise.
        escrow_columns = [c for c in e.c if c.name != "status"]
        operation_columns = [c for c in o.c if c.name != "bounty_id"]

        self.escrow = _by_id(e, escrow_columns)
        self.escrow_locked = self.escrow.with_for_update()
        self.escrows_ordered = sa.select(*escrow_columns).order_by(e.c.created_at, e.c.id)
        self.escrows_of_bounty_and_poster = self.escrows_ordered.where(
            e.c.bounty_id == sa.bindparam("bounty_id"), e.c.poster_id == sa.bindparam("poster_id")
        )
        self.add_escrow = self.insert(e).on_conflict_do_nothing().returning(e.c.id)

        self.operation = _by_id(o, operation_columns)
        self.operation_locked = self.operation.with_for_update()
        self.operation_by_ref = sa.select(*operation_columns).where(
            o.c.kind == sa.bindparam("kind"), o.c.gateway_ref == sa.bindparam("gateway_ref")
        )
        self.operations_of_escrow = (
            sa.select(*operation_columns)
            .where(o.c.escrow_id == sa.bindparam("escrow_id"))
            .order_by(o.c.created_at, o.c.id)
        )
        # ON CONFLICT DO NOTHING: a duplicate is reported without aborting the transaction.
        self.add_operation = (
            self.insert(o)
            .values(
                bounty_id=sa.select(e.c.bounty_id)
                .where(e.c.id == sa.bindparam("bounty_of"))
                .scalar_subquery()
            )
            .on_conflict_do_nothing()
            .returning(o.c.id)
        )

        self.dispute = _by_id(t.disputes, list(t.disputes.c))
        self.disputes_of_escrow = (
            sa.select(t.disputes)
            .where(t.disputes.c.escrow_id == sa.bindparam("escrow_id"))
            .order_by(t.disputes.c.created_at, t.disputes.c.id)
        )
        self.save_dispute = self._upsert(t.disputes, ("id",))

        self.payee = _by_id(t.payees, list(t.payees.c))
        self.payee_locked = self.payee.with_for_update()
        self.payee_by_account = sa.select(t.payees).where(
            t.payees.c.account_ref == sa.bindparam("account_ref")
        )
        self.save_payee = self._upsert(t.payees, ("id",))

        entries = t.ledger_entries
        self.add_entry = self.insert(entries).on_conflict_do_nothing().returning(entries.c.seq)
        self.add_postings = sa.insert(t.ledger_postings)
        self.entry_exists = (
            sa.select(entries.c.seq)
            .where(entries.c.kind == sa.bindparam("kind"), entries.c.ref == sa.bindparam("ref"))
            .limit(1)
        )

        # No RETURNING: nobody needs the audit record's number (SQLAlchemy would otherwise
        # fetch the generated key on PostgreSQL).
        self.add_audit = sa.insert(t.audit).inline()
        self.add_event = sa.insert(t.domain_events).returning(t.domain_events.c.seq)

        hooks = t.webhook_events
        self.webhook_event = _by_id(hooks, list(hooks.c))
        self.webhook_event_locked = self.webhook_event.with_for_update()
        self.save_webhook_event = self._upsert(hooks, ("id",))

        keys = t.idempotency_keys
        self.idempotency = sa.select(keys).where(
            keys.c.actor_id == sa.bindparam("actor_id"), keys.c.key == sa.bindparam("key")
        )
        self.idempotency_locked = self.idempotency.with_for_update()
        self.save_idempotency = self._upsert(keys, ("actor_id", "key"))

        self.advisory_lock = sa.select(
            sa.func.pg_advisory_xact_lock(sa.bindparam("lock", type_=sa.BigInteger()))
        )

    def _upsert(self, table: sa.Table, key: tuple[str, ...]) -> Any:
        """Insert a whole row, or update every other column of the row with the same `key`."""
        stmt = self.insert(table)
        changes = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in key}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=changes)

    def update(
        self, table: sa.Table, columns: tuple[str, ...], *, guarded: bool = False
    ) -> sa.Update:
        """``UPDATE table SET <columns> WHERE id = :b_key``; escrows also bump `version`.

        `guarded` adds ``AND status = :b_status``: the row is written only if its status is
        still the one the writer's copy was based on.
        """
        cache_key = (table.name, columns, guarded)
        stmt = self._updates.get(cache_key)
        if stmt is None:
            values: dict[str, Any] = {name: sa.bindparam(name) for name in columns}
            if table is self.tables.escrows:
                values["version"] = table.c.version + 1
            built = sa.update(table).where(table.c.id == sa.bindparam(KEY)).values(values)
            if guarded:
                built = built.where(table.c.status == sa.bindparam(STATUS))
            # Threads share the store: setdefault is atomic, so they all keep the same one.
            stmt = self._updates.setdefault(cache_key, built)
        return stmt
