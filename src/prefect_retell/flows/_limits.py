"""Prefect global concurrency limits that stand for Retell's limits, and pacing.

A campaign mirrors two of Retell's limits as Prefect global concurrency limits, so
that they hold for every flow run on the same Prefect server and a user can see and
change them in the UI:

- `retell-cps-<digits of the from-number>`: a rate limit with `limit` and
  `slot_decay_per_second` equal to the number's calls per second;
- `retell-concurrency`: the calls live at once on the account.

A rate limit alone does not pace calls evenly. Prefect's server treats it as a token
bucket whose refill is floored at every update, lets `limit + decay` acquisitions
through in the first second, and, on SQLite, can stall a per-call acquisition for
seconds. So `CallPacer` takes a whole second's tokens in one acquisition (one server
round trip per second, not per call), never asks before the bucket has refilled
(a refused request would reset the refill clock), and spaces the calls it releases
by `1 / cps`, with at most `cps` in any one-second window.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound

from prefect_retell.errors import RetellConfigurationError

__all__ = [
    "CallPacer",
    "SlotPool",
    "concurrency_limit_name",
    "ensure_limit",
    "rate_limit_name",
    "read_limit",
]

# The creations of one second arrive at Retell a little apart from how they left;
# a window this much wider than a second keeps that jitter from making `cps + 1`.
_WINDOW_SECONDS = 1.02


def rate_limit_name(from_number: str) -> str:
    """The name of the rate limit that stands for a number's calls per second."""
    return "retell-cps-" + "".join(ch for ch in from_number if ch.isdigit())


def concurrency_limit_name() -> str:
    """The name of the limit that stands for the account's simultaneous calls."""
    return "retell-concurrency"


async def ensure_limit(
    name: str,
    *,
    limit: int,
    slot_decay_per_second: float,
    logger: logging.Logger | logging.LoggerAdapter,
    keep_existing_value: bool = False,
) -> GlobalConcurrencyLimitResponse:
    """Create a global concurrency limit, or make an existing one usable.

    A missing or inactive limit throttles nothing in Prefect, and a rate limit
    without decay refuses every acquisition, so the limit is read back and
    checked before any call is placed. An existing limit is set to `limit`,
    unless `keep_existing_value`, where the value someone chose in the UI stays.

    Returns:
        The limit as the server holds it afterwards.

    Raises:
        RetellConfigurationError: The limit is still unusable after the update.
    """
    async with get_client() as client:
        try:
            current = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name,
                    limit=limit,
                    active=True,
                    slot_decay_per_second=slot_decay_per_second,
                )
            )
            logger.info(
                "Created Prefect limit %r: %d, decay %g/s",
                name,
                limit,
                slot_decay_per_second,
            )
        else:
            wanted = current.limit if keep_existing_value else limit
            await _update_limit(client, current, wanted, slot_decay_per_second, logger)
            limit = wanted
        confirmed = await client.read_global_concurrency_limit_by_name(name)
    _check_limit(confirmed, limit, slot_decay_per_second)
    return confirmed


async def read_limit(name: str) -> GlobalConcurrencyLimitResponse:
    """Read a limit as it is now; a user may have changed it in the UI.

    Raises:
        RetellConfigurationError: The limit was deleted.
    """
    async with get_client() as client:
        try:
            return await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound as exc:
            raise RetellConfigurationError(
                f"Prefect limit {name!r} was deleted while the campaign ran; "
                "no further calls are placed."
            ) from exc


async def _update_limit(client, current, limit, decay, logger) -> None:
    changes: dict[str, object] = {}
    if not current.active:
        logger.warning("Prefect limit %r was inactive; activating it", current.name)
        changes["active"] = True
    if current.limit != limit or current.slot_decay_per_second != decay:
        logger.info(
            "Setting Prefect limit %r from %d (decay %g/s) to %d (decay %g/s)",
            current.name,
            current.limit,
            current.slot_decay_per_second,
            limit,
            decay,
        )
        changes.update(limit=limit, slot_decay_per_second=decay)
    if changes:
        await client.update_global_concurrency_limit(
            current.name, GlobalConcurrencyLimitUpdate(**changes)
        )


def _check_limit(confirmed, limit: int, decay: float) -> None:
    problems = []
    if not confirmed.active:
        problems.append("it is inactive")
    if confirmed.limit != limit:
        problems.append(f"its limit is {confirmed.limit}, not {limit}")
    if confirmed.slot_decay_per_second != decay:
        problems.append(f"its decay is {confirmed.slot_decay_per_second}, not {decay}")
    if problems:
        raise RetellConfigurationError(
            f"Prefect limit {confirmed.name!r} cannot be used: {', '.join(problems)}. "
            "Fix it with `prefect gcl update` or in the UI; nothing was dialled."
        )


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class CallPacer:
    """Releases call creations at a steady rate within a Prefect rate limit.

    Args:
        cps: Calls per second to reach and never exceed.
        limit_name: The Prefect rate limit to draw from, whose limit and decay are
            `cps`; None paces locally only.
        acquire_timeout_seconds: The longest wait for the Prefect limit.
    """

    def __init__(
        self,
        cps: int,
        limit_name: str | None,
        *,
        acquire_timeout_seconds: float = 300.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if cps < 1:
            raise RetellConfigurationError(f"cps must be at least 1, not {cps}")
        self.cps = cps
        self.limit_name = limit_name
        self.acquire_timeout_seconds = acquire_timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._interval = 1.0 / cps
        self._rate = cps
        self._tokens = 0
        self._refill_not_before = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=cps)
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        """Return when the next call may be created."""
        async with self._lock:
            if self._tokens == 0:
                await self._take_tokens()
            self._tokens -= 1
            await self._wait_for_slot()
            self._recent.append(self._clock())

    async def _take_tokens(self) -> None:
        if self.limit_name is None:
            self._tokens = self.cps
            return
        await self._sleep_until(self._refill_not_before)
        # The limit may have been changed in the UI, or by a campaign started later
        # on the same number: follow it rather than ask for more than it holds.
        current = await read_limit(self.limit_name)
        rate = max(1, min(self.cps, current.limit, int(current.slot_decay_per_second)))
        await rate_limit(
            self.limit_name,
            occupy=rate,
            timeout_seconds=self.acquire_timeout_seconds,
            strict=True,
        )
        # The server stamped the grant before its answer arrived, so a second
        # from now the bucket is certainly full again and the next request cannot
        # be refused (a refusal would restart the bucket's refill).
        self._refill_not_before = self._clock() + rate / current.slot_decay_per_second
        self._tokens = rate
        self._rate = rate
        self._interval = 1.0 / rate

    async def _wait_for_slot(self) -> None:
        earliest = self._clock()
        if self._recent:
            earliest = max(earliest, self._recent[-1] + self._interval)
        if len(self._recent) >= self._rate:
            earliest = max(earliest, self._recent[-self._rate] + _WINDOW_SECONDS)
        await self._sleep_until(earliest)

    async def _sleep_until(self, moment: float) -> None:
        delay = moment - self._clock()
        if delay > 0:
            await self._sleep(delay)


class SlotPool:
    """Holds slots of a Prefect concurrency limit for the calls of one campaign.

    Taking one slot per call costs two server round trips per call, and on a
    SQLite-backed server those collide with other writes and stall for seconds
    (measured: 20 simultaneous acquisitions took up to 19 s). The pool takes slots
    in chunks, each under its own lease that Prefect renews, hands them to calls
    locally, and gives a chunk back once no call waits for it. The server still
    holds the total for every flow run that shares the limit.

    Args:
        limit_name: The Prefect concurrency limit.
        capacity: The most slots this campaign may hold.
        chunk: How many slots one acquisition takes.
        acquire_timeout_seconds: The longest wait for one chunk.
    """

    def __init__(
        self,
        limit_name: str,
        capacity: int,
        *,
        chunk: int,
        acquire_timeout_seconds: float = 3600.0,
    ) -> None:
        self.limit_name = limit_name
        self.capacity = capacity
        self.chunk = max(1, min(chunk, capacity))
        self.acquire_timeout_seconds = acquire_timeout_seconds
        self.in_use = 0
        self._leases: list[tuple[tuple[asyncio.Task[None], asyncio.Event], int]] = []
        self._changed = asyncio.Condition()
        self._growing = asyncio.Lock()
        self._waiting = 0

    @property
    def held(self) -> int:
        """Slots held from the server now."""
        return sum(size for _, size in self._leases)

    async def acquire(self) -> None:
        """Take one slot for a call, acquiring a chunk from the server if needed."""
        self._waiting += 1
        try:
            while not await self._take_local():
                async with self._growing:
                    # Another caller may have grown the pool while this one waited.
                    if self.in_use < self.held or self.held >= self.capacity:
                        continue
                    await self._take_chunk()
                async with self._changed:
                    self._changed.notify_all()
        finally:
            self._waiting -= 1

    async def _take_local(self) -> bool:
        async with self._changed:
            while self.in_use >= self.held and self.held >= self.capacity:
                await self._changed.wait()
            if self.in_use < self.held:
                self.in_use += 1
                return True
            return False

    async def release(self) -> None:
        """Give back a call's slot; chunks no call is waiting for go back."""
        async with self._changed:
            self.in_use -= 1
            self._changed.notify()
        if not self._waiting:
            async with self._growing:
                while self._leases and self.held - self._leases[-1][1] >= self.in_use:
                    await self._give_back(self._leases.pop())

    async def close(self) -> None:
        """Give every chunk back."""
        async with self._growing:
            while self._leases:
                await self._give_back(self._leases.pop())

    async def _take_chunk(self) -> None:
        size = min(self.chunk, self.capacity - self.held)
        acquired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        release = asyncio.Event()
        holder = asyncio.create_task(self._hold(size, acquired, release))
        await acquired
        self._leases.append(((holder, release), size))

    async def _hold(
        self, size: int, acquired: asyncio.Future[None], release: asyncio.Event
    ) -> None:
        # Prefect's lease keeper must be entered and left in one asyncio task, and
        # the calls that share a chunk run in many: a task of its own holds it.
        try:
            async with concurrency(
                self.limit_name,
                occupy=size,
                timeout_seconds=self.acquire_timeout_seconds,
                strict=True,
                # Prefect's shortest lease: a crashed campaign's slots come back
                # after a minute rather than five.
                lease_duration=60,
                raise_on_lease_renewal_failure=False,
            ):
                acquired.set_result(None)
                await release.wait()
        except BaseException as exc:
            if acquired.done():
                raise
            acquired.set_exception(exc)

    @staticmethod
    async def _give_back(entry: tuple[tuple[asyncio.Task[None], asyncio.Event], int]):
        (holder, release), _ = entry
        release.set()
        await holder
