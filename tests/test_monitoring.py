"""Monitoring modes: following calls by Prefect events, by polling, or not at all.

The watcher is tested against the session's real Prefect API: events are emitted
the way the webhook receiver emits them and read back through Prefect's own
event stream. The whole path from the sandbox's webhooks through the receiver is
tested in test_events_mode.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import uuid4

import pytest
from prefect.events import emit_event

from flow_support import (
    CREATE_ROUTE,
    GET_CALL_ROUTE,
    TWILIO,
    credentials_for,
    run_campaign,
)
from prefect_retell import outbound_call
from prefect_retell.monitoring import CallEventWatcher, call_from_event
from prefect_retell.sandbox import Outcome


def _emit_final(call_id: str, status: str = "ended", **payload) -> None:
    payload = {
        "call_id": call_id,
        "call_status": status,
        "disconnection_reason": "user_hangup",
        "duration_ms": 42_000,
        "call_cost": {"combined_cost": 7.5},
        **payload,
    }
    emit_event(
        event="retell.call.ended",
        resource={"prefect.resource.id": f"retell.call.{call_id}"},
        payload=payload,
    )


async def test_watcher_hands_a_call_its_final_event(prefect_server):
    """A call's `retell.call.ended` event ends its wait with status and reason."""
    call_id = f"call_{uuid4().hex}"
    async with CallEventWatcher() as watcher:
        waiting = asyncio.create_task(watcher.wait(call_id, timeout_seconds=30))
        await asyncio.sleep(0.2)
        _emit_final(call_id, disconnection_reason="dial_busy", status="not_connected")
        call = await waiting
    assert call is not None
    assert (call.call_id, call.call_status, call.disconnection_reason) == (
        call_id,
        "not_connected",
        "dial_busy",
    )
    assert call.call_cost.combined_cost == 7.5


async def test_watcher_keeps_an_event_that_came_before_the_wait(prefect_server):
    """An event of this campaign that arrives before its wait is not lost."""
    call_id = f"call_{uuid4().hex}"
    async with CallEventWatcher(campaign_id="camp-early") as watcher:
        _emit_final(call_id, metadata={"prefect_retell_campaign": "camp-early"})
        deadline = time.monotonic() + 30
        while watcher.events_received == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        call = await watcher.wait(call_id, timeout_seconds=0.1)
    assert call is not None and call.call_status == "ended"


async def test_watcher_times_out_without_an_event(prefect_server):
    """A call whose event never comes gets None at its deadline, not a hang."""
    async with CallEventWatcher() as watcher:
        started = time.monotonic()
        call = await watcher.wait(f"call_{uuid4().hex}", timeout_seconds=0.5)
    assert call is None
    assert time.monotonic() - started < 10


async def test_watcher_ignores_events_that_are_not_final(prefect_server):
    """A `retell.call.started` event, or an ended one still live, ends no wait."""
    call_id = f"call_{uuid4().hex}"
    async with CallEventWatcher() as watcher:
        emit_event(
            event="retell.call.started",
            resource={"prefect.resource.id": f"retell.call.{call_id}"},
            payload={"call_id": call_id, "call_status": "ongoing"},
        )
        _emit_final(call_id, status="ongoing")
        call = await watcher.wait(call_id, timeout_seconds=1.5)
    assert call is None


def test_call_from_event_refuses_other_events():
    """Only final call events become calls."""
    from prefect.events.schemas.events import Event, Resource

    started = Event(
        event="retell.call.started",
        resource=Resource({"prefect.resource.id": "retell.call.c1"}),
        payload={"call_id": "c1", "call_status": "ongoing"},
    )
    assert call_from_event(started) is None


# --- none: fire and forget -------------------------------------------------------


async def test_none_mode_places_every_call_and_follows_none(
    prefect_server, sandbox, caplog
):
    """`monitor="none"`: three calls created, none polled, rows left registered,
    and the progress line does not call them finished."""
    caplog.set_level(logging.INFO, logger="prefect")
    contacts = [{"phone": f"+1415555{n:04d}"} for n in (301, 302, 303)]
    run = await run_campaign(
        sandbox, contacts=contacts, from_number=TWILIO, cps=5, monitor="none"
    )
    progress = [m for m in caplog.messages if m.startswith("Placed ")]
    assert progress[-1] == "Placed 3 of 3 calls (not followed: monitor none)"
    assert not [m for m in progress if "finished" in m]
    assert run.requests.get(CREATE_ROUTE) == 3
    assert run.requests.get(GET_CALL_ROUTE, 0) == 0
    assert {row.call_status for row in run.result.rows} == {"registered"}
    assert run.result.counts == {"called": 3}


async def test_outbound_call_none_returns_the_created_call(prefect_server, sandbox):
    """outbound_call with `monitor="none"` returns at once, the call registered."""
    call = await outbound_call(
        TWILIO,
        "+14155550310",
        credentials=credentials_for(sandbox),
        monitor="none",
    )
    assert call.call_status == "registered"
    assert sandbox.sandbox.stats()["requests"].get(GET_CALL_ROUTE, 0) == 0


# --- events, when no event ever comes ------------------------------------------


@pytest.mark.parametrize("outcome", ["answered", "busy"])
async def test_events_mode_without_events_reads_each_call_once(
    prefect_server, sandbox, outcome
):
    """No receiver, so no event: each call is read once from Retell at its deadline.

    The calls end long before the deadline (1.5 s; a 60-s call lasts 0.3 s at the
    tests' time scale), so the single read finds them final.
    """
    numbers = [f"+1415555{n:04d}" for n in (320, 321)]
    for number in numbers:
        sandbox.sandbox.set_outcome(
            number,
            Outcome(kind="answered", ring_seconds=5, talk_seconds=60)
            if outcome == "answered"
            else Outcome(kind="busy", ring_seconds=5),
        )
    run = await run_campaign(
        sandbox,
        contacts=[{"phone": number} for number in numbers],
        from_number=TWILIO,
        cps=5,
        monitor="events",
        call_timeout_seconds=1.5,
    )
    assert run.requests.get(GET_CALL_ROUTE) == 2
    statuses = {row.call_status for row in run.result.rows}
    assert statuses == ({"ended"} if outcome == "answered" else {"not_connected"})


async def test_outbound_call_events_mode_falls_back_to_one_read(
    prefect_server, sandbox
):
    """outbound_call in events mode with no event: one get-call at the deadline."""
    sandbox.sandbox.set_outcome(
        "+14155550330", Outcome(kind="answered", ring_seconds=5, talk_seconds=30)
    )
    call = await outbound_call(
        TWILIO,
        "+14155550330",
        credentials=credentials_for(sandbox),
        monitor="events",
        timeout_seconds=1.5,
    )
    assert call.call_status == "ended"
    assert sandbox.sandbox.stats()["requests"].get(GET_CALL_ROUTE) == 1
