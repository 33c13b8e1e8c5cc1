"""Sending the sandbox's webhooks from the server's event loop.

The `WebhookDispatcher` lives as long as the server: the app's lifespan starts it
in uvicorn's event loop and stops it at shutdown. Its scheduler task sleeps until
the next queued event is due, or until the `Sandbox` says that a call was placed,
stopped or reset; it then takes the due deliveries and starts one task for each,
so a slow receiver holds up neither the API nor other calls' webhooks.

Order: the first attempts of one call's deliveries go out one after another, in
the order the events happened, each after the previous one was answered or timed
out. Retries do not hold the line, so a failing `call_started` does not keep
`call_ended` back, as with Retell. A delayed delivery joins the line when its
wait ends, and a held one right behind the call's next event, which is how they
arrive late.

Stopping cancels the scheduler and every delivery (held, waiting, in flight or
between retries) and closes the HTTP client: nothing is sent after the server
stops. A reset of the sandbox cancels the deliveries made before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from .state import Sandbox
from .webhooks import MAX_RETRIES, RETRY_BACKOFF_SECONDS, SIGNATURE_HEADER, Delivery

logger = logging.getLogger(__name__)

# The longest the scheduler sleeps without being woken: a Sandbox clock that a
# test steps by hand is noticed within it.
_TICK_SECONDS = 0.1


@dataclass(frozen=True)
class _Turn:
    """A delivery's place in its call's line: it goes once `previous` is done."""

    call_id: str
    previous: asyncio.Future[None] | None
    mine: asyncio.Future[None]


class WebhookDispatcher:
    """Sends a sandbox's due webhooks, with retries, from one event loop.

    Args:
        sandbox: The world whose webhooks it sends.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._timeout_seconds = sandbox.config.webhook_timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, list[Delivery]] = {}
        self._turns: dict[str, asyncio.Future[None]] = {}
        self._generation = sandbox.webhook_generation

    async def start(self) -> None:
        """Start the scheduler in the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            # No pool timeout: a burst of deliveries queues for a connection
            # instead of failing as if the receiver were slow.
            timeout=httpx.Timeout(self._timeout_seconds, pool=None),
            trust_env=False,
            follow_redirects=False,
        )
        self._scheduler = asyncio.create_task(
            self._schedule(), name="retell-sandbox-webhooks"
        )
        self._sandbox.watch_webhooks(self._nudge)

    async def stop(self) -> None:
        """Cancel every delivery and the scheduler, and close the HTTP client."""
        self._sandbox.watch_webhooks(None)
        self._scheduler.cancel()
        pending: list[asyncio.Task[None]] = [self._scheduler]
        while pending:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            pending = [task for task in self._tasks if not task.done()]
        self._held.clear()
        self._turns.clear()
        self._sandbox.abandon_webhooks()
        await self._client.aclose()

    def _nudge(self) -> None:
        # A closed loop means the server is gone: nothing is left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _schedule(self) -> None:
        try:
            while True:
                self._forget_stale()
                for delivery in self._sandbox.take_due_webhooks():
                    self._dispatch(delivery)
                await self._sleep(self._sandbox.seconds_until_next_webhook())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("The sandbox's webhook scheduler failed; it sends none")
            raise

    async def _sleep(self, due_in_seconds: float | None) -> None:
        timeout = _TICK_SECONDS
        if due_in_seconds is not None:
            timeout = min(due_in_seconds, _TICK_SECONDS)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _forget_stale(self) -> None:
        generation = self._sandbox.webhook_generation
        if generation == self._generation:
            return
        self._generation = generation
        for task in list(self._tasks):
            task.cancel()
        self._held.clear()
        # Tasks cancelled before they ran never end their turn; start afresh.
        self._turns.clear()

    def _dispatch(self, delivery: Delivery) -> None:
        if delivery.hold:
            self._held.setdefault(delivery.call_id, []).append(delivery)
        elif delivery.dropped:
            self._release_held(delivery.call_id)
        elif delivery.delay_seconds:
            self._spawn(self._deliver_late(delivery))
        else:
            self._spawn(self._deliver(delivery, self._queue_up(delivery.call_id)))
            self._release_held(delivery.call_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("A sandbox webhook delivery failed", exc_info=task.exception())

    def _queue_up(self, call_id: str) -> _Turn:
        """Take the next place in the line of the call's first attempts.

        Places are taken when a delivery is handed over, not when its task first
        runs, so the line follows the order of events exactly.
        """
        previous = self._turns.get(call_id)
        mine: asyncio.Future[None] = self._loop.create_future()
        self._turns[call_id] = mine
        return _Turn(call_id, previous, mine)

    def _release_held(self, call_id: str) -> None:
        """Queue the call's held deliveries right behind the one just queued.

        Known shortcoming: a held delivery waits for the call's next delivery,
        so if that event finds no URL (the webhook URL was removed in between),
        it stays held until the server stops or the sandbox is reset.
        """
        for delivery in self._held.pop(call_id, []):
            self._spawn(self._deliver(delivery, self._queue_up(call_id)))

    async def _deliver_late(self, delivery: Delivery) -> None:
        await asyncio.sleep(delivery.delay_seconds)
        turn = self._queue_up(delivery.call_id)
        self._release_held(delivery.call_id)
        await self._deliver(delivery, turn)

    async def _deliver(self, delivery: Delivery, turn: _Turn) -> None:
        try:
            if turn.previous is not None:
                await asyncio.wait([turn.previous])
            copies = [self._post(delivery) for _ in range(delivery.copies)]
            problems = await asyncio.gather(*copies)
        finally:
            self._end_turn(turn)
        await asyncio.gather(*(self._complete(delivery, p) for p in problems))

    def _end_turn(self, turn: _Turn) -> None:
        turn.mine.set_result(None)
        if self._turns.get(turn.call_id) is turn.mine:
            del self._turns[turn.call_id]

    async def _complete(self, delivery: Delivery, problem: str | None) -> None:
        try:
            if problem is not None:
                problem = await self._retry(delivery, problem)
            if problem is None:
                self._sandbox.record_webhook(delivery, "acknowledged")
                return
            self._sandbox.record_webhook(delivery, "failed")
            logger.warning(
                "Sandbox webhook %s of %s given up after %d retries: %s",
                delivery.event,
                delivery.call_id,
                MAX_RETRIES,
                problem,
            )
        finally:
            self._sandbox.settle_webhook(delivery)

    async def _retry(self, delivery: Delivery, problem: str) -> str | None:
        time_scale = self._sandbox.config.time_scale
        for retry in range(1, MAX_RETRIES + 1):
            wait = RETRY_BACKOFF_SECONDS * 2 ** (retry - 1) * time_scale
            logger.debug(
                "Sandbox webhook %s of %s %s; retry %d of %d in %.2f s",
                delivery.event,
                delivery.call_id,
                problem,
                retry,
                MAX_RETRIES,
                wait,
            )
            await asyncio.sleep(wait)
            problem_now = await self._post(delivery)
            if problem_now is None:
                return None
            problem = problem_now
        return problem

    async def _post(self, delivery: Delivery) -> str | None:
        """POST one copy once; return what went wrong, or None for a 2xx."""
        self._sandbox.record_webhook(delivery, "attempted")
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: self._sandbox.sign_webhook(delivery.body),
        }
        try:
            response = await self._client.post(
                delivery.url, content=delivery.body, headers=headers
            )
        except httpx.TimeoutException:
            return f"got no answer within {self._timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return f"could not be sent ({type(exc).__name__})"
        if 200 <= response.status_code < 300:
            return None
        return f"was answered {response.status_code}"
