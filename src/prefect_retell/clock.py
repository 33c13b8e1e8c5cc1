"""The time a campaign reads: when calling windows open and redials fall due.

A campaign asks `campaign_clock()` for the time and sleeps on it, instead of
reading the wall clock itself. In production that is the wall clock. Tests and
rehearsals swap in a `ScaledClock`, which starts at a chosen moment (a DST
morning in New York, a Friday evening) and runs faster than real time, so that a
six-hour wait for a window is over in seconds:

    >>> from datetime import datetime, timezone
    >>> start = datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)
    >>> with use_clock(ScaledClock(start, time_scale=1 / 3600)):
    ...     campaign_clock().now() >= start
    True

The clock is a process-wide setting, not a flow parameter, because flow
parameters must be JSON and a clock is an object; `use_clock` is the seam for
tests. Only calling windows, redial delays and the campaign deadline follow it:
calls themselves, their polling and the calls-per-second pacing run in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "WallClock", "campaign_clock", "use_clock"]

# A long wait is taken in steps, so that a machine that slept, or a wall clock
# that was set, delays a call by at most this much instead of skipping a window.
_LONGEST_SLEEP_SECONDS = 300.0


class Clock(Protocol):
    """What a campaign needs of a clock."""

    def now(self) -> datetime:
        """The current moment, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return at `moment` or a little later; at once if it has passed."""
        ...


class WallClock:
    """The real time of the machine."""

    def now(self) -> datetime:
        """The current moment in UTC."""
        return datetime.now(timezone.utc)

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep until `moment`, in steps of at most five minutes."""
        while (remaining := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, _LONGEST_SLEEP_SECONDS))


class ScaledClock:
    """A clock that starts at a chosen moment and runs faster than real time.

    `time_scale` has the sandbox's meaning: real seconds per simulated second.
    At 1/3600, one real second is an hour of campaign time. The clock shows
    `start` when it is first read, so the seconds a flow run takes to start do
    not count: "the campaign starts at 06:30" holds however slow the machine.

    Args:
        start: The moment the clock shows when first read (timezone-aware).
        time_scale: Real seconds per simulated second, more than 0.
        real_time: Source of real epoch seconds.

    Example:
        ```python
        clock = ScaledClock(datetime(2026, 11, 1, 0, 30, tzinfo=timezone.utc),
                            time_scale=1 / 7200)
        with use_clock(clock):
            result = await outbound_campaign(...)
        ```
    """

    def __init__(
        self,
        start: datetime,
        *,
        time_scale: float,
        real_time: Callable[[], float] = time.time,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware, for example in UTC")
        if time_scale <= 0:
            raise ValueError(f"time_scale must be more than 0, not {time_scale}")
        self.start = start.astimezone(timezone.utc)
        self.time_scale = time_scale
        self._real_time = real_time
        self._origin: float | None = None

    def now(self) -> datetime:
        """The simulated current moment; the first read starts the clock."""
        real = self._real_time()
        if self._origin is None:
            self._origin = real
        return self.at(real)

    def at(self, real_epoch_seconds: float) -> datetime:
        """The simulated moment of a real epoch time, such as the sandbox records.

        Raises:
            RuntimeError: The clock has not been read yet, so it has not started.
        """
        if self._origin is None:
            raise RuntimeError("the clock has not been read yet, so it shows no time")
        elapsed = (real_epoch_seconds - self._origin) / self.time_scale
        return self.start + timedelta(seconds=elapsed)

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep the real time that brings this clock to `moment`."""
        remaining = (moment - self.now()).total_seconds()
        if remaining > 0:
            await asyncio.sleep(remaining * self.time_scale)


_current: Clock = WallClock()


def campaign_clock() -> Clock:
    """The clock campaigns read now: the wall clock unless `use_clock` set one."""
    return _current


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make campaigns in this process read `clock` until the block ends.

    A testing and rehearsal seam: it is process-wide, so campaigns run at the same
    time in one process all read it.
    """
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous
