"""Stripe webhooks: verify the signature, apply the event, answer with the right status.

`WebhookDispatcher.handle(body, headers)` is the plain function every mount calls;
`asgi_app` and `wsgi_app` mount it in any ASGI or WSGI framework or server. Signatures are
verified with the Stripe SDK, so this package needs the ``stripe`` extra:
``pip install 'bountyescrow[stripe]'``. See ``docs/webhooks.md`` for the status table and the
events followed.
"""

from __future__ import annotations

_INSTALL_HINT = "pip install 'bountyescrow[stripe]'"

try:
    import stripe  # noqa: F401  (verifies signatures; fail here with the install line)
except ImportError as exc:
    raise ImportError(
        f"bountyescrow.webhooks needs the Stripe SDK to verify webhook signatures: {_INSTALL_HINT}"
    ) from exc

from bountyescrow.webhooks._backfill import BackfillReport  # noqa: E402
from bountyescrow.webhooks._dispatcher import (  # noqa: E402
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE,
    WebhookDispatcher,
    backfill_events,
    replay_event,
)
from bountyescrow.webhooks._mounts import (  # noqa: E402
    AsgiWebhookApp,
    WsgiWebhookApp,
    asgi_app,
    wsgi_app,
)
from bountyescrow.webhooks._response import Failure, WebhookResponse  # noqa: E402
from bountyescrow.webhooks._thin import followed  # noqa: E402

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE",
    "AsgiWebhookApp",
    "BackfillReport",
    "Failure",
    "WebhookDispatcher",
    "WebhookResponse",
    "WsgiWebhookApp",
    "asgi_app",
    "backfill_events",
    "followed",
    "replay_event",
    "wsgi_app",
]
