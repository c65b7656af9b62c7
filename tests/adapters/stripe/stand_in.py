"""A small in-memory stand-in for the Stripe endpoints `StripeGateway` uses, served through respx.

It answers the SDK's real HTTP traffic (httpx, intercepted by respx) with Stripe-shaped JSON
from `builders`, keeps the objects in memory, and honours idempotency keys the way Stripe
does (https://docs.stripe.com/api/idempotent_requests):

- the first answer to a POST is stored under its ``Idempotency-Key``, 500s included;
- the same key with the same endpoint and parameters replays that answer, with the header
  ``Idempotent-Replayed: true``, and changes nothing;
- the same key with other parameters (or another endpoint) is refused with a 400
  ``idempotency_error``;
- rate-limited requests are not stored (Stripe never started executing them).

Faults are injected with `fail_next` (server errors before or after the effect, timeouts
before or after the effect, rate limits, a 409 for a key another request still uses, a
platform balance that does not cover the request). Test helpers (`succeed`, `activate`,
`open_dispute`, `set_payee_balance`) play the parts of the payer, Stripe and the payee.
"""

from __future__ import annotations

import copy
import itertools
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
import respx

from . import builders

Fault = Literal[
    "server_error",
    "server_error_after_effect",
    "timeout",
    "timeout_after_effect",
    "rate_limit",
    "key_in_use",
    "balance_insufficient",
]
Answer = tuple[int, dict[str, Any]]
_EMBEDDED_REVERSALS = 10
_CANCELABLE = frozenset(
    {"requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"}
)


class StripeFailureError(Exception):
    """Raised inside a handler to answer with a Stripe error (status, error body)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


@dataclass(frozen=True)
class _Stored:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    status: int
    body: dict[str, Any]


class StripeStandIn:
    """Stripe's payment intents, transfers, reversals, refunds, disputes and accounts, in memory.

        Create it with a respx router (``respx.mock(base_url="https://api.stripe.com")``); it mounts
        one catch-all route on it. `requests` and `responses` list every exchange, replays included
    (a timeout leaves a request without a response).
    """

    def __init__(
        self, router: respx.MockRouter, *, livemode: bool = False, platform_country: str = "US"
    ) -> None:
        self.livemode = livemode
        self.platform_country = platform_country
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.payee_balances: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []
        self.next_refund_status = "succeeded"
        self._keys: dict[str, _Stored] = {}
        self._faults: list[Fault] = []
        self._request_ids = itertools.count(1)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Answer]]] = [
            ("POST", re.compile(r"/v1/payment_intents"), self._create_payment_intent),
            ("GET", re.compile(r"/v1/payment_intents"), self._list_payment_intents),
            ("GET", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)"), self._get_payment_intent),
            (
                "POST",
                re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/cancel"),
                self._cancel_payment_intent,
            ),
            (
                "POST",
                re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/confirm"),
                self._confirm_payment_intent,
            ),
            ("POST", re.compile(r"/v1/transfers"), self._create_transfer),
            ("GET", re.compile(r"/v1/transfers"), self._list_transfers),
            ("POST", re.compile(r"/v1/transfers/(?P<id>[^/]+)/reversals"), self._create_reversal),
            ("GET", re.compile(r"/v1/transfers/(?P<id>[^/]+)/reversals"), self._list_reversals),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds"), self._list_refunds),
            ("GET", re.compile(r"/v1/refunds/(?P<id>[^/]+)"), self._get_refund),
            ("GET", re.compile(r"/v1/disputes/(?P<id>[^/]+)"), self._get_dispute),
            ("GET", re.compile(r"/v1/disputes"), self._list_disputes),
            ("GET", re.compile(r"/v1/balance"), self._get_balance),
            ("GET", re.compile(r"/v1/account"), self._get_platform_account),
            ("POST", re.compile(r"/v1/accounts"), self._create_account),
            ("GET", re.compile(r"/v1/accounts/(?P<id>[^/]+)"), self._get_account),
            ("POST", re.compile(r"/v1/account_links"), self._create_account_link),
            ("POST", re.compile(r"/v2/core/accounts"), self._create_account_v2),
            ("GET", re.compile(r"/v2/core/accounts/(?P<id>[^/]+)"), self._get_account_v2),
            ("POST", re.compile(r"/v2/core/account_links"), self._create_account_link_v2),
        ]
        router.route(host="api.stripe.com").mock(side_effect=self._handle)

    # --- test helpers: the payer, the payee and Stripe itself ------------------------------

    def fail_next(self, fault: Fault) -> None:
        """Make the next POST fail this way (faults queue up in order)."""
        self._faults.append(fault)

    def succeed(self, payment_ref: str) -> str:
        """The payer's payment succeeds: the intent gets a charge. Returns the charge id."""
        intent = self.payment_intents[payment_ref]
        ch = builders.charge(
            amount=intent["amount"],
            currency=intent["currency"],
            payment_intent=payment_ref,
            transfer_group=intent["transfer_group"],
            livemode=self.livemode,
        )
        self.charges[ch["id"]] = ch
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=ch["id"])
        return str(ch["id"])

    def activate(self, account_ref: str) -> None:
        """The payee finishes onboarding: the transfers capability becomes active."""
        acct = self.accounts[account_ref]
        acct["capabilities"]["transfers"] = "active"
        acct.update(details_submitted=True, payouts_enabled=True)
        acct["requirements"].update(currently_due=[], disabled_reason=None)

    def set_payee_balance(self, account_ref: str, amount: int) -> None:
        """Limit what a connected account can give back by reversal (it paid the rest out)."""
        self.payee_balances[account_ref] = amount

    def open_dispute(self, payment_ref: str, *, fee: int = 1_500) -> str:
        """The payer disputes the charge; Stripe withdraws the amount (and a fee)."""
        intent = self.payment_intents[payment_ref]
        dp = builders.dispute(
            amount=intent["amount"],
            currency=intent["currency"],
            charge=intent["latest_charge"],
            payment_intent=payment_ref,
            livemode=self.livemode,
        )
        dp["balance_transactions"].append(
            builders.balance_transaction(
                amount=-intent["amount"], currency=intent["currency"], fee=fee, source=dp["id"]
            )
        )
        self.disputes[dp["id"]] = dp
        return str(dp["id"])

    def close_dispute(self, dispute_ref: str, *, won: bool) -> None:
        """Close a dispute; a won dispute gives the disputed amount back."""
        dp = self.disputes[dispute_ref]
        dp["status"] = "won" if won else "lost"
        if won:
            dp["balance_transactions"].append(
                builders.balance_transaction(
                    amount=dp["amount"],
                    currency=dp["currency"],
                    reporting_category="dispute_reversal",
                    source=dispute_ref,
                )
            )

    def transfers_in_group(self, transfer_group: str) -> list[dict[str, Any]]:
        """Every transfer made in a transfer group."""
        return [t for t in self.transfers.values() if t["transfer_group"] == transfer_group]

    # --- HTTP -------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        method, path = request.method, request.url.path
        if method == "POST" and path.startswith("/v2/"):
            # The v2 API takes JSON bodies, not forms.
            params = json.loads(request.content.decode() or "{}")
            pairs = [("json", json.dumps(params, sort_keys=True))]
        else:
            if method == "POST":
                pairs = parse_qsl(request.content.decode(), keep_blank_values=True)
            else:
                pairs = list(request.url.params.multi_items())
            params = _unflatten(pairs)
        key = request.headers.get("Idempotency-Key") if method == "POST" else None
        fingerprint = tuple(sorted(pairs))

        if key is not None and key in self._keys:
            stored = self._keys[key]
            if (stored.method, stored.path, stored.params) != (method, path, fingerprint):
                return self._respond(
                    400,
                    builders.error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    ),
                    key,
                )
            return self._respond(stored.status, stored.body, key, replayed=True)

        fault = self._faults.pop(0) if method == "POST" and self._faults else None
        if fault == "rate_limit":
            return self._respond(
                429,
                builders.error(
                    "invalid_request_error",
                    "Request rate limit exceeded. Learn more about rate limits here "
                    "https://docs.stripe.com/rate-limits.",
                    code="rate_limit",
                ),
                key,
            )
        if fault == "timeout":
            raise httpx.ReadTimeout("stand-in: no answer", request=request)
        if fault == "key_in_use":
            # Not stored: the request with the key that is still running will store its own.
            return self._respond(
                409,
                builders.error(
                    "idempotency_error",
                    "There is currently another in-progress request using this idempotent key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                ),
                key,
            )
        if fault == "server_error":
            status, body = 500, _server_error()
        elif fault == "balance_insufficient":
            status, body = (
                400,
                builders.error(
                    "invalid_request_error",
                    "You have insufficient available funds in your Stripe account. Try adding "
                    "funds directly to your available balance by creating Charges using the "
                    "4000000000000077 test card.",
                    code="balance_insufficient",
                ),
            )
        else:
            status, body = self._dispatch(method, path, params)
            if fault == "server_error_after_effect":
                status, body = 500, _server_error()
        if key is not None:
            self._keys[key] = _Stored(method, path, fingerprint, status, body)
        if fault == "timeout_after_effect":
            raise httpx.ReadTimeout("stand-in: the answer was lost", request=request)
        return self._respond(status, body, key)

    def _dispatch(self, method: str, path: str, params: dict[str, Any]) -> Answer:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if route_method == method and match:
                try:
                    return handler(params, **match.groupdict())
                except StripeFailureError as failure:
                    return failure.status, failure.body
        return 404, builders.error(
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}).",
        )

    def _respond(
        self, status: int, body: dict[str, Any], key: str | None, *, replayed: bool = False
    ) -> httpx.Response:
        headers = {"Request-Id": f"req_standin{next(self._request_ids):06d}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        response = httpx.Response(status, content=json.dumps(body).encode(), headers=headers)
        self.responses.append(response)
        return response

    # --- endpoints ----------------------------------------------------------------------------

    def _create_payment_intent(self, params: dict[str, Any]) -> Answer:
        types = params.get("allowed_payment_method_types") or params.get("payment_method_types")
        intent = builders.payment_intent(
            amount=int(params["amount"]),
            currency=params["currency"],
            transfer_group=params.get("transfer_group"),
            metadata=params.get("metadata"),
            payment_method_types=types or ["card"],
            description=params.get("description"),
            receipt_email=params.get("receipt_email"),
            livemode=self.livemode,
        )
        self.payment_intents[intent["id"]] = intent
        return 200, copy.deepcopy(intent)

    def _list_payment_intents(self, params: dict[str, Any]) -> Answer:
        items = list(self.payment_intents.values())
        return 200, _page(items, params, url="/v1/payment_intents")

    def _get_payment_intent(self, params: dict[str, Any], id: str) -> Answer:
        return 200, copy.deepcopy(self._find(self.payment_intents, id, "payment_intent"))

    def _cancel_payment_intent(self, params: dict[str, Any], id: str) -> Answer:
        intent = self._find(self.payment_intents, id, "payment_intent")
        if intent["status"] not in _CANCELABLE:
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    "You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}. Only a PaymentIntent with one of the following "
                    "statuses may be canceled: requires_payment_method, requires_capture, "
                    "requires_confirmation, requires_action, processing.",
                    code="payment_intent_unexpected_state",
                    payment_intent=copy.deepcopy(intent),
                ),
            )
        intent.update(status="canceled", canceled_at=builders.CREATED)
        return 200, copy.deepcopy(intent)

    def _confirm_payment_intent(self, params: dict[str, Any], id: str) -> Answer:
        # What the payer's browser does with the client secret; every card succeeds here.
        intent = self._find(self.payment_intents, id, "payment_intent")
        if intent["status"] not in _CANCELABLE - {"requires_capture"}:
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    "This PaymentIntent's status does not allow it to be confirmed.",
                    code="payment_intent_unexpected_state",
                    payment_intent=copy.deepcopy(intent),
                ),
            )
        self.succeed(id)
        return 200, copy.deepcopy(intent)

    def _create_transfer(self, params: dict[str, Any]) -> Answer:
        destination = params["destination"]
        acct = self.accounts.get(destination)
        if acct is None or acct["capabilities"].get("transfers") != "active":
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    "Your destination account needs to have at least one of the following "
                    "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                    code="insufficient_capabilities_for_transfer",
                    param="destination",
                ),
            )
        source = params.get("source_transaction")
        if source is not None:
            self._find(self.charges, source, "charge", param="source_transaction")
        tr = builders.transfer(
            amount=int(params["amount"]),
            currency=params["currency"],
            destination=destination,
            source_transaction=source,
            transfer_group=params.get("transfer_group"),
            metadata=params.get("metadata"),
            livemode=self.livemode,
        )
        self.transfers[tr["id"]] = tr
        return 200, _render_transfer(tr)

    def _list_transfers(self, params: dict[str, Any]) -> Answer:
        group = params.get("transfer_group")
        items = [
            t for t in self.transfers.values() if group is None or t["transfer_group"] == group
        ]
        return 200, _page([_render_transfer(t) for t in items], params, url="/v1/transfers")

    def _create_reversal(self, params: dict[str, Any], id: str) -> Answer:
        tr = self._find(self.transfers, id, "transfer")
        amount = int(params.get("amount", tr["amount"] - tr["amount_reversed"]))
        if amount > tr["amount"] - tr["amount_reversed"]:
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    "Transfer reversal amount exceeds the amount left on the transfer.",
                    param="amount",
                ),
            )
        balance = self.payee_balances.get(tr["destination"])
        if balance is not None and balance < amount:
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    "Insufficient funds in the destination account to reverse this transfer.",
                    code="balance_insufficient",
                ),
            )
        if balance is not None:
            self.payee_balances[tr["destination"]] = balance - amount
        rev = builders.transfer_reversal(
            amount=amount, currency=tr["currency"], transfer=id, metadata=params.get("metadata")
        )
        tr["reversals"]["data"].insert(0, rev)
        tr["amount_reversed"] += amount
        tr["reversed"] = tr["amount_reversed"] == tr["amount"]
        return 200, copy.deepcopy(rev)

    def _list_reversals(self, params: dict[str, Any], id: str) -> Answer:
        tr = self._find(self.transfers, id, "transfer")
        # The transfer keeps its reversals newest first; _page wants them in creation order.
        items = list(reversed(tr["reversals"]["data"]))
        return 200, _page(items, params, url=f"/v1/transfers/{id}/reversals")

    def _create_refund(self, params: dict[str, Any]) -> Answer:
        intent = self._find(
            self.payment_intents, params["payment_intent"], "payment_intent", param="payment_intent"
        )
        if intent["status"] != "succeeded":
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    f"This PaymentIntent ({intent['id']}) does not have a successful charge to "
                    "refund.",
                    code="charge_not_refundable",
                ),
            )
        ch = self.charges[intent["latest_charge"]]
        left = ch["amount"] - ch["amount_refunded"]
        amount = int(params.get("amount", left))
        if amount > left:
            raise StripeFailureError(
                400,
                builders.error(
                    "invalid_request_error",
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({left})",
                    param="amount",
                ),
            )
        ch["amount_refunded"] += amount
        re_ = builders.refund(
            amount=amount,
            currency=intent["currency"],
            payment_intent=intent["id"],
            charge=ch["id"],
            status=self.next_refund_status,
            reason=params.get("reason"),
            metadata=params.get("metadata"),
        )
        self.refunds[re_["id"]] = re_
        return 200, copy.deepcopy(re_)

    def _list_refunds(self, params: dict[str, Any]) -> Answer:
        pi = params.get("payment_intent")
        items = [r for r in self.refunds.values() if pi is None or r["payment_intent"] == pi]
        return 200, _page(items, params, url="/v1/refunds")

    def _get_refund(self, params: dict[str, Any], id: str) -> Answer:
        return 200, copy.deepcopy(self._find(self.refunds, id, "refund"))

    def _get_dispute(self, params: dict[str, Any], id: str) -> Answer:
        return 200, copy.deepcopy(self._find(self.disputes, id, "dispute"))

    def _list_disputes(self, params: dict[str, Any]) -> Answer:
        pi = params.get("payment_intent")
        items = [d for d in self.disputes.values() if pi is None or d["payment_intent"] == pi]
        return 200, _page(items, params, url="/v1/disputes")

    def _get_balance(self, params: dict[str, Any]) -> Answer:
        """The platform balance: charges in; refunds, transfers and dispute withdrawals (with
        their fees) out; reversals and reinstatements back. All of it available."""
        totals: dict[str, int] = {}

        def add(currency: str, amount: int) -> None:
            totals[currency] = totals.get(currency, 0) + amount

        for ch in self.charges.values():
            add(ch["currency"], ch["amount"] - ch["amount_refunded"])
        for tr in self.transfers.values():
            add(tr["currency"], tr["amount_reversed"] - tr["amount"])
        for dp in self.disputes.values():
            for txn in dp["balance_transactions"]:
                add(txn["currency"], txn["amount"] - txn["fee"])
        available = [
            {"amount": a, "currency": c, "source_types": {"card": a}}
            for c, a in sorted(totals.items())
        ]
        pending = [
            {"amount": 0, "currency": c, "source_types": {"card": 0}} for c in sorted(totals)
        ]
        return 200, {
            "object": "balance",
            "available": available,
            "connect_reserved": [],
            "livemode": self.livemode,
            "pending": pending,
        }

    def _get_platform_account(self, params: dict[str, Any]) -> Answer:
        return 200, builders.platform_account(country=self.platform_country)

    def _create_account(self, params: dict[str, Any]) -> Answer:
        tos = params.get("tos_acceptance") or {}
        acct = builders.account(
            transfers="inactive",
            country=params["country"],
            email=params.get("email"),
            metadata=params.get("metadata"),
            service_agreement=tos.get("service_agreement", "full"),
        )
        self.accounts[acct["id"]] = acct
        return 200, copy.deepcopy(acct)

    def _get_account(self, params: dict[str, Any], id: str) -> Answer:
        return 200, copy.deepcopy(self._find(self.accounts, id, "account"))

    def _create_account_link(self, params: dict[str, Any]) -> Answer:
        self._find(self.accounts, params["account"], "account", param="account")
        return 200, builders.account_link(account=params["account"])

    # Accounts v2: the same accounts (a v2 account takes v1 transfers), created with a JSON
    # body and shown in their v2 shape; `activate` makes them ready either way.
    def _create_account_v2(self, params: dict[str, Any]) -> Answer:
        recipient = params["configuration"]["recipient"]["capabilities"]
        assert recipient == {"stripe_balance": {"stripe_transfers": {"requested": True}}}
        acct = builders.account(
            transfers="inactive",
            country=params["identity"]["country"],
            email=params.get("contact_email"),
            metadata=params.get("metadata"),
            service_agreement="recipient",
        )
        self.accounts[acct["id"]] = acct
        return self._get_account_v2({"include": params.get("include")}, acct["id"])

    def _get_account_v2(self, params: dict[str, Any], id: str) -> Answer:
        acct = self._find(self.accounts, id, "account")
        transfers = acct["capabilities"].get("transfers")
        shown = builders.account_v2(
            id=id,
            stripe_transfers="active" if transfers == "active" else "restricted",
            country=acct["country"],
            email=acct["email"],
            metadata=acct["metadata"],
            livemode=self.livemode,
        )
        include = params.get("include") or []
        if "configuration.recipient" not in (include if isinstance(include, list) else [include]):
            shown["configuration"] = None
        return 200, shown

    def _create_account_link_v2(self, params: dict[str, Any]) -> Answer:
        self._find(self.accounts, params["account"], "account", param="account")
        onboarding = params["use_case"]["account_onboarding"]
        return 200, builders.account_link_v2(
            account=params["account"],
            return_url=onboarding["return_url"],
            refresh_url=onboarding["refresh_url"],
        )

    @staticmethod
    def _find(
        table: dict[str, dict[str, Any]], id: str, kind: str, *, param: str = "id"
    ) -> dict[str, Any]:
        if id not in table:
            raise StripeFailureError(
                404 if param == "id" else 400,
                builders.error(
                    "invalid_request_error",
                    f"No such {kind}: '{id}'",
                    code="resource_missing",
                    param=param,
                ),
            )
        return table[id]


def _render_transfer(tr: dict[str, Any]) -> dict[str, Any]:
    """A transfer as Stripe renders it: only the first ten reversals are embedded."""
    out = copy.deepcopy(tr)
    reversals = out["reversals"]
    reversals["has_more"] = len(reversals["data"]) > _EMBEDDED_REVERSALS
    reversals["data"] = reversals["data"][:_EMBEDDED_REVERSALS]
    return out


def _server_error() -> dict[str, Any]:
    return builders.error("api_error", "An unknown error occurred")


def _page(items: list[dict[str, Any]], params: dict[str, Any], *, url: str) -> dict[str, Any]:
    """One page of a list endpoint: newest first, `limit`, `starting_after` and the
    ``created`` filter (``gt``, ``gte``, ``lt``, ``lte``) honoured."""
    created = params.get("created")
    if isinstance(created, dict):
        tests = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
        items = [
            item
            for item in items
            if all(tests[op](item["created"], int(value)) for op, value in created.items())
        ]
    newest_first = list(reversed(items))
    after = params.get("starting_after")
    if after is not None:
        ids = [item["id"] for item in newest_first]
        newest_first = newest_first[ids.index(after) + 1 :]
    limit = int(params.get("limit", 10))
    page = newest_first[:limit]
    return builders.listing(
        [copy.deepcopy(item) for item in page], url=url, has_more=len(newest_first) > limit
    )


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn Stripe's form encoding (``metadata[k]=v``, ``types[0]=card``) back into JSON."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = result
        for part, following in itertools.pairwise(parts):
            default: Any = [] if following.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(copy.deepcopy(default))
                node = node[index]
            else:
                node = node.setdefault(part, default)
        last = parts[-1]
        if isinstance(node, list):
            node.append(value)
        else:
            node[last] = value
    return result
