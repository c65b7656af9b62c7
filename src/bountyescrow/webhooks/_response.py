"""`WebhookResponse`: what a mount sends back to Stripe, and the failure classes it may name."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

_JSON_HEADERS = {"Content-Type": "application/json"}


class Failure(enum.StrEnum):
    """Why a request was not accepted: the only detail a non-200 body carries.

    A 400 names the class of the problem and nothing else: never the secret, the expected
    signature, the body or the event. Whoever sent a bad request learns only what to fix.
    """

    BODY_TOO_LARGE = "body_too_large"
    INVALID_CONTENT_LENGTH = "invalid_content_length"
    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"
    STALE_TIMESTAMP = "stale_timestamp"
    INVALID_BODY = "invalid_body"
    INVALID_JSON = "invalid_json"
    MALFORMED_EVENT = "malformed_event"
    WRONG_MODE = "wrong_mode"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_FOUND = "not_found"
    UNKNOWN_EVENT = "unknown_event"
    PAYLOAD_MISSING = "payload_missing"
    EVENT_NOT_READY = "event_not_ready"
    INTERNAL_ERROR = "internal_error"


@attrs.frozen
class WebhookResponse:
    """An HTTP answer, independent of any web framework.

    Attributes:
        status: the HTTP status code (200, 400, 404, 405, 409 or 500).
        body: a small JSON document: ``{"status": "processed", "event": "evt_..."}`` on
            200, ``{"error": "<failure class>"}`` otherwise.
        headers: response headers (``Content-Type: application/json``; ``Allow`` on a 405).
    """

    status: int
    body: bytes
    headers: dict[str, str] = attrs.field(factory=lambda: dict(_JSON_HEADERS))

    @property
    def ok(self) -> bool:
        """True for a 2xx answer: Stripe will not deliver the event again."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body decoded from JSON."""
        return json.loads(self.body)

    @classmethod
    def accepted(cls, status: str, event_id: str | None = None) -> WebhookResponse:
        """A 200 saying what became of the event (processed, ignored...)."""
        document: dict[str, str] = {"status": status}
        if event_id is not None:
            document["event"] = event_id
        return cls(200, _dump(document))

    @classmethod
    def refused(
        cls, status: int, failure: Failure, headers: dict[str, str] | None = None
    ) -> WebhookResponse:
        """A non-2xx answer naming only the failure class."""
        return cls(status, _dump({"error": failure.value}), {**_JSON_HEADERS, **(headers or {})})


def _dump(document: dict[str, str]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
