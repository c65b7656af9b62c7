"""The one alert path (DESIGN §16): things an operator must look at.

An alert is a log record on the ``bountyescrow.alerts`` logger at ERROR, with structured
fields (`alert` names its kind; escrow, operation and gateway object ids where known), so a
host routes it to paging with one logging handler. Alerts are for conditions a person must
act on (a reserve breach, a second gateway object for one operation, an object of ours the
gateway refuses to show); transient trouble the library retries by itself is logged, not
alerted.
"""

from __future__ import annotations

import logging
from typing import Any

from bountyescrow import _metrics

#: The logger every alert goes to.
ALERTS = logging.getLogger("bountyescrow.alerts")


def alert(kind: str, message: str, *args: Any, **fields: Any) -> None:
    """Raise an alert of `kind` (e.g. ``reserve_breach``) with `fields` as structured extras.

    `message` and `args` are formatted as for `logging.Logger.error`.
    """
    ALERTS.error("ALERT %s: " + message, kind, *args, extra={"alert": kind, **fields})
    _metrics.alert_raised(kind)
