"""Reading the ``Stripe-Signature`` header and verifying it with the Stripe SDK."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import stripe

from bountyescrow.errors import SignatureVerificationError
from bountyescrow.webhooks._response import Failure

SIGNATURE_HEADER = "stripe-signature"


@runtime_checkable
class HeaderItems(Protocol):
    """Anything with ``items()`` giving (name, value) pairs: a dict, Starlette's, Werkzeug's
    or Django's headers."""

    def items(self) -> Iterable[tuple[Any, Any]]:
        """The (name, value) pairs."""
        ...


#: What `WebhookDispatcher.handle` accepts as headers: a mapping (or any object with
#: ``items()``), or (name, value) pairs of str or bytes as ASGI and WSGI servers give them.
Headers = HeaderItems | Iterable[tuple[str | bytes, str | bytes]]


class SignatureCheckError(SignatureVerificationError):
    """The request is not a verified Stripe request; `failure` says which way."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"webhook signature verification failed: {failure.value}")
        self.failure = failure


def _text(value: object) -> str:
    # Header bytes are ISO-8859-1 on the wire (RFC 9110); a Stripe signature is plain ASCII.
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def find_header(headers: Headers, name: str) -> str | None:
    """The value of header `name` (case-insensitive), None when absent.

    Raises:
        SignatureCheckError: the header is sent more than once (``malformed_signature``): which of
            two signatures to trust is not a question worth answering.
    """
    if isinstance(headers, str | bytes):
        raise TypeError("headers must be a mapping or (name, value) pairs, not a string")
    pairs: Iterable[tuple[Any, Any]] = (
        headers.items() if isinstance(headers, HeaderItems) else headers
    )
    found: list[str] = []
    for key, value in pairs:
        if _text(key).strip().lower() == name:
            found.append(_text(value).strip())
    if len(found) > 1:
        raise SignatureCheckError(Failure.MALFORMED_SIGNATURE)
    return found[0] if found else None


def _well_formed(header: str) -> bool:
    """Whether the header has a ``t=<integer>`` and at least one ``v1=`` part.

    Only to name the failure class; the SDK does the verification itself.
    """
    timestamp: str | None = None
    signatures = 0
    for part in header.split(","):
        # Split exactly as the SDK does (no trimming), so both agree on what is well formed.
        key, _, value = part.partition("=")
        if key == "t":
            timestamp = value
        elif key == stripe.WebhookSignature.EXPECTED_SCHEME and value:
            signatures += 1
    return timestamp is not None and timestamp.strip().isdigit() and signatures > 0


def verify(payload: str, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Verify `header` over `payload` (the raw body, decoded) with any of `secrets`.

    Each secret is tried with the SDK without a time limit first, so a correct signature that
    is too old is reported as ``stale_timestamp`` and not as a mismatch; then the matching
    secret is checked again with `tolerance`.

    Raises:
        SignatureCheckError: missing, malformed, mismatched (tampered body or unknown secret) or
            stale signature.
    """
    if not header:
        raise SignatureCheckError(Failure.MISSING_SIGNATURE)
    if not _well_formed(header):
        raise SignatureCheckError(Failure.MALFORMED_SIGNATURE)
    for secret in secrets:
        # Trying the secrets one after the other tells a timing observer at most how many
        # secrets are configured, never anything about their contents: the SDK compares
        # each signature in constant time.
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            raise SignatureCheckError(Failure.STALE_TIMESTAMP) from None
        return
    raise SignatureCheckError(Failure.SIGNATURE_MISMATCH)
