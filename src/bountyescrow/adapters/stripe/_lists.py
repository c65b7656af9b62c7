"""The list calls of `StripeGateway` that reconciliation reads: PaymentIntents, transfers (with
every reversal), refunds and disputes in a window, and the platform balance.

Every list goes through the SDK's auto-pagination (``list(...).auto_paging_iter()``): a page
is requested only when the one before it has been consumed, so memory stays flat however many
objects a window holds. The requests are paced (`Pacer`, at most
`LIST_REQUESTS_PER_SECOND` by default) so that a reconciliation of a large window leaves most
of Stripe's rate limit to the platform's payments; a request Stripe still answers 429 is
retried by the SDK itself (``max_network_retries``), and an error that remains is raised as
the `GatewayError` every other call raises (`translated`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import stripe

from bountyescrow.adapters.stripe._errors import translated
from bountyescrow.adapters.stripe._parse import (
    Json,
    parse_dispute,
    parse_payment,
    parse_refund,
    parse_transfer,
    reversals_incomplete,
)
from bountyescrow.domain.gateway_objects import (
    META_ESCROW,
    DisputeSnapshot,
    PaymentSnapshot,
    RefundSnapshot,
    TransferSnapshot,
)
from bountyescrow.domain.money import KNOWN_CURRENCIES, Money
from bountyescrow.errors import GatewayUnavailableError
from bountyescrow.ports.gateway import window_bounds

if TYPE_CHECKING:
    from stripe.params import (
        DisputeListParams,
        PaymentIntentListParams,
        RefundListParams,
        TransferListParams,
        TransferReversalListParams,
    )

#: Objects per page (Stripe's maximum).
PAGE_SIZE: Final = 100
#: The most list requests a gateway makes per second. Stripe allows 100 read requests per
#: second in live mode and 25 in test mode, shared with everything else the platform does.
LIST_REQUESTS_PER_SECOND: Final = 10.0

_T = TypeVar("_T")


class Pacer:
    """Spaces requests so that at most `rate` start per second, across threads."""

    def __init__(self, rate: float = LIST_REQUESTS_PER_SECOND) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        """Return when the next request may start (at once, if the last was long enough ago)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _created(since: datetime | None, until: datetime | None) -> Any:
    """The ``created`` filter of a window ``[since, until)`` (validated: see `window_bounds`);
    the same shape for every list's params (typed per list by the SDK)."""
    start, end = window_bounds(since, until)
    created: dict[str, int] = {}
    if start is not None:
        created["gte"] = start
    if end is not None:
        created["lt"] = end
    return created


def _json(action: str, obj: object) -> Json:
    """The JSON of one listed object (what the API sent, as the SDK keeps it)."""
    if not isinstance(obj, stripe.StripeObject):
        raise GatewayUnavailableError(f"Stripe answered {action} with a list of non-objects")
    return obj.to_dict()


def _parsed(action: str, data: Json, parse: Callable[[Json], _T]) -> _T:
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise GatewayUnavailableError(
            f"Stripe answered {action} with an object bountyescrow cannot read "
            f"({data.get('id')!r}: {exc!r})"
        ) from exc


class ListCalls:
    """The list methods of the `PaymentGateway` port, mixed into `StripeGateway`.

    `StripeGateway` provides the client and the pacer.
    """

    _client: stripe.StripeClient
    _list_pacer: Pacer

    def _paged(self, action: str, first: Callable[[], stripe.ListObject[Any]]) -> Iterator[Json]:
        """Yield the JSON of every object of a list, page after page as they are consumed."""
        self._list_pacer.wait()
        with translated(action):
            page = first()
        # Stripe fills every page but the last: past each page's worth of items, the next
        # item may need a request, which waits its turn.
        size = len(page.data) if page.has_more else 0
        items = page.auto_paging_iter()
        count = 0
        while True:
            if size and count and count % size == 0:
                self._list_pacer.wait()
            with translated(action):
                item = next(items, None)
            if item is None:
                return
            count += 1
            yield _json(action, item)

    def iter_payments(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[PaymentSnapshot]:
        """Yield the PaymentIntents created in ``[since, until)`` that carry bountyescrow
        metadata, newest first (``GET /v1/payment_intents?created[gte]=...``; Stripe cannot
        filter on metadata, so the others are read and skipped).

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: see `PaymentGateway`.
        """
        action = "iter_payments"
        params: PaymentIntentListParams = {"limit": PAGE_SIZE}
        created = _created(since, until)
        if created:
            params["created"] = created

        def listed() -> Iterator[PaymentSnapshot]:
            for data in self._paged(
                action, lambda: self._client.v1.payment_intents.list(params=params)
            ):
                metadata = data.get("metadata")
                if isinstance(metadata, Mapping) and META_ESCROW in metadata:
                    yield _parsed(action, data, parse_payment)

        return listed()

    def iter_transfers(
        self,
        *,
        transfer_group: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[TransferSnapshot]:
        """Yield the transfers created in ``[since, until)`` (of `transfer_group` when given),
        newest first, each with every reversal (``GET /v1/transfers``; a transfer whose
        embedded reversals are not all of them has the rest listed,
        ``GET /v1/transfers/{id}/reversals``).

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: see `PaymentGateway`.
        """
        action = "iter_transfers"
        params: TransferListParams = {"limit": PAGE_SIZE}
        created = _created(since, until)
        if created:
            params["created"] = created
        if transfer_group is not None:
            params["transfer_group"] = transfer_group

        def listed() -> Iterator[TransferSnapshot]:
            for data in self._paged(action, lambda: self._client.v1.transfers.list(params=params)):
                if not reversals_incomplete(data):
                    yield _parsed(action, data, parse_transfer)
                    continue
                ref = data.get("id")
                if not isinstance(ref, str):
                    raise GatewayUnavailableError(f"Stripe answered {action} without an id")
                reversals = list(self._reversals(action, ref))
                yield _parsed(action, data, functools.partial(parse_transfer, reversals=reversals))

        return listed()

    def _reversals(self, action: str, transfer_ref: str) -> Iterator[Json]:
        params: TransferReversalListParams = {"limit": PAGE_SIZE}
        return self._paged(
            action, lambda: self._client.v1.transfers.reversals.list(transfer_ref, params=params)
        )

    def iter_refunds(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[RefundSnapshot]:
        """Yield the refunds created in ``[since, until)`` (of `payment_ref` when given),
        newest first, whatever their status (``GET /v1/refunds``).

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: see `PaymentGateway`.
        """
        action = "iter_refunds"
        params: RefundListParams = {"limit": PAGE_SIZE}
        created = _created(since, until)
        if created:
            params["created"] = created
        if payment_ref is not None:
            params["payment_intent"] = payment_ref
        pages = self._paged(action, lambda: self._client.v1.refunds.list(params=params))
        return (_parsed(action, data, parse_refund) for data in pages)

    def iter_disputes(
        self,
        *,
        payment_ref: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[DisputeSnapshot]:
        """Yield the disputes created in ``[since, until)`` (of `payment_ref` when given),
        newest first, with their withdrawn and reinstated totals (``GET /v1/disputes``; a
        dispute carries its balance transactions).

        Raises:
            ValueError: a naive datetime, or `until` before `since`.
            GatewayError: see `PaymentGateway`.
        """
        action = "iter_disputes"
        params: DisputeListParams = {"limit": PAGE_SIZE}
        created = _created(since, until)
        if created:
            params["created"] = created
        if payment_ref is not None:
            params["payment_intent"] = payment_ref
        pages = self._paged(action, lambda: self._client.v1.disputes.list(params=params))
        return (_parsed(action, data, parse_dispute) for data in pages)

    def get_balance(self) -> dict[str, Money]:
        """The platform balance per currency: available plus pending (``GET /v1/balance``).

        Raises:
            GatewayError: see `PaymentGateway`.
        """
        action = "get_balance"
        self._list_pacer.wait()
        with translated(action):
            balance = self._client.v1.balance.retrieve()
        return _parsed(action, _json(action, balance), parse_balance)


def parse_balance(data: Json) -> dict[str, Money]:
    """Sum a Balance's ``available`` and ``pending`` amounts per currency (lower case)."""
    totals: dict[str, int] = {}
    for part in ("available", "pending"):
        entries = data.get(part)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise TypeError(f"balance {part} must be a list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise TypeError(f"balance {part} entries must be objects")
            currency, amount = entry.get("currency"), entry.get("amount")
            if not isinstance(currency, str) or not currency:
                raise TypeError(f"balance {part} entry without a currency")
            if currency.lower() not in KNOWN_CURRENCIES:
                continue  # no escrow can be in it
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise TypeError(f"balance {part} amount must be an integer, got {amount!r}")
            totals[currency.lower()] = totals.get(currency.lower(), 0) + amount
    return {currency: Money(amount, currency) for currency, amount in sorted(totals.items())}
