"""Following calls to their end by the Prefect events that Retell's webhooks become.

The webhook receiver (`prefect-retell webhooks serve`) turns each signed Retell
webhook into a Prefect event on the resource `retell.call.<call_id>`. A flow that
would otherwise poll `get-call` for every live call can instead subscribe to those
events once and be told when each of its calls ends: one subscription for a whole
campaign, no request per call while the events arrive.

`CallEventWatcher` is that subscription. It is opened before the first call is
placed (Prefect's subscriber also replays the minute before it connected, so an
event that raced the subscription is not lost) and hands each final event to the
coroutine waiting for that call. A call whose event never comes times out, and
the caller then reads it once with `get-call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import Event

from prefect_retell.models import CallAnalysis, PhoneCall, is_final_status

__all__ = ["FINAL_CALL_EVENTS", "CallEventWatcher", "MonitorMode", "call_from_event"]

MonitorMode = Literal["poll", "events", "none"]
"""How a flow follows the calls it placed.

- `poll`: read the live calls from Retell until each is final;
- `events`: wait for each call's final Prefect event, and read a call from
  Retell only when its event has not come by the deadline;
- `none`: place the calls and return at once (fire and forget).
"""

FINAL_CALL_EVENTS = ("retell.call.ended", "retell.call.analyzed")
"""The events that carry a call's final status.

`retell.call.ended` comes for every call, connected or not; `retell.call.analyzed`
comes later with the analysis, and stands in when the first was lost.
"""

_CALL_RESOURCE_PREFIX = "retell.call."

# Unclaimed final events are kept for calls whose waiter has not registered yet;
# past this many (other campaigns' calls on the same account) the oldest go.
_MAX_UNCLAIMED = 50_000


def call_from_event(event: Event) -> PhoneCall | None:
    """The call that a final Prefect call event describes, or None if it is not one.

    The event payload holds the fields a result needs: status, disconnection
    reason, duration, cost, analysis and metadata. The person's number in it is
    masked, so the returned call carries no phone numbers.
    """
    if event.event not in FINAL_CALL_EVENTS:
        return None
    payload = event.payload or {}
    call_id = payload.get("call_id") or event.resource.id.removeprefix(
        _CALL_RESOURCE_PREFIX
    )
    status = payload.get("call_status")
    if not call_id or not isinstance(status, str) or not is_final_status(status):
        return None
    fields: dict[str, Any] = {
        "call_id": call_id,
        "call_status": status,
        "disconnection_reason": payload.get("disconnection_reason"),
        "duration_ms": payload.get("duration_ms"),
        "direction": payload.get("direction"),
        "metadata": payload.get("metadata"),
        "call_analysis": payload.get("call_analysis"),
        "call_cost": payload.get("call_cost"),
    }
    return PhoneCall.model_validate({k: v for k, v in fields.items() if v is not None})


class CallEventWatcher:
    """One subscription to Retell call events, shared by every call of a flow.

    Args:
        campaign_id: Keep unclaimed events only for calls whose metadata names
            this campaign (`prefect_retell_campaign`); None keeps any call's.
        logger: Where to report the subscription's state.

    Example:
        ```python
        async with CallEventWatcher() as watcher:
            call = await create_call(...)
            final = await watcher.wait(call.call_id, timeout_seconds=600)
        ```
    """

    def __init__(
        self,
        *,
        campaign_id: str | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.logger = logger or logging.getLogger(__name__)
        self.events_received = 0
        self.analyses: dict[str, CallAnalysis] = {}
        self._waiters: dict[str, asyncio.Future[PhoneCall]] = {}
        self._unclaimed: dict[str, PhoneCall] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscriber: Any = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> CallEventWatcher:
        event_filter = EventFilter(
            event=EventNameFilter(name=list(FINAL_CALL_EVENTS)),
            resource=EventResourceFilter(id_prefix=[_CALL_RESOURCE_PREFIX]),
        )
        self._subscriber = get_events_subscriber(filter=event_filter)
        await self._subscriber.__aenter__()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                await self._subscriber.__aexit__(None, None, None)
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    async def wait(self, call_id: str, *, timeout_seconds: float) -> PhoneCall | None:
        """The call once its final event arrives, or None at the deadline.

        Raises:
            RuntimeError: The subscription ended for good (the Prefect API was
                unreachable through every reconnection); the caller should poll.
        """
        if call_id in self._unclaimed:
            return self._unclaimed.pop(call_id)
        if self._failure is not None:
            raise RuntimeError("the Prefect event subscription ended") from (
                self._failure
            )
        waiter = self._waiters.get(call_id)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[call_id] = waiter
        try:
            return await asyncio.wait_for(
                asyncio.shield(waiter), timeout=max(0.0, timeout_seconds)
            )
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(call_id) is waiter:
                del self._waiters[call_id]

    async def _read(self) -> None:
        try:
            async for event in self._subscriber:
                self._deliver(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of it
            self.logger.warning(
                "Lost the Prefect event subscription (%s); calls still waiting "
                "for their events are read from Retell instead",
                type(exc).__name__,
            )
            self._failure = exc
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(
                        RuntimeError("the Prefect event subscription ended")
                    )

    def _deliver(self, event: Event) -> None:
        call = call_from_event(event)
        if call is None:
            return
        self.events_received += 1
        if call.call_analysis is not None and self._is_ours(call):
            # Kept apart: `call_analyzed` often comes after the wait has ended.
            self.analyses[call.call_id] = call.call_analysis
            while len(self.analyses) > _MAX_UNCLAIMED:
                self.analyses.pop(next(iter(self.analyses)))
        waiter = self._waiters.get(call.call_id)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(call)
            return
        if not self._is_ours(call):
            return
        self._unclaimed.setdefault(call.call_id, call)
        while len(self._unclaimed) > _MAX_UNCLAIMED:
            self._unclaimed.pop(next(iter(self._unclaimed)))

    def _is_ours(self, call: PhoneCall) -> bool:
        if self.campaign_id is None:
            return True
        metadata = call.metadata or {}
        return metadata.get("prefect_retell_campaign") == self.campaign_id
