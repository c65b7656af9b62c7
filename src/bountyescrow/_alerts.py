"""The one alert path (DESIGN §16): things an operator must look at.

An alert is a log record on the ``bountyescrow.alerts`` logger at ERROR (CRITICAL for the few
that stop every money movement), with structured fields (`alert` names its kind; escrow,
operation and gateway object ids where known), so a host routes it to paging with one logging
handler. Alerts are for conditions a person must act on (a reserve breach, a second gateway
object for one operation, an object of ours the gateway refuses to show); transient trouble
the library retries by itself is logged, not alerted.

The same alert also goes, as an `Alert` value, to every handler a host registered with
`add_alert_handler` (the public face is `bountyescrow.alerts`). Handlers live here, in the
base layer, because alerts are raised from every layer: the adapters and the service alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from bountyescrow import _metrics

#: The logger every alert goes to.
ALERTS = logging.getLogger("bountyescrow.alerts")


def _frozen_fields(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(fields))


@attrs.frozen
class Alert:
    """One alert, as a host's alert handler receives it.

    Attributes:
        kind: what happened, e.g. ``reserve_breach`` (docs/operations.md lists every kind
            and what to do).
        message: the formatted message, as the log record says it (without the
            ``ALERT <kind>:`` prefix).
        fields: the structured fields: escrow, operation, event and gateway object ids
            where known (read-only).
        at: when it was raised, by the wall clock, in UTC.
        level: ``logging.ERROR``, or ``logging.CRITICAL`` when every money movement stops
            (the gateway refuses the API key).
    """

    kind: str
    message: str
    fields: Mapping[str, Any] = attrs.field(converter=_frozen_fields, hash=False)
    at: datetime
    level: int = logging.ERROR


#: What `add_alert_handler` takes: called with each alert, in the thread that raised it.
AlertHandler = Callable[[Alert], object]

_handlers: list[AlertHandler] = []
_handlers_lock = threading.Lock()
#: Set while this thread runs the handlers: an alert a handler raises goes to the log only.
_dispatching = threading.local()


def add_alert_handler(handler: AlertHandler) -> Callable[[], None]:
    """Call `handler` with every alert from now on; return a function that removes it.

    The handler gets an `Alert` in the thread that raised it, after the log record was
    written; what it returns is ignored, and an exception it raises is logged on
    ``bountyescrow.alerts`` and goes no further. Calling the returned function twice is
    harmless.

    Raises:
        TypeError: `handler` is not callable.
    """
    if not callable(handler):
        raise TypeError(f"an alert handler must be callable, got {type(handler).__name__}")
    with _handlers_lock:
        _handlers.append(handler)

    def remove() -> None:
        with _handlers_lock:
            if handler in _handlers:
                _handlers.remove(handler)

    return remove


@contextmanager
def capture_alerts() -> Iterator[list[Alert]]:
    """Collect the alerts raised inside the block into the list it yields (for tests)."""
    captured: list[Alert] = []
    remove = add_alert_handler(captured.append)
    try:
        yield captured
    finally:
        remove()


def alert(kind: str, message: str, *args: Any, critical: bool = False, **fields: Any) -> None:
    """Raise an alert of `kind` (e.g. ``reserve_breach``) with `fields` as structured extras.

    `message` and `args` are formatted as for `logging.Logger.error`. The record goes to the
    ``bountyescrow.alerts`` logger (at CRITICAL when `critical`), then the alert goes to every
    registered handler; a handler that raises is logged and skipped, never raised to the code
    that raised the alert (a broken pager must not stop a payment from being recorded).
    """
    level = logging.CRITICAL if critical else logging.ERROR
    ALERTS.log(level, "ALERT %s: " + message, kind, *args, extra={"alert": kind, **fields})
    _metrics.alert_raised(kind)
    with _handlers_lock:
        handlers = list(_handlers)
    if not handlers or getattr(_dispatching, "active", False):
        return
    try:
        text = message % args if args else message
    except (TypeError, ValueError):
        text = f"{message} {args!r}"
    value = Alert(kind=kind, message=text, fields=fields, at=datetime.now(UTC), level=level)
    _dispatching.active = True
    try:
        for handler in handlers:
            try:
                handler(value)
            except Exception:
                ALERTS.exception(
                    "alert handler %r failed on alert %s",
                    handler,
                    kind,
                    extra={"alert": "alert_handler_failed", "failed_alert": kind},
                )
    finally:
        _dispatching.active = False
