"""The alert for credentials the gateway refuses, raised where the service meets it.

A wrong, revoked or under-permitted API key stops every money movement, and retrying cannot
fix it: the alert goes out on the first refusal (at CRITICAL), not after the back-off has run
its course, from each place the service calls the gateway and handles the error itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bountyescrow._alerts import alert
from bountyescrow.errors import GatewayAuthenticationError

#: The kind of the alert.
CREDENTIALS_REFUSED = "gateway_credentials_refused"


def credentials_refused(exc: BaseException, action: str, **fields: Any) -> None:
    """Alert when `exc` is the gateway refusing our credentials while doing `action`."""
    if not isinstance(exc, GatewayAuthenticationError):
        return
    alert(
        CREDENTIALS_REFUSED,
        "the gateway refused the API key during %s: %s. Nothing moves until the key is "
        "fixed: check it (live or test, not revoked, a restricted key's permissions), then "
        "run recover()",
        action,
        exc,
        critical=True,
        action=action,
        gateway_code=exc.code,
        request_id=exc.request_id,
        **fields,
    )


@contextmanager
def watching_credentials(action: str, **fields: Any) -> Iterator[None]:
    """Alert (see `credentials_refused`) on a refused key raised inside the block; re-raise."""
    try:
        yield
    except GatewayAuthenticationError as exc:
        credentials_refused(exc, action, **fields)
        raise
