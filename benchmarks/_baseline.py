"""The baseline: the library's writes for one lifecycle, by hand, with plain psycopg / sqlite3.

No bountyescrow, no SQLAlchemy, no gateway: what a competent hand-written implementation of the
same lifecycle would send to the database. It mirrors the library exactly where the comparison
must be fair, and is leaner only where the library spends statements on its own structure:

Same as the library
    The 6 transactions, in the same order, each of which writes and is committed (the gateway
    call sends the request step 1 stored, so nothing is read back between transactions); on
    SQLite every one starts with ``BEGIN IMMEDIATE``. The reads the library's correctness
    needs (the operation read again under the escrow lock before its answer is recorded, the
    release read again under the escrow lock when ``transfer.created`` arrives). The same
    rows in the same tables with the same values (escrow, two operations with their stored
    gateway requests, two journal entries with five postings, four domain events, five audit
    records, two webhook event records, two idempotency records; `benchmarks._db.snapshot`
    checks it after every run). The same row locks (``SELECT ... FOR UPDATE`` of the escrow in
    every write transaction, of the idempotency record and the webhook event record) and the
    same transaction-scoped advisory locks on PostgreSQL (an idempotency key or webhook event
    id, taken before its record is read; the domain-event log). UPDATEs that set the same
    columns (the ones that change). The same JSON documents (built and encoded per
    statement) and a SHA-256 request fingerprint per idempotency key.

Leaner than the library (documented in docs/performance.md)
    SELECTs name the few columns this code needs (the library reads whole rows: its
    repositories return whole domain values). New rows are plain INSERTs (the library uses
    INSERT ... ON CONFLICT, so that a duplicate is refused without aborting the transaction,
    for escrows, operations and journal entries; and upserts for idempotency and webhook
    records, with a sub-select for the operation's ``bounty_id``). An idempotency record's
    lease ends with ``UPDATE ... SET locked_until = NULL`` (the library upserts the record).
    One connection per worker for the whole run (the library checks a connection out of its
    pool per unit of work; on PostgreSQL with a pre-ping round trip).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks._db import TABLES, Database, Tally, connect

POSTER_ID = "poster-1"
AMOUNT = 25_000
CURRENCY = "usd"
FEE_BPS = 1_000
GATEWAY_ACTOR = "gateway:external"
LEASE = timedelta(seconds=60)
POLL_INTERVAL = timedelta(minutes=15)
IDEMPOTENCY_TTL = timedelta(hours=24)
OPEN_STATUSES = frozenset({"awaiting_funding", "funded", "partially_settled", "disputed"})

_OPERATION_COLUMNS = (
    "id, escrow_id, bounty_id, request_id, actor_id, payee_id, kind, status, currency, gross, "
    "fee, net, fixed_fee, reversed, shortfall, gateway_ref, gateway_status, request, generation, "
    "claimed_until, next_attempt_at, attempts, target_id, reason, correlation_id, error, "
    "created_at, updated_at, sent_at"
)

#: Statement texts: ``{table}`` names, ``:name`` parameters, ``{for_update}`` on PostgreSQL.
STATEMENTS: Mapping[str, str] = {
    "advisory_lock": "SELECT pg_advisory_xact_lock(:key)",
    "idempotency_record": (
        "SELECT action, fingerprint, expires_at, locked_until, result_ref, error_type "
        'FROM {idempotency_keys} WHERE actor_id = :actor_id AND "key" = :key{for_update}'
    ),
    "escrows_of_bounty": (
        "SELECT id, status FROM {escrows} WHERE bounty_id = :bounty_id AND poster_id = :poster_id"
    ),
    "insert_escrow": (
        "INSERT INTO {escrows} (id, bounty_id, poster_id, request_id, currency, amount, funded, "
        "held, reserved, released, refunded, fees, dispute_withdrawn, shortfall, fee_bps, "
        "fee_fixed, fee_fixed_currency, transfer_group, payment_ref, charge_ref, payment_status, "
        "last_payment_error, cancelled, fixed_fee_charged, open_disputes, fraud_warning, status, "
        "created_at, funded_at, version) VALUES (:id, :bounty_id, :poster_id, NULL, :currency, "
        ":amount, 0, 0, 0, 0, 0, 0, 0, 0, :fee_bps, NULL, NULL, :transfer_group, NULL, NULL, "
        "NULL, NULL, FALSE, FALSE, :open_disputes, FALSE, 'awaiting_funding', :now, NULL, 0)"
    ),
    "insert_operation": (
        f"INSERT INTO {{operations}} ({_OPERATION_COLUMNS}) VALUES (:id, :escrow_id, :bounty_id, "
        "NULL, :actor_id, :payee_id, :kind, 'pending', :currency, :gross, :fee, :net, :fixed_fee, "
        ":reversed, NULL, NULL, NULL, :request, 0, :claimed_until, NULL, 0, NULL, NULL, NULL, "
        "NULL, :now, :now, :now)"
    ),
    "insert_event": (
        "INSERT INTO {domain_events} (type, escrow_id, operation_id, data, created_at) "
        "VALUES (:type, :escrow_id, :operation_id, :data, :now)"
    ),
    "insert_audit": (
        'INSERT INTO {audit} (escrow_id, operation_id, action, actor_id, allowed, "before", '
        '"after", correlation_id, detail, created_at) VALUES (:escrow_id, :operation_id, '
        ":action, :actor_id, TRUE, :before, :after, NULL, NULL, :now)"
    ),
    "insert_idempotency": (
        'INSERT INTO {idempotency_keys} (actor_id, "key", action, fingerprint, created_at, '
        "expires_at, locked_until, result_kind, result_ref, error_type, error_message) VALUES "
        "(:actor_id, :key, :action, :fingerprint, :now, :expires_at, :locked_until, "
        ":result_kind, :result_ref, NULL, NULL)"
    ),
    "unlock_idempotency": (
        "UPDATE {idempotency_keys} SET locked_until = NULL "
        'WHERE actor_id = :actor_id AND "key" = :key'
    ),
    "operation_state": "SELECT status, gateway_ref FROM {operations} WHERE id = :id",
    "operation_by_ref": (
        "SELECT id, escrow_id, status FROM {operations} "
        "WHERE kind = :kind AND gateway_ref = :gateway_ref"
    ),
    "lock_escrow": (
        "SELECT status, funded, held, reserved, released, fees, charge_ref, cancelled, "
        "open_disputes FROM {escrows} WHERE id = :id{for_update}"
    ),
    "payee": "SELECT account_ref, ready FROM {payees} WHERE id = :id",
    "escrow_payment_created": (
        "UPDATE {escrows} SET payment_ref = :payment_ref, payment_status = :payment_status, "
        "version = version + 1 WHERE id = :id"
    ),
    "operation_payment_created": (
        "UPDATE {operations} SET gateway_ref = :gateway_ref, gateway_status = :gateway_status, "
        "claimed_until = NULL, next_attempt_at = :next_attempt_at, updated_at = :now "
        "WHERE id = :id"
    ),
    "escrow_funded": (
        "UPDATE {escrows} SET funded = :funded, held = :held, charge_ref = :charge_ref, "
        "payment_status = 'succeeded', status = 'funded', funded_at = :now, "
        "version = version + 1 WHERE id = :id"
    ),
    "operation_funded": (
        "UPDATE {operations} SET status = 'succeeded', gateway_status = 'succeeded', "
        "updated_at = :now WHERE id = :id"
    ),
    "escrow_reserved": (
        "UPDATE {escrows} SET reserved = :reserved, version = version + 1 WHERE id = :id"
    ),
    "escrow_released": (
        "UPDATE {escrows} SET held = :held, reserved = :reserved, released = :released, "
        "fees = :fees, status = :status, version = version + 1 WHERE id = :id"
    ),
    "operation_released": (
        "UPDATE {operations} SET status = 'succeeded', gateway_ref = :gateway_ref, "
        "claimed_until = NULL, updated_at = :now WHERE id = :id"
    ),
    "insert_entry": (
        "INSERT INTO {ledger_entries} (escrow_id, kind, ref, operation_id, created_at) "
        "VALUES (:escrow_id, :kind, :ref, :operation_id, :now) RETURNING seq"
    ),
    "insert_postings": (
        "INSERT INTO {ledger_postings} (entry_seq, line, account, currency, amount) "
        "VALUES (:entry_seq, :line, :account, :currency, :amount)"
    ),
    "webhook_event_locked": (
        "SELECT status, attempts, received_at FROM {webhook_events} WHERE id = :id{for_update}"
    ),
    "insert_webhook_event": (
        "INSERT INTO {webhook_events} (id, type, status, received_at, processed_at, attempts, "
        "error, payload) VALUES (:id, :type, :status, :now, :now, 1, NULL, NULL)"
    ),
    "insert_payee": (
        "INSERT INTO {payees} (id, account_ref, ready, country, email, created_at, updated_at) "
        "VALUES (:id, :account_ref, TRUE, 'US', :email, :now, :now)"
    ),
}

_PARAMETER = re.compile(r"(?<![:\w]):([a-z_]+)")


class BaselineError(RuntimeError):
    """The baseline found the database in a state the lifecycle does not expect."""


def new_id(prefix: str) -> str:
    """Ids shaped like the library's (``esc_`` + 16 URL-safe characters)."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def advisory_key(*parts: str) -> int:
    """The library's advisory lock key for `parts` (a signed 64-bit BLAKE2b digest)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def fingerprint(action: str, params: Mapping[str, Any]) -> str:
    """A SHA-256 digest of a call's action and parameters, as an idempotency record keeps."""
    body = json.dumps([action, dict(params)], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def escrow_view(
    status: str, funded: int, held: int, reserved: int, released: int
) -> dict[str, Any]:
    """The audit record's picture of an escrow."""
    return {
        "status": status,
        "funded": funded,
        "held": held,
        "reserved": reserved,
        "released": released,
        "refunded": 0,
        "dispute_withdrawn": 0,
        "currency": CURRENCY,
    }


def _money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CURRENCY}


class BaselineWorker:
    """One worker's connection, cursor, payee and gateway-id counter."""

    def __init__(self, conn: Any, index: int) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.tag = f"b{index}"
        self.payee_id = f"hunter-{index}"
        self.account_ref = f"acct_{self.tag}000001"
        self._numbers = 0

    def gateway_id(self, prefix: str) -> str:
        """A gateway object id (the fake gateway's part of the lifecycle costs nothing here)."""
        self._numbers += 1
        return f"{prefix}_{self.tag}{self._numbers:06d}"


class BaselineSide:
    """The hand-written lifecycle on one database, with its statements and commits counted."""

    name = "baseline"

    def __init__(self, db: Database, workers: int) -> None:
        self.db = db
        self.pg = db.backend == "postgres"
        self.tally = Tally()
        tables = {name: db.table(name) for name in TABLES}
        for_update = " FOR UPDATE" if self.pg else ""
        self.sql: dict[str, str] = {}
        for name, text in STATEMENTS.items():
            sql = text.format(for_update=for_update, **tables)
            self.sql[name] = _PARAMETER.sub(r"%(\1)s", sql) if self.pg else sql
        if self.pg:
            from psycopg.types.json import Jsonb

            self._jsonb = Jsonb
        self.workers = [BaselineWorker(connect(db), k) for k in range(workers)]
        for worker in self.workers:
            with self._transaction(worker):
                self._run(
                    worker,
                    "insert_payee",
                    id=worker.payee_id,
                    account_ref=worker.account_ref,
                    email="h@example.com",
                    now=self._time(datetime.now(UTC)),
                )
        self.tally.reset()

    def close(self) -> None:
        for worker in self.workers:
            worker.conn.close()

    # --- plumbing -------------------------------------------------------------------------

    def _json(self, document: Any) -> Any:
        if self.pg:
            return self._jsonb(document)
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    def _time(self, when: datetime) -> Any:
        # SQLite keeps naive UTC text in SQLAlchemy's format, so both sides' rows compare.
        if self.pg:
            return when
        return when.replace(tzinfo=None).isoformat(" ", "microseconds")

    @contextmanager
    def _transaction(self, w: BaselineWorker) -> Iterator[None]:
        """One transaction, committed (every one of the lifecycle writes)."""
        self.tally.begin()
        if not self.pg:
            w.cur.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            w.conn.rollback()
            raise
        w.conn.commit()
        self.tally.commit()

    def _one(self, w: BaselineWorker, name: str, **params: Any) -> Any:
        sql = self.sql[name]
        w.cur.execute(sql, params)
        self.tally.statement(sql)
        return w.cur.fetchone()

    def _run(self, w: BaselineWorker, name: str, **params: Any) -> None:
        sql = self.sql[name]
        w.cur.execute(sql, params)
        self.tally.statement(sql)

    def _many(self, w: BaselineWorker, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        sql = self.sql[name]
        w.cur.executemany(sql, rows)
        self.tally.statement(sql)

    def _lock(self, w: BaselineWorker, *parts: str) -> None:
        if self.pg:
            self._one(w, "advisory_lock", key=advisory_key(self.db.schema, *parts))

    def _event(
        self, w: BaselineWorker, kind: str, escrow_id: str, op_id: str | None, data: Any, now: Any
    ) -> None:
        self._lock(w, "domain_events")
        self._run(
            w,
            "insert_event",
            type=kind,
            escrow_id=escrow_id,
            operation_id=op_id,
            data=self._json(data),
            now=now,
        )

    def _audit(
        self,
        w: BaselineWorker,
        action: str,
        actor: str,
        escrow_id: str,
        op_id: str,
        before: dict[str, Any],
        after: dict[str, Any],
        now: Any,
    ) -> None:
        self._run(
            w,
            "insert_audit",
            escrow_id=escrow_id,
            operation_id=op_id,
            action=action,
            actor_id=actor,
            before=self._json(before),
            after=self._json(after),
            now=now,
        )

    def _entry(
        self,
        w: BaselineWorker,
        kind: str,
        ref: str,
        escrow_id: str,
        op_id: str,
        postings: Sequence[tuple[str, int]],
        now: Any,
    ) -> None:
        row = self._one(
            w, "insert_entry", escrow_id=escrow_id, kind=kind, ref=ref, operation_id=op_id, now=now
        )
        self._many(
            w,
            "insert_postings",
            [
                {
                    "entry_seq": row[0],
                    "line": line,
                    "account": account,
                    "currency": CURRENCY,
                    "amount": amount,
                }
                for line, (account, amount) in enumerate(postings, start=1)
            ],
        )

    def _claim_webhook(self, w: BaselineWorker, event_id: str) -> None:
        self._lock(w, "webhook_event", event_id)
        if self._one(w, "webhook_event_locked", id=event_id) is not None:
            raise BaselineError(f"webhook event {event_id} was processed meanwhile")

    def _claim_key(self, w: BaselineWorker, key: str) -> None:
        self._lock(w, "idempotency", POSTER_ID, key)
        if self._one(w, "idempotency_record", actor_id=POSTER_ID, key=key) is not None:
            raise BaselineError(f"idempotency key {key} was used before")

    def _lock_escrow(self, w: BaselineWorker, escrow_id: str) -> Any:
        row = self._one(w, "lock_escrow", id=escrow_id)
        if row is None:
            raise BaselineError(f"no escrow {escrow_id}")
        return row

    # --- the lifecycle --------------------------------------------------------------------

    def lifecycle(self, worker: int, bounty_id: str) -> None:
        """The same 6 transactions and rows as `LibraryWorker.lifecycle`."""
        w = self.workers[worker]
        escrow_id, funding_id, release_id = new_id("esc"), new_id("op"), new_id("op")
        group = f"escrow_{escrow_id}"
        metadata = {
            "bounty_id": bounty_id,
            "bountyescrow_escrow_id": escrow_id,
            "bountyescrow_namespace": "bench",
        }
        open_key, release_key = f"open:{bounty_id}", f"release:{bounty_id}"

        # 1. open_escrow, step 1: escrow, funding operation, event, audit, idempotency record.
        started = datetime.now(UTC)
        now = self._time(started)
        params = {
            "bounty_id": bounty_id,
            "poster_id": POSTER_ID,
            "amount": _money(AMOUNT),
            "request_id": None,
            "allow_additional": False,
        }
        with self._transaction(w):
            self._claim_key(w, open_key)
            for _, status in self._all_escrows(w, bounty_id):
                if status in OPEN_STATUSES:
                    raise BaselineError(f"bounty {bounty_id} has an open escrow")
            self._run(
                w,
                "insert_escrow",
                id=escrow_id,
                bounty_id=bounty_id,
                poster_id=POSTER_ID,
                currency=CURRENCY,
                amount=AMOUNT,
                fee_bps=FEE_BPS,
                transfer_group=group,
                open_disputes=self._json([]),
                now=now,
            )
            request = {
                "action": "create_payment",
                "amount": _money(AMOUNT),
                "description": None,
                "metadata": {**metadata, "bountyescrow_operation_id": funding_id},
                "payment_method_types": ["card"],
                "receipt_email": None,
                "transfer_group": group,
            }
            self._run(
                w,
                "insert_operation",
                id=funding_id,
                escrow_id=escrow_id,
                bounty_id=bounty_id,
                actor_id=POSTER_ID,
                payee_id=None,
                kind="funding",
                currency=CURRENCY,
                gross=AMOUNT,
                fee=0,
                net=AMOUNT,
                fixed_fee=None,
                reversed=None,
                request=self._json(request),
                claimed_until=self._time(started + LEASE),
                now=now,
            )
            self._event(w, "escrow.opened", escrow_id, None, _money(AMOUNT), now)
            awaiting = escrow_view("awaiting_funding", 0, 0, 0, 0)
            self._audit(w, "open", POSTER_ID, escrow_id, funding_id, {}, awaiting, now)
            self._run(
                w,
                "insert_idempotency",
                actor_id=POSTER_ID,
                key=open_key,
                action="open",
                fingerprint=fingerprint("open", params),
                now=now,
                expires_at=self._time(started + IDEMPOTENCY_TTL),
                locked_until=self._time(started + LEASE),
                result_kind="escrow",
                result_ref=escrow_id,
            )

        # The gateway call sends the request step 1 stored: nothing is read back for it.
        payment_ref = w.gateway_id("pi")

        # 2. Record the PaymentIntent; release the idempotency record's lease.
        now_dt = datetime.now(UTC)
        now = self._time(now_dt)
        with self._transaction(w):
            self._lock_escrow(w, escrow_id)
            self._one(w, "operation_state", id=funding_id)
            self._run(
                w,
                "escrow_payment_created",
                id=escrow_id,
                payment_ref=payment_ref,
                payment_status="requires_payment_method",
            )
            self._run(
                w,
                "operation_payment_created",
                id=funding_id,
                gateway_ref=payment_ref,
                gateway_status="requires_payment_method",
                next_attempt_at=self._time(now_dt + POLL_INTERVAL),
                now=now,
            )
            self._audit(
                w, "payment_created", POSTER_ID, escrow_id, funding_id, awaiting, awaiting, now
            )
            self._run(w, "unlock_idempotency", actor_id=POSTER_ID, key=open_key)

        # 3. payment_intent.succeeded: dedupe under the event's lock, fund the escrow, book it.
        charge_ref, paid_event = w.gateway_id("ch"), w.gateway_id("evt")
        now = self._time(datetime.now(UTC))
        with self._transaction(w):
            self._claim_webhook(w, paid_event)
            self._lock_escrow(w, escrow_id)
            self._one(w, "operation_by_ref", kind="funding", gateway_ref=payment_ref)
            self._run(
                w,
                "escrow_funded",
                id=escrow_id,
                funded=AMOUNT,
                held=AMOUNT,
                charge_ref=charge_ref,
                now=now,
            )
            self._run(w, "operation_funded", id=funding_id, now=now)
            self._entry(
                w,
                "funding",
                payment_ref,
                escrow_id,
                funding_id,
                [(f"gateway:{CURRENCY}", -AMOUNT), (f"escrow:{escrow_id}", AMOUNT)],
                now,
            )
            funded = {
                **_money(AMOUNT),
                "kind": "funding",
                "payment_ref": payment_ref,
                "status": "succeeded",
            }
            self._event(w, "escrow.funded", escrow_id, funding_id, funded, now)
            funded_view = escrow_view("funded", AMOUNT, AMOUNT, 0, 0)
            self._audit(
                w,
                "payment_succeeded",
                GATEWAY_ACTOR,
                escrow_id,
                funding_id,
                awaiting,
                funded_view,
                now,
            )
            self._run(
                w,
                "insert_webhook_event",
                id=paid_event,
                type="payment_intent.succeeded",
                status="processed",
                now=now,
            )

        # 4. release, step 1: reserve the money, the release operation with its transfer.
        started = datetime.now(UTC)
        now = self._time(started)
        fee = AMOUNT * FEE_BPS // 10_000
        with self._transaction(w):
            self._claim_key(w, release_key)
            self._lock_escrow(w, escrow_id)
            payee = self._one(w, "payee", id=w.payee_id)
            if payee is None or not payee[1]:
                raise BaselineError(f"payee {w.payee_id} is not ready")
            self._run(w, "escrow_reserved", id=escrow_id, reserved=AMOUNT)
            request = {
                "action": "create_transfer",
                "amount": _money(AMOUNT - fee),
                "destination": payee[0],
                "metadata": {**metadata, "bountyescrow_operation_id": release_id},
                "source_transaction": charge_ref,
                "transfer_group": group,
            }
            self._run(
                w,
                "insert_operation",
                id=release_id,
                escrow_id=escrow_id,
                bounty_id=bounty_id,
                actor_id=POSTER_ID,
                payee_id=w.payee_id,
                kind="release",
                currency=CURRENCY,
                gross=AMOUNT,
                fee=fee,
                net=AMOUNT - fee,
                fixed_fee=0,
                reversed=0,
                request=self._json(request),
                claimed_until=self._time(started + LEASE),
                now=now,
            )
            created = {**_money(AMOUNT), "kind": "release", "status": "pending"}
            self._event(w, "operation.created", escrow_id, release_id, created, now)
            reserved_view = escrow_view("funded", AMOUNT, AMOUNT, AMOUNT, 0)
            self._audit(
                w, "release", POSTER_ID, escrow_id, release_id, funded_view, reserved_view, now
            )
            release_params = {"escrow_id": escrow_id, "payee_id": w.payee_id, "amount": None}
            self._run(
                w,
                "insert_idempotency",
                actor_id=POSTER_ID,
                key=release_key,
                action="release",
                fingerprint=fingerprint("release", release_params),
                now=now,
                expires_at=self._time(started + IDEMPOTENCY_TTL),
                locked_until=self._time(started + LEASE),
                result_kind="operation",
                result_ref=release_id,
            )

        transfer_ref = w.gateway_id("tr")

        # 5. Record the transfer: money leaves held for the payee and the fee; book it.
        now = self._time(datetime.now(UTC))
        with self._transaction(w):
            self._lock_escrow(w, escrow_id)
            self._one(w, "operation_state", id=release_id)
            self._run(
                w,
                "escrow_released",
                id=escrow_id,
                held=0,
                reserved=0,
                released=AMOUNT,
                fees=fee,
                status="released",
            )
            self._run(w, "operation_released", id=release_id, gateway_ref=transfer_ref, now=now)
            self._entry(
                w,
                "release",
                transfer_ref,
                escrow_id,
                release_id,
                [
                    (f"escrow:{escrow_id}", -AMOUNT),
                    (f"payee:{w.payee_id}", AMOUNT - fee),
                    ("platform:fees", fee),
                ],
                now,
            )
            succeeded = {
                **_money(AMOUNT),
                "gateway_ref": transfer_ref,
                "kind": "release",
                "status": "succeeded",
            }
            self._event(w, "operation.succeeded", escrow_id, release_id, succeeded, now)
            released_view = escrow_view("released", AMOUNT, 0, 0, AMOUNT)
            self._audit(
                w,
                "released",
                POSTER_ID,
                escrow_id,
                release_id,
                reserved_view,
                released_view,
                now,
            )
            self._run(w, "unlock_idempotency", actor_id=POSTER_ID, key=release_key)

        # 6. transfer.created: dedupe, find the release, lock its escrow, read the release again
        # under that lock (it may have changed meanwhile): already succeeded, record the event.
        transfer_event = w.gateway_id("evt")
        now = self._time(datetime.now(UTC))
        with self._transaction(w):
            self._claim_webhook(w, transfer_event)
            self._one(w, "operation_by_ref", kind="release", gateway_ref=transfer_ref)
            self._lock_escrow(w, escrow_id)
            self._one(w, "operation_state", id=release_id)
            self._run(
                w,
                "insert_webhook_event",
                id=transfer_event,
                type="transfer.created",
                status="ignored",
                now=now,
            )

    def _all_escrows(self, w: BaselineWorker, bounty_id: str) -> list[Any]:
        sql = self.sql["escrows_of_bounty"]
        w.cur.execute(sql, {"bounty_id": bounty_id, "poster_id": POSTER_ID})
        self.tally.statement(sql)
        return list(w.cur.fetchall())
