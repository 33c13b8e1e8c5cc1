"""Follow many live calls with few requests: batched polling over list-calls.

`follow_call` reads one call with get-call every few seconds, so a campaign of
10,000 one-minute calls polled every 2 s would send 300,000 reads. `CallPoller`
follows every call of a process from one background loop instead:

- **Schedule by age.** A call is first looked at `first_look_seconds` after it is
  handed over, when early failures (busy, no such number) are over; after a look at
  age `a`, the next one comes at age `a × age_factor`, at most `max_gap_seconds`
  later. A one-minute call followed on its own costs two reads, three requests
  with its creation. A look is also made at each waiter's deadline.
- **Batches.** Each round, at most one every `min_gap_seconds`, reads the calls due
  with list-calls v3 filtered by `call_id` (enum `in`), up to `page_size` ids per
  request, following `has_more`. Room left in the last request is filled with the
  calls due soonest, so with many calls live every call is seen about every
  `min_gap_seconds` at no extra request.
- **get-call where it is as cheap or needed.** A round with a single call reads it
  with get-call: the same one request, and the complete call without the list's
  lag. A call missing from list answers `list_lag_seconds` after it was handed over
  (Retell's list can lag behind get-call) is read with get-call, as are the calls
  of a batch that list-calls refused outright (a 4xx), so one bad call cannot
  sink the others.
- **Failures.** The client retries a failed request (429, 5xx, broken
  connections) by its own policy. A call whose looks then fail
  `max_failed_looks` times in a row hands the error to its waiters; an
  authentication error goes to every waiter at once. No waiter waits past its
  deadline for an answer that does not come.

Known limits: a call read in a batch comes from list-calls, which leaves out
transcripts; read it with `RetellClient.get_call` when the transcript is needed. A
call followed on its own is seen to end late: one that ends 12 s after it was
handed over is seen at 90 s, the price of two reads per one-minute call. With other
calls live it rides along in their reads and is seen within `min_gap_seconds` or so.
A call's age counts from when it is handed over, so a call taken up again after a
restart starts its schedule afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from prefect_retell.client import RetellClient
from prefect_retell.errors import (
    RetellAPIError,
    RetellAuthenticationError,
    RetellConnectionError,
    RetellError,
    RetellRateLimitError,
    RetellServerError,
)
from prefect_retell.models import PhoneCall, is_final_status

# The timeout handling and the "finished" log line are follow_call's, so that a
# call followed either way ends with the same error and the same log.
from prefect_retell.tasks import _log_finished, _timed_out

__all__ = ["CallPoller", "PollSchedule"]

MAX_PAGE_SIZE = 1000
"""The largest page list-calls answers, and the most call ids one request names."""

# Failures worth another look later: the request may well succeed next time.
_TRANSIENT = (RetellServerError, RetellRateLimitError, RetellConnectionError)
# get-call reads of one round in flight at once.
_PARALLEL_GETS = 8
# A look at a waiter's deadline may itself be slow (retries, slow answers); past
# this, the waiter stops waiting for it and reports the timeout.
_DEADLINE_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class PollSchedule:
    """When to look at a live call; every duration is in seconds.

    The defaults suit Retell's real time. For an accelerated sandbox, scale them
    all with `with_min_gap`.

    Attributes:
        min_gap_seconds: The shortest pause between two rounds of reads, and so
            between two looks at one call.
        first_look_seconds: A call's age at its first look; most early failures
            (busy, no such number, refused) are over by then.
        age_factor: After a look at age `a`, the next look comes at age
            `a × age_factor`: a long call is looked at more and more rarely...
        max_gap_seconds: ...but never more than this long after the last look.
        list_lag_seconds: How long after it was handed over a call may be missing
            from list-calls answers before it is read with get-call.
    """

    min_gap_seconds: float = 2.0
    first_look_seconds: float = 10.0
    age_factor: float = 9.0
    max_gap_seconds: float = 120.0
    list_lag_seconds: float = 30.0

    def __post_init__(self) -> None:
        durations = (
            self.min_gap_seconds,
            self.first_look_seconds,
            self.max_gap_seconds,
            self.list_lag_seconds,
        )
        if min(durations) <= 0 or self.age_factor <= 1:
            raise ValueError(
                "A PollSchedule needs durations above 0 and an age_factor above 1; "
                f"got {self}"
            )

    @classmethod
    def with_min_gap(cls, min_gap_seconds: float) -> PollSchedule:
        """The default schedule with every duration scaled to this shortest gap.

        Example:
            ```python
            # A sandbox at time_scale 0.02 runs 50 times faster than Retell.
            schedule = PollSchedule.with_min_gap(2.0 * 0.02)
            ```
        """
        factor = min_gap_seconds / cls.min_gap_seconds
        return cls(
            min_gap_seconds=min_gap_seconds,
            first_look_seconds=cls.first_look_seconds * factor,
            age_factor=cls.age_factor,
            max_gap_seconds=cls.max_gap_seconds * factor,
            list_lag_seconds=cls.list_lag_seconds * factor,
        )

    def gap_after(self, age_seconds: float) -> float:
        """The pause before the next look at a call looked at `age_seconds` old."""
        gap = age_seconds * (self.age_factor - 1)
        return min(max(gap, self.min_gap_seconds), self.max_gap_seconds)


@dataclass(eq=False)
class _Waiter:
    """One `wait` call: its future (None means the deadline passed) and deadline."""

    future: asyncio.Future[PhoneCall | None]
    deadline: float


@dataclass(eq=False)
class _Watch:
    """A live call being followed, and what the loop knows of it."""

    call_id: str
    since: float
    next_look: float
    waiters: list[_Waiter] = field(default_factory=list)
    last_status: str | None = None
    last_look: float | None = None
    failures: int = 0
    missing: bool = False

    def pending(self) -> list[_Waiter]:
        """The waiters still waiting."""
        return [waiter for waiter in self.waiters if not waiter.future.done()]


class CallPoller:
    """Follows many live calls to their final status with few requests.

    Use it as an async context manager around the calls to follow, or call
    `aclose` at the end; the background loop runs only while calls are followed.

    Args:
        client: The client that sends the reads; its retry policy applies.
        schedule: When to look at each call; `PollSchedule()` when not given.
        page_size: Call ids per list-calls request and page size, 1 to 1000.
        max_failed_looks: Looks at a call that may fail in a row (after the
            client's own retries) before its waiters get the error.
        logger: Where status changes (DEBUG), finished calls and failed looks
            (WARNING) go; the module logger by default.
        call_log_level: The level of the line logged as each call finishes.

    Example:
        ```python
        async with RetellClient(api_key) as client, CallPoller(client) as poller:
            calls = await asyncio.gather(
                *(poller.wait(call_id, timeout_seconds=900) for call_id in call_ids)
            )
        ```
    """

    def __init__(
        self,
        client: RetellClient,
        *,
        schedule: PollSchedule | None = None,
        page_size: int = MAX_PAGE_SIZE,
        max_failed_looks: int = 3,
        logger: logging.Logger | logging.LoggerAdapter | Any = None,
        call_log_level: int = logging.INFO,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")
        if max_failed_looks < 1:
            raise ValueError(f"max_failed_looks must be 1 or more: {max_failed_looks}")
        self.client = client
        self.schedule = schedule or PollSchedule()
        self.page_size = page_size
        self.max_failed_looks = max_failed_looks
        self._logger = logger if logger is not None else logging.getLogger(__name__)
        self._call_log_level = call_log_level
        self._watches: dict[str, _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_round = -math.inf

    async def __aenter__(self) -> CallPoller:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def following(self) -> int:
        """How many calls are being followed now."""
        return len(self._watches)

    async def wait(
        self,
        call_id: str,
        *,
        timeout_seconds: float,
        stop_on_timeout: bool = False,
    ) -> PhoneCall:
        """Wait until a call is `ended`, `not_connected` or `error`, and return it.

        Args:
            call_id: The call to follow.
            timeout_seconds: The longest wait.
            stop_on_timeout: Ask Retell to stop the call when the wait runs out.

        Returns:
            The call in its final status (from list-calls when it was read in a
            batch: without transcript).

        Raises:
            RetellCallTimeoutError: The call was still live at the deadline; with
                `stop_on_timeout` it was asked to stop first.
            RetellError: Its reads kept failing, or Retell refused them.
        """
        now = time.monotonic()
        waiter = _Waiter(
            asyncio.get_running_loop().create_future(), now + timeout_seconds
        )
        watch = self._watch(call_id, now)
        watch.waiters.append(waiter)
        watch.next_look = min(watch.next_look, waiter.deadline)
        self._ensure_running()
        try:
            call = await self._outcome(waiter)
        finally:
            self._forget(watch, waiter)
        if call is not None:
            return call
        return await _timed_out(
            self.client, call_id, watch.last_status, stop_on_timeout
        )

    async def aclose(self) -> None:
        """Stop the loop; calls still followed get an error saying so."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for watch in list(self._watches.values()):
            closed = RetellError(
                f"Stopped following call {watch.call_id}: the poller was closed; "
                "the call was not stopped. Read it later with get_call."
            )
            self._fail([watch], closed)

    # Waiters

    def _watch(self, call_id: str, now: float) -> _Watch:
        watch = self._watches.get(call_id)
        if watch is None:
            first = now + self.schedule.first_look_seconds
            watch = self._watches[call_id] = _Watch(call_id, now, first)
        return watch

    def _ensure_running(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="retell-call-poller")

    async def _outcome(self, waiter: _Waiter) -> PhoneCall | None:
        """The waiter's call, or None once its deadline has passed."""
        remaining = max(waiter.deadline - time.monotonic(), 0.0)
        done, _ = await asyncio.wait(
            {waiter.future}, timeout=remaining + _DEADLINE_GRACE_SECONDS
        )
        return waiter.future.result() if done else None

    def _forget(self, watch: _Watch, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            watch.waiters.remove(waiter)
        if not watch.pending():
            self._drop(watch)

    def _drop(self, watch: _Watch) -> None:
        if self._watches.get(watch.call_id) is watch:
            del self._watches[watch.call_id]

    # The loop

    async def _run(self) -> None:
        try:
            while self._watches:
                delay = self._delay()
                if delay > 0:
                    await self._nap(delay)
                else:
                    await self._round()
        except Exception as exc:
            # A fault in the loop itself goes to every waiter, instead of leaving
            # them all waiting for their deadlines.
            self._fail(list(self._watches.values()), exc)

    def _delay(self) -> float:
        due = min(watch.next_look for watch in self._watches.values())
        start = max(due, self._last_round + self.schedule.min_gap_seconds)
        return start - time.monotonic()

    async def _nap(self, seconds: float) -> None:
        """Sleep, or less if a new call arrives that may be due sooner."""
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _round(self) -> None:
        now = time.monotonic()
        self._last_round = now
        due = [watch for watch in self._watches.values() if watch.next_look <= now]
        by_get = [watch for watch in due if self._lagging(watch, now)]
        by_list = self._with_free_looks(
            [watch for watch in due if not self._lagging(watch, now)], now
        )
        if len(by_list) == 1:
            # One call: get-call costs the same single request, without the lag.
            by_get += by_list
            by_list = []
        for chunk in _chunks(by_list, self.page_size):
            by_get += await self._look_by_list(chunk)
        await self._look_by_get(by_get)
        self._logger.debug(
            "Looked at %d call(s): %d by list-calls, %d by get-call; %d followed",
            len(by_list) + len(by_get),
            len(by_list),
            len(by_get),
            len(self._watches),
        )

    def _lagging(self, watch: _Watch, now: float) -> bool:
        """Whether a call missing from the list has been missing too long."""
        return watch.missing and now - watch.since >= self.schedule.list_lag_seconds

    def _with_free_looks(self, due: list[_Watch], now: float) -> list[_Watch]:
        """Fill the room left in the last request with the calls due soonest."""
        room = -len(due) % self.page_size
        if not due or not room:
            return due
        chosen = set(due)
        gap = self.schedule.min_gap_seconds
        extra = [
            watch
            for watch in self._watches.values()
            if watch not in chosen
            and now - watch.since >= gap
            and (watch.last_look is None or now - watch.last_look >= gap)
            # A call the list has been leaving out would cost a get-call.
            and not self._lagging(watch, now)
        ]
        extra.sort(key=lambda watch: watch.next_look)
        return due + extra[:room]

    async def _look_by_list(self, chunk: Sequence[_Watch]) -> list[_Watch]:
        """Read a batch with list-calls; return the calls to read with get-call."""
        ids = [watch.call_id for watch in chunk]
        criteria = {"call_id": {"type": "enum", "op": "in", "value": ids}}
        try:
            found = {
                item["call_id"]: item
                async for item in self.client.iter_call_items(
                    criteria, page_size=self.page_size
                )
                if isinstance(item, dict) and isinstance(item.get("call_id"), str)
            }
        except RetellAuthenticationError as exc:
            self._fail(list(self._watches.values()), exc)
            return []
        except _TRANSIENT as exc:
            self._failed(chunk, exc)
            return []
        except RetellAPIError as exc:
            self._logger.warning(
                "list-calls refused a batch of %d call(s), so each is read with "
                "get-call: %s",
                len(ids),
                exc,
            )
            return list(chunk)
        return self._take_listed(chunk, found)

    def _take_listed(
        self, chunk: Sequence[_Watch], found: dict[str, dict[str, Any]]
    ) -> list[_Watch]:
        now = time.monotonic()
        absent = []
        for watch in chunk:
            item = found.get(watch.call_id)
            if item is not None:
                self._seen_item(watch, item, now)
            elif self._is_current(watch):
                watch.missing = True
                if self._lagging(watch, now):
                    absent.append(watch)
                else:
                    self._expire(watch, now)
        return absent

    async def _look_by_get(self, watches: Sequence[_Watch]) -> None:
        gate = asyncio.Semaphore(_PARALLEL_GETS)

        async def look(watch: _Watch) -> None:
            async with gate:
                if self._is_current(watch):
                    await self._get(watch)

        await asyncio.gather(*(look(watch) for watch in watches))

    async def _get(self, watch: _Watch) -> None:
        try:
            call = await self.client.get_call(watch.call_id)
        except RetellAuthenticationError as exc:
            self._fail(list(self._watches.values()), exc)
        except _TRANSIENT as exc:
            self._failed([watch], exc)
        except RetellError as exc:
            # Not found, or refused: asking again will not help.
            self._fail([watch], exc)
        else:
            # Seen, it is no longer missing: the list may have caught up by the
            # next look.
            self._seen(watch, call, time.monotonic())

    # What a look found

    def _is_current(self, watch: _Watch) -> bool:
        return self._watches.get(watch.call_id) is watch

    def _seen_item(self, watch: _Watch, item: dict[str, Any], now: float) -> None:
        """Take a list item; only a final call is worth validating in full."""
        status = item.get("call_status")
        if not is_final_status(status):
            self._observe(watch, status, None, now)
            return
        try:
            call = PhoneCall.model_validate(item)
        except ValidationError as exc:
            error = RetellError(
                f"list-calls described call {watch.call_id} in a shape that cannot "
                f"be read: {exc.error_count()} problem(s), the first at "
                f"{'.'.join(str(part) for part in exc.errors()[0]['loc'])}"
            )
            self._fail([watch], error)
            return
        self._observe(watch, call.call_status, call, now)

    def _seen(self, watch: _Watch, call: PhoneCall, now: float) -> None:
        self._observe(watch, call.call_status, call if call.is_final else None, now)

    def _observe(
        self, watch: _Watch, status: str | None, final: PhoneCall | None, now: float
    ) -> None:
        """Record a look at a call: its end, or when to look next."""
        if not self._is_current(watch):
            return
        if status != watch.last_status:
            self._logger.debug("Call %s is %s", watch.call_id, status)
        watch.last_status = status
        watch.last_look = now
        watch.failures = 0
        watch.missing = False
        if final is not None:
            _log_finished(self._logger, final, self._call_log_level)
            for waiter in watch.pending():
                waiter.future.set_result(final)
            self._drop(watch)
            return
        self._expire(watch, now)

    def _failed(self, watches: Iterable[_Watch], error: Exception) -> None:
        now = time.monotonic()
        current = [watch for watch in watches if self._is_current(watch)]
        if current:
            # One line for a whole batch: a failed list of 1000 calls is one event.
            self._logger.warning(
                "Reading %s failed for now: %s; a call is given up after %d "
                "failed reads in a row",
                f"call {current[0].call_id}"
                if len(current) == 1
                else f"{len(current)} calls",
                error,
                self.max_failed_looks,
            )
        for watch in current:
            watch.failures += 1
            if watch.failures >= self.max_failed_looks:
                self._fail([watch], error)
            else:
                self._expire(watch, now)

    def _fail(self, watches: Iterable[_Watch], error: BaseException) -> None:
        for watch in watches:
            for waiter in watch.pending():
                waiter.future.set_exception(error)
            self._drop(watch)

    def _expire(self, watch: _Watch, now: float) -> None:
        """End the waits whose deadline has passed; schedule the next look."""
        for waiter in watch.pending():
            if waiter.deadline <= now:
                waiter.future.set_result(None)
        if watch.pending():
            self._reschedule(watch, now)
        else:
            self._drop(watch)

    def _reschedule(self, watch: _Watch, now: float) -> None:
        age = now - watch.since
        next_look = now + self.schedule.gap_after(age)
        if watch.missing:
            next_look = min(next_look, watch.since + self.schedule.list_lag_seconds)
        deadlines = [waiter.deadline for waiter in watch.pending()]
        watch.next_look = min([next_look, *deadlines])


def _chunks(items: Sequence[_Watch], size: int) -> Iterable[Sequence[_Watch]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
