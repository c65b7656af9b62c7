"""The escrow lifecycle, one test per cell of the status x command/event table.

`TABLE` below is the table shown in ``docs/concepts.md`` (section "Every status, every command
and event"); the last test parses that Markdown table and compares it cell by cell, so the
documentation and the tests cannot drift. Cells not in `TABLE` show ``—`` (does not apply).

Every cell starts from the state its column names (built by `builders`, $100.00 escrow, 10 %
fee), performs the row's command or gateway event through the pure transitions and checks the
outcome: the new status and key amounts, the error raised, or that nothing changed. The
invariants (`violations(...) == []`) are checked after every outcome by the `Book`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from bountyescrow.domain import transitions as tr
from bountyescrow.domain.escrow import Escrow, EscrowStatus
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.errors import (
    BountyEscrowError,
    EscrowFrozenError,
    InsufficientFundsError,
    InvalidTransitionError,
)

from . import builders
from .builders import HUNTER_NOT_READY, Book, usd

CONCEPTS = Path(__file__).resolve().parents[2] / "docs" / "concepts.md"

# --- expected outcomes ----------------------------------------------------------------------------


def _shown(value: object) -> str:
    if isinstance(value, Money):
        return value.format()
    if value is None:
        return "all"
    return str(value)


@attrs.frozen
class Becomes:
    """The escrow ends in `status`; the named fields show these values; new operations."""

    status: str
    fields: tuple[tuple[str, str], ...] = ()
    #: Every operation the row created, as ``kind amount status``; None: not checked.
    new_ops: tuple[str, ...] | None = None

    def __str__(self) -> str:
        parts = [self.status, *(f"{name} {value}" for name, value in self.fields)]
        parts += [f"+{op}" for op in self.new_ops or ()]
        return " · ".join(parts)

    def check(self, before_ops: set[str], after: Book) -> None:
        assert after.escrow.status.value == self.status
        for name, value in self.fields:
            assert _shown(getattr(after.escrow, name)) == value, name
        if self.new_ops is not None:
            created = [
                f"{op.kind.value} {op.gross.format()} {op.status.value}"
                for op_id, op in after.ops.items()
                if op_id not in before_ops
            ]
            assert tuple(created) == self.new_ops


def becomes(status: str, *new_ops: str, **fields: str) -> Becomes:
    """`Becomes` with fields in the order written."""
    return Becomes(status, tuple(fields.items()), new_ops or None)


@attrs.frozen
class Raises:
    """The command is refused with `error`, whose attributes name what is wrong."""

    error: type[BountyEscrowError]
    details: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        if not self.details:
            return self.error.__name__
        return f"{self.error.__name__} ({', '.join(f'{k} {v}' for k, v in self.details)})"


def invalid(current: str, attempted: str) -> Raises:
    return Raises(InvalidTransitionError, (("current", current), ("attempted", attempted)))


NOTHING_AVAILABLE = Raises(InsufficientFundsError, (("available", "$0.00"), ("requested", "all")))
FROZEN = Raises(EscrowFrozenError)


@attrs.frozen
class NoChange:
    """The gateway fact is already known or does not apply: nothing is recorded."""

    def __str__(self) -> str:
        return "no change"


@attrs.frozen
class SecondEscrow:
    """Whether a second escrow for the same (bounty, poster) may be opened.

    The service refuses with `EscrowExistsError` while `Escrow.is_open` (awaiting funding or
    holding money) unless ``allow_additional=True``; otherwise the new escrow awaits funding.
    """

    allowed: bool

    def __str__(self) -> str:
        return "new escrow: awaiting_funding" if self.allowed else "refused: EscrowExistsError"


Expected = Becomes | Raises | NoChange | SecondEscrow
NO_CHANGE = NoChange()

# --- the table ------------------------------------------------------------------------------------

COLUMNS = (
    "awaiting_funding",
    "funded",
    "partially_settled",
    "released",
    "refunded",
    "settled",
    "disputed",
    "cancelled",
)

#: How each column's state is built (see `builders` for the amounts).
STATES: dict[str, Callable[[], Book]] = {
    "awaiting_funding": builders.awaiting_funding,
    "funded": builders.funded,
    "partially_settled": builders.partially_settled,
    "released": builders.released,
    "refunded": builders.refunded,
    "settled": builders.settled,
    "disputed": builders.disputed,
    "cancelled": builders.cancelled,
}

ROWS = (
    "open",
    "pay (payment succeeded)",
    "payment failed",
    "processing",
    "cancel",
    "release",
    "release to a payee not ready",
    "refund",
    "refund pending then failed",
    "reverse",
    "dispute created",
    "funds withdrawn",
    "funds reinstated",
    "dispute won",
    "dispute lost",
    "inquiry",
    "surplus payment",
    "success after cancel",
    "external refund",
)


def _row(row: str, **cells: Expected) -> list[tuple[str, str, Expected]]:
    assert set(cells) <= set(COLUMNS), set(cells) - set(COLUMNS)
    return [(row, column, cells[column]) for column in COLUMNS if column in cells]


_PAID_OUT = ("released", "refunded", "settled")

TABLE: list[tuple[str, str, Expected]] = [
    *_row(
        "open",
        awaiting_funding=SecondEscrow(False),
        funded=SecondEscrow(False),
        partially_settled=SecondEscrow(False),
        released=SecondEscrow(True),
        refunded=SecondEscrow(True),
        settled=SecondEscrow(True),
        disputed=SecondEscrow(True),
        cancelled=SecondEscrow(True),
    ),
    *_row(
        "pay (payment succeeded)",
        awaiting_funding=becomes("funded", held="$100.00"),
        **dict.fromkeys(("funded", "partially_settled", *_PAID_OUT, "disputed"), NO_CHANGE),
        cancelled=becomes("funded", "refund $100.00 pending", held="$100.00", available="$0.00"),
    ),
    *_row(
        "payment failed",
        awaiting_funding=becomes("awaiting_funding", last_payment_error="card_declined"),
        **dict.fromkeys(
            ("funded", "partially_settled", *_PAID_OUT, "disputed", "cancelled"), NO_CHANGE
        ),
    ),
    *_row(
        "processing",
        awaiting_funding=becomes("awaiting_funding", payment_status="processing"),
        **dict.fromkeys(
            ("funded", "partially_settled", *_PAID_OUT, "disputed", "cancelled"), NO_CHANGE
        ),
    ),
    *_row(
        "cancel",
        awaiting_funding=becomes("cancelled", "cancel $100.00 succeeded"),
        **{
            column: invalid(column, "cancel")
            for column in ("funded", "partially_settled", *_PAID_OUT, "disputed", "cancelled")
        },
    ),
    *_row(
        "release",
        awaiting_funding=invalid("awaiting_funding", "release"),
        funded=becomes(
            "released", "release $100.00 succeeded", held="$0.00", released="$100.00", fees="$10.00"
        ),
        partially_settled=becomes(
            "released", "release $60.00 succeeded", held="$0.00", released="$100.00", fees="$10.00"
        ),
        **dict.fromkeys(_PAID_OUT, NOTHING_AVAILABLE),
        disputed=FROZEN,
        cancelled=invalid("cancelled", "release"),
    ),
    *_row(
        "release to a payee not ready",
        awaiting_funding=invalid("awaiting_funding", "release"),
        funded=becomes(
            "funded", "release $100.00 awaiting_payee", held="$100.00", available="$0.00"
        ),
        partially_settled=becomes(
            "partially_settled", "release $60.00 awaiting_payee", held="$60.00", available="$0.00"
        ),
        **dict.fromkeys(_PAID_OUT, NOTHING_AVAILABLE),
        disputed=FROZEN,
        cancelled=invalid("cancelled", "release"),
    ),
    *_row(
        "refund",
        awaiting_funding=invalid("awaiting_funding", "refund"),
        funded=becomes("refunded", "refund $100.00 succeeded", held="$0.00", refunded="$100.00"),
        partially_settled=becomes(
            "settled", "refund $60.00 succeeded", held="$0.00", refunded="$60.00"
        ),
        **dict.fromkeys(_PAID_OUT, NOTHING_AVAILABLE),
        disputed=FROZEN,
        cancelled=invalid("cancelled", "refund"),
    ),
    *_row(
        "refund pending then failed",
        awaiting_funding=invalid("awaiting_funding", "refund"),
        funded=becomes("funded", "refund $100.00 failed", held="$100.00", available="$100.00"),
        partially_settled=becomes(
            "partially_settled", "refund $60.00 failed", held="$60.00", available="$60.00"
        ),
        **dict.fromkeys(_PAID_OUT, NOTHING_AVAILABLE),
        disputed=FROZEN,
        cancelled=invalid("cancelled", "refund"),
    ),
    *_row(
        "reverse",
        partially_settled=becomes("funded", held="$100.00", released="$0.00", fees="$0.00"),
        released=becomes("funded", held="$100.00", released="$0.00", fees="$0.00"),
        settled=becomes("partially_settled", held="$40.00", released="$0.00", refunded="$60.00"),
        disputed=FROZEN,
    ),
    *_row(
        "dispute created",
        funded=becomes("disputed", held="$100.00"),
        partially_settled=becomes("disputed", held="$60.00"),
        **{column: becomes("disputed", held="$0.00") for column in _PAID_OUT},
        disputed=NO_CHANGE,
    ),
    *_row(
        "funds withdrawn",
        funded=becomes("disputed", held="$0.00", dispute_withdrawn="$100.00", shortfall="$0.00"),
        partially_settled=becomes(
            "disputed", held="$0.00", dispute_withdrawn="$100.00", shortfall="$40.00"
        ),
        **{
            column: becomes("disputed", dispute_withdrawn="$100.00", shortfall="$100.00")
            for column in _PAID_OUT
        },
        disputed=NO_CHANGE,
    ),
    *_row(
        "funds reinstated",
        disputed=becomes("disputed", held="$60.00", dispute_withdrawn="$0.00", shortfall="$0.00"),
    ),
    *_row(
        "dispute won",
        disputed=becomes(
            "partially_settled", held="$60.00", dispute_withdrawn="$0.00", shortfall="$0.00"
        ),
    ),
    *_row(
        "dispute lost",
        disputed=becomes("settled", held="$0.00", dispute_withdrawn="$100.00", shortfall="$40.00"),
    ),
    *_row(
        "inquiry",
        funded=becomes("disputed", held="$100.00"),
        partially_settled=becomes("disputed", held="$60.00"),
        **{column: becomes("disputed", held="$0.00") for column in (*_PAID_OUT, "disputed")},
    ),
    *_row(
        "surplus payment",
        awaiting_funding=becomes(
            "funded", "funding $100.00 succeeded", "refund $100.00 pending", available="$0.00"
        ),
        funded=becomes(
            "funded",
            "funding $100.00 succeeded",
            "refund $100.00 pending",
            held="$200.00",
            available="$100.00",
        ),
        partially_settled=becomes(
            "partially_settled",
            "funding $100.00 succeeded",
            "refund $100.00 pending",
            held="$160.00",
            available="$60.00",
        ),
        **{
            column: becomes(
                "partially_settled",
                "funding $100.00 succeeded",
                "refund $100.00 pending",
                held="$100.00",
                available="$0.00",
            )
            for column in _PAID_OUT
        },
        disputed=becomes(
            "disputed",
            "funding $100.00 succeeded",
            "refund $100.00 pending",
            held="$100.00",
            available="$0.00",
        ),
        cancelled=becomes(
            "funded",
            "funding $100.00 succeeded",
            "refund $100.00 pending",
            held="$100.00",
            available="$0.00",
        ),
    ),
    *_row(
        "success after cancel",
        awaiting_funding=becomes("funded", "cancel $100.00 failed", held="$100.00"),
        cancelled=becomes(
            "refunded",
            "refund $100.00 succeeded",
            funded="$100.00",
            held="$0.00",
            refunded="$100.00",
        ),
    ),
    *_row(
        "external refund",
        funded=becomes(
            "partially_settled",
            "external_refund $30.00 succeeded",
            held="$70.00",
            refunded="$30.00",
        ),
        partially_settled=becomes(
            "partially_settled",
            "external_refund $30.00 succeeded",
            held="$30.00",
            refunded="$30.00",
        ),
        released=becomes(
            "settled", "external_refund $30.00 succeeded", refunded="$30.00", shortfall="$30.00"
        ),
        settled=becomes(
            "settled", "external_refund $30.00 succeeded", refunded="$90.00", shortfall="$30.00"
        ),
    ),
]

# --- what each row does ---------------------------------------------------------------------------


def _last_release(book: Book) -> Operation:
    return book.of_kind(OperationKind.RELEASE, OperationStatus.SUCCEEDED)[-1]


def _refund_pending_then_failed(book: Book) -> None:
    op = book.start_refund()
    book.refund_update(op, "pending")
    book.refund_update(op, "failed", "expired_or_canceled_card")


def _success_after_cancel(book: Book) -> None:
    if book.escrow.cancelled:
        # The cancel completed first; the success books the money and refunds all of it.
        book.pay()
        (refund,) = book.of_kind(OperationKind.REFUND)
        book.refund_update(refund, "succeeded")
    else:
        # The cancel is in flight when the payment succeeds: the cancel fails.
        cancel = book.start_cancel()
        book.pay()
        book.complete_cancel(cancel)


ACTIONS: dict[str, Callable[[Book], object]] = {
    "pay (payment succeeded)": lambda book: book.pay(),
    "payment failed": lambda book: book.pay(
        status="requires_payment_method", last_error="card_declined"
    ),
    "processing": lambda book: book.pay(status="processing"),
    "cancel": lambda book: book.cancel(),
    "release": lambda book: book.release(),
    "release to a payee not ready": lambda book: book.start_release(payee=HUNTER_NOT_READY),
    "refund": lambda book: book.refund(),
    "refund pending then failed": _refund_pending_then_failed,
    "reverse": lambda book: book.reverse(_last_release(book)),
    "dispute created": lambda book: book.dispute("dp_1", "needs_response"),
    "funds withdrawn": lambda book: book.dispute("dp_1", "needs_response", withdrawn=10_000),
    "funds reinstated": lambda book: book.dispute(
        "dp_1", "under_review", withdrawn=10_000, reinstated=10_000
    ),
    "dispute won": lambda book: book.dispute("dp_1", "won", withdrawn=10_000, reinstated=10_000),
    "dispute lost": lambda book: book.dispute("dp_1", "lost", withdrawn=10_000),
    "inquiry": lambda book: book.dispute("dp_2", "warning_needs_response"),
    "surplus payment": lambda book: book.pay("pi_2"),
    "success after cancel": _success_after_cancel,
    "external refund": lambda book: book.external_refund(usd(3_000)),
}


def _second_escrow(book: Book) -> Escrow:
    """Open another escrow for the same bounty and poster, as the service would."""
    new = Escrow.new(
        id="esc_2",
        bounty_id=book.escrow.bounty_id,
        poster_id=book.escrow.poster_id,
        amount=book.escrow.amount,
        fee_schedule=book.escrow.fee_schedule,
        created_at=book.now(),
    )
    outcome = tr.start_funding(new, op_id="op_new", actor_id=new.poster_id, now=book.now())
    return outcome.escrow


# --- tests ----------------------------------------------------------------------------------------


class TestLifecycleTable:
    @pytest.mark.parametrize(
        ("row", "column", "expected"),
        TABLE,
        ids=[f"{row}|{column}" for row, column, _ in TABLE],
    )
    def test_cell(self, row: str, column: str, expected: Expected) -> None:
        book = STATES[column]()
        assert book.escrow.status.value == column
        before_ops = set(book.ops)
        state = book.state()

        if isinstance(expected, SecondEscrow):
            assert book.escrow.is_open is not expected.allowed
            if expected.allowed:
                assert _second_escrow(book).status is EscrowStatus.AWAITING_FUNDING
            return
        action = ACTIONS[row]
        if isinstance(expected, Raises):
            with pytest.raises(expected.error) as caught:
                action(book)
            for name, value in expected.details:
                assert _shown(getattr(caught.value, name)) == value, name
            assert book.state() == state, "a refused command must change nothing"
        elif isinstance(expected, NoChange):
            action(book)
            assert book.state() == state
        else:
            action(book)
            expected.check(before_ops, book)
        assert book.check() == []

    def test_every_row_and_column_is_known(self) -> None:
        assert {row for row, _, _ in TABLE} == set(ROWS)
        assert {column for _, column, _ in TABLE} == set(COLUMNS)
        assert set(ACTIONS) == set(ROWS) - {"open"}
        assert len({(row, column) for row, column, _ in TABLE}) == len(TABLE)

    def test_docs_show_the_same_table(self) -> None:
        """docs/concepts.md shows exactly `TABLE` (``—`` where a cell does not apply)."""
        documented = _documented_table(CONCEPTS.read_text(encoding="utf-8"))
        expected = {(row, column): "—" for row in ROWS for column in COLUMNS}
        expected.update({(row, column): str(cell) for row, column, cell in TABLE})
        assert documented == expected


def _documented_table(markdown: str) -> dict[tuple[str, str], str]:
    """The cells of the Markdown table that follows the ``lifecycle-table`` marker."""
    _, marker, rest = markdown.partition("<!-- lifecycle-table -->")
    assert marker, "docs/concepts.md lost its <!-- lifecycle-table --> marker"
    lines = []
    for line in rest.strip().splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    header, _separator, *body = (
        [cell.strip() for cell in line.strip("|").split("|")] for line in lines
    )
    columns = [re.sub(r"[`*]", "", cell) for cell in header[1:]]
    cells = {}
    for row_cells in body:
        row = re.sub(r"[`*]", "", row_cells[0])
        for column, cell in zip(columns, row_cells[1:], strict=True):
            cells[(row, column)] = cell
    return cells


def render_markdown() -> str:
    """The table as docs/concepts.md shows it (used to write the docs)."""
    grid = {(row, column): "—" for row in ROWS for column in COLUMNS}
    grid.update({(row, column): str(cell) for row, column, cell in TABLE})
    lines = [
        "| command / event | " + " | ".join(f"`{c}`" for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    lines += [
        f"| {row} | " + " | ".join(grid[(row, column)] for column in COLUMNS) + " |" for row in ROWS
    ]
    return "\n".join(lines)
