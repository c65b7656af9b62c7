"""A clock that tests move by hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

#: Where a `ManualClock` starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _aware_utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"ManualClock needs a timezone-aware datetime, got naive {when!r}: "
            f"pass tzinfo=timezone.utc"
        )
    return when.astimezone(UTC)


class ManualClock:
    """A `bountyescrow.ports.clock.Clock` that only moves when a test moves it.

    Starts at 2026-01-01T00:00:00Z unless `start` is given. Safe to share between threads.

    Args:
        start: the first time `now()` returns; must be timezone-aware.

    Raises:
        ValueError: `start` is naive.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = _aware_utc(start) if start is not None else DEFAULT_START

    def now(self) -> datetime:
        """Return the current (test) time, in UTC."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` and return the new time.

        Raises:
            ValueError: `delta` is negative (use `set` to go back on purpose).
        """
        if delta < timedelta(0):
            raise ValueError(f"advance() takes a positive timedelta, got {delta}; use set()")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (forward or back).

        Raises:
            ValueError: `when` is naive.
        """
        when = _aware_utc(when)
        with self._lock:
            self._now = when

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"
