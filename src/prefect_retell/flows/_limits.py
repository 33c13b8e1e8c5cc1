"""Prefect global concurrency limits that stand for Retell's limits, and pacing.

A campaign mirrors two of Retell's limits as Prefect global concurrency limits, so
that they hold for every flow run on the same Prefect server, in one process or in
many, and a user can see and change them in the UI:

- `retell-cps-<digits of the from-number>`: a rate limit with `limit` and
  `slot_decay_per_second` equal to the number's calls per second;
- `retell-concurrency`: the calls live at once on the account.

## Why the rate limit is not used call by call

Prefect's server keeps a rate limit as a token bucket: `active_slots` (tokens
taken), `updated` (the last write) and a decay; the tokens still held at a moment
are `active_slots - floor(decay * seconds since updated)`, and a read reports
that figure, already decayed. A grant stores the new count and stamps `updated`,
so the refill fraction in progress is lost at every grant. One acquisition per
call costs a server round trip per call, and on SQLite those writes collide with
the server's own and stall for up to seconds (measured: single grants of 0.5 and
2 s). Prefect's `rate_limit` retries refused requests on its own schedule, and
two processes retrying so keep asking while the bucket is not empty. (The code
suggests a refusal records denied slots and so stamps `updated`, which would
throw the whole refill away; in Prefect 3.9.1 that write is rolled back with the
423 answer, measured on SQLite and PostgreSQL. The pacer does not depend on
either behaviour.)

## What `CallPacer` does instead

It reads the bucket as a timeline. A grant of the whole bucket, taken when it is
empty, covers the next `limit / decay` seconds of the number's budget: its
share. No other grant can come before that share has drained. So:

1. **Ask only when the bucket is empty, for all of it.** The pacer reads the
   limit, works out from `active_slots` and `updated` a moment by which the
   bucket will be empty (never too early), sleeps until then and asks once
   for `limit` tokens. A grant of the whole bucket proves it was empty, so the
   share starts at the grant. Asking for fewer (as many as there are lanes
   ready) would let a second grant fit beside it, and neither process could
   tell where in the timeline its share falls. Requests are seldom refused; a
   refused one is not retried blindly: the pacer waits a random moment and
   reads again. A busy server (SQLite answers 503 when locked) is asked again
   within a tenth of a second, after a fresh read: the pacer's client hands
   the 503 back at once, before Prefect's client would sleep 2 s on it.
2. **Spend a share at once, evenly, or not at all.** Calls go out at `1 / cps`
   from the moment the grant arrives, each to a lane that is ready then. Each
   share has a deadline: its last call must leave early enough to stay a call
   interval, plus spare, ahead of the next share. A turn no lane takes within
   its interval, or one that would fall after the deadline (a slow answer
   from the server), expires instead of being spent late. Unused tokens are
   not given back: a give-back delayed by a busy database could land inside
   the next process's share, shorten it and let two processes call at once.
   This costs other processes at most one share of waiting.
3. **Count a call when Retell can have received it.** Each lane says when its
   create really left and when it was answered; Retell counts the call in
   between. The process's own calls are spaced so that any `cps + 1` of them
   span a second from the first one's answer, so a request that waited in a
   busy server's queue, or a create the client retried, cannot squeeze two
   calls into one second. (Against a far API, whose answers usually take
   longer than `_ANSWER_CAP_SECONDS`, a usual answer counts from
   `_ANSWER_CAP_SECONDS` after leaving instead: waiting for answers would cost
   the round trip every second.) The process whose grant was the last write
   asks for its next share just in time for its next call.
4. **Hand over with a margin.** A process taking over from another waits
   `_HANDOVER_SECONDS` plus a random jitter after the bucket has drained: the
   margin covers the other's last calls still on their way, and the jitter
   keeps two waiting processes from asking at the same instant.
5. **One round trip per share, not per call.** A read and a grant per share
   of up to `cps` calls; a slow grant is followed by a read of its own time,
   so that a database stall does not waste the share.

Together: shares never overlap on the server's timeline, each process's calls
sit inside its share at `1 / cps`, and shares are a call interval apart, so the
calls of all processes together never exceed `cps` in any one-second window.

Measured with bench/cps.py on the sandbox's record of creation times (2 cores
shared with other work, so read them as sizes): one process reaches 98-99% of
the CPS at 1, 5 and 16 (the answers' delays are the gap to 100%) when the
campaign does not log a line per call; two processes on one number 90-97%, on
SQLite and on PostgreSQL; never more than the CPS in any second, no 429. A
busy event loop costs rate: with two INFO lines per call, 16 CPS fell to 94%.

Known limits of this design: there is no fairness. The process that holds a
number's budget keeps it while it has calls ready, and another takes over when
it pauses; the shards of one campaign then mostly dial one after another, and
the total rate is what it would be with one. Every process must read the same
clock as the Prefect server to within about 20 ms (NTP): `updated` is the
server's time, compared with the process's own. The handover margin covers the
previous holder's last calls for `_HANDOVER_SECONDS - _LATE_ALLOWANCE_SECONDS`
(0.14 s) after they were due; a create still unanswered by then could share a
second with the next holder's first calls. Against a far API, a usual answer
counts from `_ANSWER_CAP_SECONDS` after its call left, which trusts requests to
reach it within that time. Anything else drawing from a `retell-cps-*` limit
with Prefect's `rate_limit` is not spaced by these rules.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from prefect_retell.errors import RetellConfigurationError

__all__ = [
    "CallPacer",
    "PacerRotation",
    "PacerStats",
    "Turn",
    "SlotPool",
    "concurrency_limit_name",
    "ensure_limit",
    "rate_limit_name",
    "read_limit",
]


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
        current = await _read_or_create(
            client, name, limit, slot_decay_per_second, logger
        )
        if current is not None:
            wanted = current.limit if keep_existing_value else limit
            await _update_limit(client, current, wanted, slot_decay_per_second, logger)
            limit = wanted
        confirmed = await client.read_global_concurrency_limit_by_name(name)
    _check_limit(confirmed, limit, slot_decay_per_second)
    return confirmed


async def _read_or_create(
    client: PrefectClient,
    name: str,
    limit: int,
    decay: float,
    logger: logging.Logger | logging.LoggerAdapter,
) -> GlobalConcurrencyLimitResponse | None:
    """The limit as it exists, or None after creating it as asked.

    Shards of one campaign start together and may all find the limit missing;
    the ones that lose the race to create it take it as it exists.
    """
    try:
        return await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        pass
    try:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=name, limit=limit, active=True, slot_decay_per_second=decay
            )
        )
    except ObjectAlreadyExists:
        return await client.read_global_concurrency_limit_by_name(name)
    logger.info("Created Prefect limit %r: %d, decay %g/s", name, limit, decay)
    return None


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

# When answers to creates are usually slower than this (a far API), one no
# slower than 1.5 times the usual counts as received this long after it left.
_ANSWER_CAP_SECONDS = 0.1
# A process that takes the bucket over from another asks this long after the
# bucket has drained, plus a random jitter of up to _HANDOVER_JITTER_SECONDS.
_HANDOVER_SECONDS = 0.25
_HANDOVER_JITTER_SECONDS = 0.02
# How late a grant's calls may leave after their nominal slots. The handover
# margin less this allowance (0.14 s) covers the time Retell may take to count
# the last call of a share (_ANSWER_CAP_SECONDS), plus 20 ms for the clocks of
# two machines to disagree, and keeps the next process's first call a call
# interval further.
_LATE_ALLOWANCE_SECONDS = 0.11
# How far inside its share's deadline a share is asked for its last planned call.
_FIT_MARGIN_SECONDS = 0.03
# The server's timestamp arithmetic is not exact: ask this long after the moment
# the bucket is computed to be empty.
_ROUNDING_SECONDS = 0.003
# A read this close to a request to another process's bucket is fresh enough.
_FRESH_READ_SECONDS = 0.02
# A grant answered slower than this has its own moment read back, so that the
# share's deadline is not counted from when the request left.
_SLOW_GRANT_SECONDS = 0.05
# Longest random pause after a refused request, before the bucket is read again.
_REFUSAL_BACKOFF_SECONDS = 0.05
# How far before its request this process's own grant may appear stamped.
_CLOCK_TOLERANCE_SECONDS = 1.0
# How long a paused limit (set to 0) is left before it is read again.
_PAUSED_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class _Bucket:
    """A rate limit as the server answered a read.

    `left` is what Prefect reports as active slots: the tokens still held at the
    moment the server read the row, after decay, not the count it stored.
    """

    name: str
    active: bool
    limit: int
    decay: float
    left: int
    updated: float
    answered: float

    @classmethod
    def read_from(
        cls, limit: GlobalConcurrencyLimitResponse, answered: float
    ) -> _Bucket:
        updated = limit.updated.timestamp() if limit.updated else 0.0
        return cls(
            name=limit.name,
            active=limit.active,
            limit=limit.limit,
            decay=limit.slot_decay_per_second,
            left=limit.active_slots,
            updated=updated,
            answered=answered,
        )

    def drained_by(self, empty_seen: float = math.inf) -> float:
        """A moment by which every token taken so far has decayed; never early.

        The server counts `left` at some moment before `answered`, and tokens
        decay whole, so the tokens stored at the last write were `left` plus
        the whole tokens decayed since; counted up to `answered`, that is at
        most one token too many, which only makes the answer later. An empty
        bucket drained before the first read that found it empty
        (`empty_seen`), and no later than a full bucket would have.
        """
        if self.left == 0:
            full = self.updated + self.limit / self.decay
            return min(self.answered, empty_seen, full)
        # A hair added so that float rounding never drops a whole token.
        elapsed = max(0.0, self.answered - self.updated)
        decayed = math.floor(self.decay * elapsed + 1e-6)
        return self.updated + (self.left + decayed) / self.decay


@dataclass(frozen=True)
class _Grant:
    """A share of a number's budget: up to `size` calls from `received` on.

    `start` is the earliest moment the server can have made the grant: when the
    request left, or, for a slow answer, the grant's own time read back.
    """

    start: float
    received: float
    size: int
    decay: float
    rate: float
    shared: bool = True

    @property
    def deadline(self) -> float:
        """The last moment a call of this grant may leave.

        The share drains `size / decay` after the grant, and another process
        starts at least the handover margin after that; a call leaving by this
        moment stays a call interval, plus the time Retell may take to count it
        (_ANSWER_CAP_SECONDS), ahead of it.
        """
        if not self.shared:
            return math.inf
        return self.start + (self.size - 1) / self.decay + _LATE_ALLOWANCE_SECONDS


@dataclass
class PacerStats:
    """What one pacer did, for the campaign's log.

    Attributes:
        released: Calls let go.
        grants: Shares granted by the Prefect limit.
        refused: Requests the limit refused.
        expired: Turns that no call used in time.
    """

    released: int = 0
    grants: int = 0
    refused: int = 0
    expired: int = 0

    def describe(self) -> str:
        """One line for a person."""
        return (
            f"{self.released} calls in {self.grants} shares of the limit, "
            f"{self.refused} request(s) refused, {self.expired} turn(s) unused"
        )


class _LimitServer:
    """The two requests a pacer makes to Prefect, on one client."""

    def __init__(self, client: PrefectClient, name: str, clock: Clock) -> None:
        self.client = client
        self.name = name
        self.clock = clock

    async def read(self) -> _Bucket:
        """The bucket now; a busy server is asked again after a short pause."""
        for attempt in itertools.count():
            try:
                limit = await self.client.read_global_concurrency_limit_by_name(
                    self.name
                )
            except ObjectNotFound as exc:
                raise RetellConfigurationError(
                    f"Prefect limit {self.name!r} was deleted while the campaign "
                    "ran; no further calls are placed."
                ) from exc
            except (httpx.HTTPStatusError, httpx.TransportError, _ServerBusy) as exc:
                if not _busy(exc) or attempt + 1 >= _BUSY_ATTEMPTS:
                    raise
                await asyncio.sleep(_busy_pause(attempt))
                continue
            return _Bucket.read_from(limit, self.clock())
        raise AssertionError("unreachable")

    async def take(self, slots: int) -> bool:
        """Ask once for `slots` tokens; False when the limit refuses.

        Raises:
            _ServerBusy: The server could not answer (a locked database); the
                request may have to be made again, after a fresh read.
        """
        try:
            await self.client.increment_concurrency_slots(
                names=[self.name], slots=slots, mode="rate_limit"
            )
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            if (
                isinstance(exc, httpx.HTTPStatusError)
                and exc.response.status_code == 423
            ):
                return False
            if _busy(exc):
                raise _ServerBusy(str(exc)) from exc
            raise
        return True


class _ServerBusy(Exception):
    """The Prefect server did not answer a request for tokens this time."""


# Answers and failures after which a request is worth making again: a locked
# SQLite database answers 503. The pacer asks again within a tenth of a second
# of getting the answer, and reads the bucket first.
_BUSY_STATUSES = frozenset({429, 502, 503, 504})
_BUSY_ATTEMPTS = 12


async def _refuse_busy_answer(response: httpx.Response) -> None:
    """Raise on a busy server's answer before Prefect's client sleeps on it."""
    if response.status_code in _BUSY_STATUSES:
        raise _ServerBusy(
            f"Prefect answered {response.status_code} to {response.request.method} "
            f"{response.request.url.path}"
        )


def _busy(exc: Exception) -> bool:
    if isinstance(exc, _ServerBusy):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in _BUSY_STATUSES
    return isinstance(exc, httpx.TransportError)


def _busy_pause(attempt: int) -> float:
    return min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


class CallPacer:
    """Lets the calls of one from-number go at its CPS, shared through Prefect.

    Lanes ready to call offer a turn (a future); the pacer resolves turns one by
    one, at most `cps` in any second, together with every other process that
    draws from the same Prefect rate limit. See the module's docstring for how.

    Args:
        cps: Calls per second to reach and never exceed.
        limit_name: The Prefect rate limit to draw from, whose limit and decay are
            `cps`; None paces this process alone.
        key: What a resolved turn carries: the from-number, for a rotation.
        logger: Where warnings about the limit go.
    """

    def __init__(
        self,
        cps: int,
        limit_name: str | None,
        *,
        key: str = "",
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Clock = time.time,
    ) -> None:
        if cps < 1:
            raise RetellConfigurationError(f"cps must be at least 1, not {cps}")
        self.cps = cps
        self.limit_name = limit_name
        self.key = key
        self.stats = PacerStats()
        self._logger = logger or logging.getLogger(__name__)
        self._clock = clock
        self._waiting: collections.deque[asyncio.Future[Turn]] = collections.deque()
        self._arrived = asyncio.Event()
        # Set when a call of this process gets its answer.
        self._answer = asyncio.Event()
        # This process's latest calls: when each left, was answered (-inf until
        # then), and the slot it was released for; one mutable entry per call.
        self._released: collections.deque[list[float]] = collections.deque(maxlen=cps)
        # This process's last grant: the span of `updated` in which the last
        # write can only be that grant, and the tokens it stored.
        self._held: tuple[float, float] | None = None
        self._stored = 0
        self._ask_seconds = 0.01
        self._read_seconds = 0.01
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._warned: set[str] = set()

    async def wait_turn(self) -> Turn:
        """Return when the next call may be created.

        Call `leaving()` on the turn as the create goes out and `answered()`
        once it has its answer, whatever the answer: the pacer holds the call
        `cps` places later until then.
        """
        turn: asyncio.Future[Turn] = asyncio.get_running_loop().create_future()
        self.offer(turn)
        return await turn

    def offer(self, turn: asyncio.Future[Turn]) -> None:
        """Queue a lane's turn; it gets a `Turn` on `key` when the call may go.

        The same future may be offered to several pacers: the first to reach it
        resolves it, and the others pass it over.
        """
        if self._error is not None:
            if not turn.done():
                turn.set_exception(self._error)
            return
        self._waiting.append(turn)
        self._arrived.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop pacing; turns still waiting are left to their lanes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        try:
            if self.limit_name is None:
                while True:
                    await self._demand()
                    await self._hand_out(self._local_grant(self.cps))
            # The pacer retries a busy server itself, after a fresh read, rather
            # than let Prefect's client repeat a request up to five times over
            # 2, 4, 8... s. Even told not to retry, the client waits 2 s after a
            # 503 before handing it back; the response hook raises before that
            # wait. For this task's client only.
            hooks = {"event_hooks": {"response": [_refuse_busy_answer]}}
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
                async with get_client(httpx_settings=hooks) as client:
                    server = _LimitServer(client, self.limit_name, self._clock)
                    while True:
                        await self._demand()
                        grant = await self._take_share(server)
                        await self._hand_out(grant)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._error = exc
            while self._waiting:
                turn = self._waiting.popleft()
                if not turn.done():
                    turn.set_exception(exc)

    def _ready(self) -> int:
        while self._waiting and self._waiting[0].done():
            self._waiting.popleft()
        return sum(1 for turn in self._waiting if not turn.done())

    async def _demand(self) -> None:
        while not self._ready():
            self._arrived.clear()
            await self._arrived.wait()

    def _local_grant(self, rate: float) -> _Grant:
        now = self._clock()
        size = max(1, int(rate))
        return _Grant(now, now, size, float(rate), float(rate), shared=False)

    async def _read(self, server: _LimitServer) -> _Bucket:
        started = self._clock()
        bucket = await server.read()
        self._read_seconds = _average(self._read_seconds, bucket.answered - started)
        return bucket

    async def _take_share(self, server: _LimitServer) -> _Grant:
        """Wait until the bucket is empty and take all of it, or pace alone."""
        # When this process first found the bucket empty after its last write:
        # reading it again must not move that moment later.
        empty_seen: tuple[float, float] | None = None
        busy = 0
        while True:
            bucket = await self._read(server)
            if bucket.left == 0 and (
                empty_seen is None or empty_seen[0] != bucket.updated
            ):
                empty_seen = (bucket.updated, bucket.answered)
            usable = self._usable(bucket)
            if usable is not None:
                if usable == 0:
                    await asyncio.sleep(_PAUSED_POLL_SECONDS)
                    continue
                return self._local_grant(usable)
            rate = min(float(self.cps), float(bucket.limit), bucket.decay)
            own = self._holds(bucket)
            drained = bucket.drained_by(
                empty_seen[1]
                if empty_seen and empty_seen[0] == bucket.updated
                else math.inf
            )
            if own:
                drained = bucket.updated + self._stored / bucket.decay
            ask_at = drained + _ROUNDING_SECONDS
            if not own:
                jitter = random.uniform(0, _HANDOVER_JITTER_SECONDS)
                ask_at += _HANDOVER_SECONDS + jitter
            self._answer.clear()
            ask_at = max(ask_at, self._ask_moment(bucket, rate))
            if ask_at == math.inf:
                # The next call must wait for an earlier one's answer first.
                await _wait(self._answer, _PAUSED_POLL_SECONDS)
                continue
            wait = ask_at - self._clock()
            # No process that follows these rules asks for a bucket this one
            # holds before the handover margin has passed, so an older read is
            # good enough until then; otherwise read again just before asking.
            race_free = own and ask_at < drained + _HANDOVER_SECONDS / 2
            if not race_free and wait > _FRESH_READ_SECONDS:
                await asyncio.sleep(max(0.0, wait - self._read_seconds - 0.005))
                continue
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                grant = await self._ask(server, bucket, rate)
            except _ServerBusy:
                busy += 1
                if busy >= _BUSY_ATTEMPTS:
                    raise
                await asyncio.sleep(_busy_pause(busy - 1))
                continue
            busy = 0
            self._logger.debug(
                "Asked %r for %d (drained by %.3f, own %s): %s",
                bucket.name,
                bucket.limit,
                drained,
                own,
                grant,
            )
            if grant is not None:
                return grant
            self.stats.refused += 1
            await asyncio.sleep(random.uniform(0, _REFUSAL_BACKOFF_SECONDS))

    def _ask_moment(self, bucket: _Bucket, rate: float) -> float:
        """When to ask for the next share, as far as this process's calls go.

        Just in time for the next call the record allows, and late enough that
        the share's deadline falls after the last call the record plans for
        it: a share asked for earlier would start its deadline earlier, for
        calls that cannot go yet.
        """
        size = max(1, min(bucket.limit, int(rate * bucket.limit / bucket.decay)))
        planned = self._planned(rate, size, self._clock())
        if planned[0] == math.inf:
            return math.inf
        # Calls that wait for answers not in yet are not planned for.
        known = [moment for moment in planned if moment != math.inf]
        in_time = known[0] - self._ask_seconds
        fitting = (
            known[-1]
            - (len(known) - 1) / bucket.decay
            - _LATE_ALLOWANCE_SECONDS
            + _FIT_MARGIN_SECONDS
        )
        return max(in_time, fitting)

    def _planned(self, rate: float, size: int, not_before: float) -> list[float]:
        """When the next `size` calls could leave by the record."""
        record = collections.deque(self._released, maxlen=self._released.maxlen)
        planned: list[float] = []
        for _ in range(size):
            moment = max(not_before, self._next_release(rate, record))
            planned.append(moment)
            record.append([moment, -math.inf, moment])
        return planned

    async def _ask(
        self, server: _LimitServer, bucket: _Bucket, rate: float
    ) -> _Grant | None:
        """Ask once for the whole bucket; the grant, or None when refused."""
        sent = self._clock()
        taken = await server.take(bucket.limit)
        received = self._clock()
        self._ask_seconds = _average(self._ask_seconds, received - sent)
        if not taken:
            return None
        self.stats.grants += 1
        start = sent
        if received - sent > _SLOW_GRANT_SECONDS:
            # A slow answer (a busy database) leaves the grant's moment unsure,
            # and the deadline would waste the share: read the grant's own time.
            after = await self._read(server)
            if sent <= after.updated <= received:
                start = after.updated
        # Another grant can only come after this share has drained.
        self._held = (
            start - _CLOCK_TOLERANCE_SECONDS,
            start + bucket.limit / bucket.decay,
        )
        self._stored = bucket.limit
        return _Grant(start, received, bucket.limit, bucket.decay, rate)

    def _usable(self, bucket: _Bucket) -> float | None:
        """None when the bucket is to be shared; else the rate to pace alone at.

        An inactive limit throttles nothing in Prefect: the pacer keeps the CPS
        on its own rather than stop. A limit set to 0 pauses dialling.
        """
        if bucket.decay <= 0:
            raise RetellConfigurationError(
                f"Prefect limit {bucket.name!r} no longer decays, so it cannot pace "
                "calls; give it a slot decay per second. No further calls are placed."
            )
        if bucket.limit < 1:
            self._warn_once("paused", "Prefect limit %r is 0: dialling paused")
            return 0.0
        if not bucket.active:
            self._warn_once("inactive", "Prefect limit %r is inactive: pacing alone")
            return float(self.cps)
        return None

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self._logger.warning(message, self.limit_name)

    def _holds(self, bucket: _Bucket) -> bool:
        """Whether the last write to the bucket was this process's own.

        Another process's grant can only come once this process's share has
        drained, plus the handover margin, and a refusal writes nothing; so a
        write within the span noted at this process's last write is its own.
        """
        if self._held is None:
            return False
        since, until = self._held
        return since <= bucket.updated < until

    def _next_release(
        self, rate: float, record: collections.deque[list[float]] | None = None
    ) -> float:
        """The earliest moment the next call may leave by this process's record.

        Calls are spaced `1 / rate` apart from their slots, and any `rate + 1`
        of them span a second from when Retell received the first. Retell
        counts a call somewhere between its leaving and its answer, so the
        answer is used: then no second holds more than `rate` of this process's
        calls, however long the request waited on the way (a busy server queues
        it, a retried create is counted late). One exception: when answers are
        usually slower than _ANSWER_CAP_SECONDS (a far API, whose work comes
        after it has the request), an answer no slower than usual is taken as
        received _ANSWER_CAP_SECONDS after leaving, as waiting for it would cost
        the whole round trip every second. While the call `rate` places back
        has no answer, the next call waits for it (infinity here).
        """
        record = self._released if record is None else record
        if not record:
            return -math.inf
        moment = record[-1][2] + 1.0 / rate
        count = max(1, int(rate))
        if len(record) >= count:
            moment = max(moment, _received(record[-count], record) + 1.0)
        return moment

    async def _hand_out(self, grant: _Grant) -> None:
        """Resolve waiting turns at the grant's pace until it is used or expires.

        A turn no lane takes within its interval expires: spent later it could
        fall into the next share. The share's unused tokens are not given back:
        a give-back that a busy database delays could land in another
        process's share, shorten it, and let two processes call at once.
        """
        tokens = grant.size
        deadline = grant.deadline
        released_before = self.stats.released
        # Slots before this moment have passed unused.
        passed = grant.received
        while tokens:
            self._answer.clear()
            slot = max(passed, self._next_release(grant.rate))
            if slot == math.inf:
                # A call this one must follow by a second has no answer yet.
                if not await _wait(self._answer, deadline - self._clock()):
                    break
                continue
            if slot > deadline:
                break
            delay = slot - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            turn = await self._claim(until=min(deadline, slot + 1.0 / grant.rate))
            tokens -= 1
            if turn is None:
                self.stats.expired += 1
                passed = slot + 1.0 / grant.rate
                continue
            # The next call is spaced from this one's slot, not from when the
            # loop got round to it, so that wake-up delays do not add up.
            left = [self._clock(), -math.inf, slot]
            self._released.append(left)
            self.stats.released += 1
            turn.set_result(Turn(self.key, left, self._clock, self._answer.set))
        self.stats.expired += tokens
        self._logger.debug(
            "Share of %d from %.3f: %d unused, %d still waiting",
            grant.size,
            grant.received,
            grant.size - self.stats.released + released_before,
            self._ready(),
        )

    async def _claim(self, until: float) -> asyncio.Future[Turn] | None:
        """The first turn still waiting, waiting for one until `until`."""
        while True:
            while self._waiting:
                turn = self._waiting.popleft()
                if not turn.done():
                    return turn
            remaining = until - self._clock()
            if remaining <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return None


def _received(entry: list[float], record: collections.deque[list[float]]) -> float:
    """The latest moment Retell is taken to have received a call; see
    `CallPacer._next_release`."""
    left, answered, _ = entry
    if answered == -math.inf:
        # Not answered yet: Retell may count it at any moment from now on.
        return math.inf
    took = answered - left
    usual = statistics.median(
        each[1] - each[0] for each in record if each[1] != -math.inf
    )
    if _ANSWER_CAP_SECONDS < took <= 1.5 * usual:
        return left + _ANSWER_CAP_SECONDS
    return answered


class Turn:
    """A lane's turn to create one call, from the number `number`.

    `record` is the pacer's entry for the call: when it left, was answered and
    was released.

    Call `leaving()` just before the request goes out and `answered()` when its
    answer is in. A busy event loop may run the lane some milliseconds after its
    turn came, and a slow answer means Retell may have counted the call late:
    the pacer spaces the next calls from what really happened.
    """

    def __init__(
        self,
        number: str,
        record: list[float],
        clock: Clock,
        on_answer: Callable[[], None],
    ) -> None:
        self.number = number
        self._record = record
        self._clock = clock
        self._on_answer = on_answer

    def leaving(self) -> None:
        """Note that the call is being created now."""
        self._record[0] = max(self._record[0], self._clock())

    def answered(self) -> None:
        """Note that the create request has its answer."""
        self._record[1] = self._clock()
        self._on_answer()


class PacerRotation:
    """Gives each call the turn of whichever of its from-numbers frees first.

    Each number has its own pacer and Prefect rate limit, so the campaign's
    rate is the sum of its numbers' rates.
    """

    def __init__(self, pacers: dict[str, CallPacer]) -> None:
        self.pacers = pacers

    @property
    def cps(self) -> int:
        """Calls per second of all numbers together."""
        return sum(pacer.cps for pacer in self.pacers.values())

    async def turn(self, numbers: list[str]) -> Turn:
        """Wait for a turn on any of `numbers`; it names the number it is on."""
        turn: asyncio.Future[Turn] = asyncio.get_running_loop().create_future()
        for number in numbers:
            self.pacers[number].offer(turn)
        return await turn

    async def close(self) -> None:
        """Stop every pacer."""
        for pacer in self.pacers.values():
            await pacer.close()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` was set within `seconds` (infinite: no limit)."""
    if seconds <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), None if seconds == math.inf else seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _average(previous: float, sample: float) -> float:
    """A moving average of round-trip times, quick to follow a slower server."""
    return 0.7 * previous + 0.3 * sample


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
                # after a minute rather than five. Known shortcoming: only where
                # the server runs its lease repossessor; Prefect's embedded and
                # test servers do not, and keep a killed run's slots held.
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
