"""Alerts as values: receive every alert the library raises in your own code.

Every alert is a log record on the ``bountyescrow.alerts`` logger (ERROR, or CRITICAL when the
gateway refuses the API key), with the alert's kind in the record's ``alert`` attribute and
its fields as further attributes: route that logger to your paging and you have them all.
When you would rather get them as values (to page through an API, count them, fail a test),
register a handler::

    from bountyescrow.alerts import Alert, add_alert_handler


    def page(alert: Alert) -> None:
        pager.send(alert.kind, alert.message, **alert.fields)


    remove = add_alert_handler(page)  # at start-up; remove() to stop

The handler is called in the thread that raised the alert (a request, a webhook, the
``recover()`` loop), after the log record is written, so it should be quick: hand the alert
to a queue when it does I/O. An exception in a handler is logged on ``bountyescrow.alerts``
and never reaches the library's code. Handlers are process-wide, like logging handlers.

In tests, `capture_alerts` collects the alerts raised inside a ``with`` block::

    with capture_alerts() as alerts:
        service.recover()
    assert [a.kind for a in alerts] == ["reserve_breach"]

docs/operations.md ("Alerts") lists every kind and what to do about it.
"""

from __future__ import annotations

from bountyescrow._alerts import ALERTS as ALERTS
from bountyescrow._alerts import Alert, AlertHandler, add_alert_handler, capture_alerts

__all__ = ["ALERTS", "Alert", "AlertHandler", "add_alert_handler", "capture_alerts"]
