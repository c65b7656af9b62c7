"""The demo: one bounty escrow's whole story, told for a person to read.

Runs on the embedded default (a SQLite file) with the fake gateway, or on any database URL.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bountyescrow.domain.money import Money
from bountyescrow.ports.policy import Actor
from bountyescrow.ports.store import EscrowStore
from bountyescrow.service import EscrowService
from bountyescrow.testing import FakeGateway, InMemoryStore, ManualClock


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def make_store(db: str | None, schema: str = "bountyescrow") -> tuple[EscrowStore, str]:
    """The store for the demo: a SQLite file by default, or the given URL (and schema)."""
    try:
        from bountyescrow.adapters.sqlalchemy import SqlAlchemyStore
    except ImportError:
        memory: EscrowStore = InMemoryStore()
        return memory, "in memory (install bountyescrow[sqlalchemy] for SQLite)"
    url = db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='bountyescrow-demo-')) / 'demo.sqlite3'}"
    from sqlalchemy.engine import make_url

    store = SqlAlchemyStore(url, schema=schema)
    store.migrate()
    return store, make_url(url).render_as_string(hide_password=True)


def run(
    *,
    db: str | None = None,
    schema: str = "bountyescrow",
    as_json: bool = False,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tell the story; return what happened as data (also printed with ``as_json``)."""
    store, where = make_store(db, schema)
    try:
        return _tell(store, where, as_json=as_json, out=out)
    finally:
        dispose = getattr(store, "dispose", None)
        if dispose is not None:
            dispose()


def _tell(
    store: EscrowStore, where: str, *, as_json: bool, out: Callable[[str], None]
) -> dict[str, Any]:
    clock = ManualClock()
    fake = FakeGateway(webhook_secret="whsec_demo", clock=clock)
    service = EscrowService(store, fake, fee_bps=1000, namespace="demo", clock=clock)
    poster, admin = Actor("poster-ada"), Actor("ops-grace", roles={"admin"})
    story: list[dict[str, Any]] = []
    say = (lambda text: None) if as_json else out

    def step(title: str, **facts: Any) -> None:
        story.append({"step": title, **facts})
        say(f"\n== {title}")
        for key, value in facts.items():
            say(f"   {key}: {value}")

    say(f"bountyescrow demo (store: {where})")
    esc = service.open_escrow(
        bounty_id="bounty-42",
        poster_id=poster.id,
        amount=Money(25_000, "usd"),
        actor=poster,
        idempotency_key="bounty-42:open",
    )
    step(
        "Poster opens a $250.00 escrow for bounty-42",
        escrow=esc.id,
        status=esc.status.value,
        client_secret="(given to the poster's browser, never logged)",
    )

    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    results = fake.deliver(service, duplicate=True)
    esc = service.get(esc.id)
    step(
        "The poster's card payment succeeds; Stripe delivers the event twice",
        deliveries=[str(r) for r in results],
        status=esc.status.value,
        held=str(esc.held),
        funding_entries=sum(1 for e in service.ledger(esc.id) if e.kind == "funding"),
    )

    payee = service.register_payee("hunter-linus", email="linus@example.com", country="US")
    release = service.release(
        esc.id,
        payee_id=payee.id,
        amount=Money(15_000, "usd"),
        actor=poster,
        idempotency_key="bounty-42:release-1",
    )
    step(
        "Poster releases $150.00 to a hunter still onboarding",
        operation=release.id,
        status=release.status.value,
        reserved=str(service.get(esc.id).reserved),
    )

    fake.complete_onboarding(payee.account_ref)
    fake.deliver(service)
    release = service.get_operation(release.id)
    step(
        "The hunter finishes onboarding: the transfer goes",
        status=release.status.value,
        gross=str(release.gross),
        fee=str(release.fee),
        net=str(release.net),
        transfer=release.gateway_ref,
    )

    refund = service.refund(
        esc.id,
        amount=Money(5_000, "usd"),
        actor=admin,
        reason="requested_by_customer",
        idempotency_key="bounty-42:refund",
    )
    fake.deliver(service)
    step(
        "Support refunds $50.00 to the poster",
        status=refund.status.value,
        refund=refund.gateway_ref,
    )

    payment_ref = esc.payment_ref
    assert payment_ref is not None
    fake.open_dispute(payment_ref, amount=Money(5_000, "usd"))
    fake.deliver(service)
    esc = service.get(esc.id)
    step(
        "The poster's bank opens a dispute: Stripe withdraws $50.00",
        status=esc.status.value,
        frozen=esc.frozen,
        held=str(esc.held),
        dispute_withdrawn=str(esc.dispute_withdrawn),
    )

    fake.close_dispute(payment_ref, won=True)
    fake.deliver(service)
    esc = service.get(esc.id)
    step(
        "The platform wins the dispute: the money is reinstated",
        status=esc.status.value,
        frozen=esc.frozen,
        held=str(esc.held),
    )

    ledger_rows = [
        (e.seq, e.kind, p.account, str(p.amount))
        for e in service.ledger(esc.id)
        for p in e.postings
    ]
    audit_rows = [
        (r.seq, r.actor_id, r.action, r.before.get("status", ""), r.after.get("status", ""))
        for r in service.audit_trail(esc.id)
    ]
    event_rows = [(e.seq, e.type, e.operation_id or "") for e in service.events(limit=1000)]
    problems = service.check_invariants()
    say("\n== Ledger (double entry; every entry sums to zero)")
    say(_table(["#", "entry", "account", "amount"], ledger_rows))
    say("\n== Audit trail")
    say(_table(["#", "actor", "action", "before", "after"], audit_rows))
    say("\n== Domain events")
    say(_table(["#", "event", "operation"], event_rows))
    say("\n== Invariants I1-I4: " + ("all hold" if not problems else "; ".join(problems)))
    say(
        f"   movements at the gateway: {len(fake.movements)} "
        f"({', '.join(f'{m.kind} {m.amount}' for m in fake.movements)})"
    )
    say(f"   required reserve (usd): {service.required_reserve('usd')}")
    result = {
        "store": where,
        "story": story,
        "escrow": {
            "id": esc.id,
            "status": esc.status.value,
            "funded": esc.funded.amount,
            "held": esc.held.amount,
            "released": esc.released.amount,
            "refunded": esc.refunded.amount,
            "fees": esc.fees.amount,
        },
        "ledger": [
            dict(zip(["seq", "entry", "account", "amount"], r, strict=True)) for r in ledger_rows
        ],
        "audit": [
            dict(zip(["seq", "actor", "action", "before", "after"], r, strict=True))
            for r in audit_rows
        ],
        "events": [dict(zip(["seq", "type", "operation"], r, strict=True)) for r in event_rows],
        "invariants": problems,
        "movements": [
            {"kind": m.kind, "amount": m.amount.amount, "operation": m.operation_id}
            for m in fake.movements
        ],
    }
    if as_json:
        out(json.dumps(result, indent=2, default=str))
    if problems:
        raise SystemExit("invariants violated: " + "; ".join(problems))
    return result
