"""`ManualClock`: a clock tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bountyescrow.ports.clock import Clock
from bountyescrow.testing import ManualClock


class TestManualClock:
    def test_starts_at_2026_01_01_utc(self) -> None:
        assert ManualClock().now() == datetime(2026, 1, 1, tzinfo=UTC)

    def test_is_a_clock(self) -> None:
        clock: Clock = ManualClock()
        assert clock.now().tzinfo is not None

    def test_stands_still_until_moved(self) -> None:
        clock = ManualClock()
        assert clock.now() == clock.now()

    def test_advance_moves_forward_and_returns_the_new_time(self) -> None:
        clock = ManualClock()
        assert clock.advance(timedelta(hours=25)) == datetime(2026, 1, 2, 1, tzinfo=UTC)
        assert clock.now() == datetime(2026, 1, 2, 1, tzinfo=UTC)

    def test_advance_refuses_going_back(self) -> None:
        with pytest.raises(ValueError, match="set"):
            ManualClock().advance(timedelta(seconds=-1))

    def test_set_jumps_and_converts_to_utc(self) -> None:
        clock = ManualClock()
        clock.set(datetime(2025, 6, 1, 12, tzinfo=timezone(timedelta(hours=2))))
        assert clock.now() == datetime(2025, 6, 1, 10, tzinfo=UTC)
        assert clock.now().utcoffset() == timedelta(0)

    def test_naive_times_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            ManualClock(datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="timezone-aware"):
            ManualClock().set(datetime(2026, 1, 1))

    def test_custom_start(self) -> None:
        start = datetime(2030, 3, 4, tzinfo=UTC)
        assert ManualClock(start).now() == start
        assert "2030-03-04" in repr(ManualClock(start))
