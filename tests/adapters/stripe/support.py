"""Helpers shared by the Stripe adapter tests: constants and HTTP request/answer helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import httpx

API = "https://api.stripe.com"
TEST_KEY = "sk_test_51Qbountyescrow0000000000000000"
LIVE_KEY = "sk_live_51Qbountyescrow0000000000000000"


def form(request: httpx.Request) -> dict[str, str]:
    """The urlencoded body of a POST as a flat dict; fails on a repeated parameter."""
    pairs = parse_qsl(request.content.decode(), keep_blank_values=True)
    params = dict(pairs)
    assert len(params) == len(pairs), f"repeated parameters in {pairs}"
    return params


def query(request: httpx.Request) -> dict[str, str]:
    """The query string of a GET as a flat dict."""
    return dict(request.url.params.multi_items())


def answer(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """A Stripe-like HTTP answer: the JSON body plus a Request-Id header."""
    return httpx.Response(
        status, json=dict(body), headers={"Request-Id": "req_test0001", **(headers or {})}
    )
