"""CallPoller: many live calls followed with few requests, over real HTTP.

The sandbox runs TIME_SCALE times faster than Retell, and each poller here runs its
schedule at the same scale, so request counts are those a real campaign would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from conftest import TIME_SCALE
from prefect_retell import (
    RetellAuthenticationError,
    RetellCallTimeoutError,
    RetellError,
    RetellServerError,
    RetellValidationError,
)
from prefect_retell.client import RetellClient, RetryPolicy
from prefect_retell.polling import CallPoller, PollSchedule
from prefect_retell.sandbox import (
    Fault,
    Outcome,
    SandboxConfig,
    SandboxServer,
    serve_sandbox,
)

TELNYX = "+16505550101"
LIST_ROUTE = "POST /v3/list-calls"
GET_ROUTE = "GET /v2/get-call/{call_id}"
STOP_ROUTE = "POST /v2/stop-call/{call_id}"
# Retell's real-time schedule, run as fast as the sandbox runs calls.
SCHEDULE = PollSchedule.with_min_gap(PollSchedule.min_gap_seconds * TIME_SCALE)
# Simulated seconds: a call that rings 5 s and talks 55 s lasts about a minute.
MINUTE_CALL = Outcome(kind="answered", ring_seconds=5, talk_seconds=55)
# Guards against a hang only; no test here measures time.
HANG_GUARD_SECONDS = 30.0


@pytest.fixture(scope="module")
def roomy_server() -> Iterator[SandboxServer]:
    """A sandbox whose account may have 500 calls live at once."""
    config = SandboxConfig(time_scale=TIME_SCALE, concurrency_limit=500)
    with serve_sandbox(config) as server:
        yield server


@pytest.fixture
def server(roomy_server: SandboxServer) -> SandboxServer:
    """The roomy sandbox, cleared, with the Telnyx number at 500 calls a second
    so that placing the calls takes no time."""
    roomy_server.sandbox.reset()
    roomy_server.sandbox.set_cps(TELNYX, 500)
    return roomy_server


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[RetellClient]:
    """A client for the sandbox that retries at once, without jitter."""
    retry = RetryPolicy(
        max_attempts=3,
        initial_backoff_seconds=0.01,
        max_backoff_seconds=0.02,
        jitter=lambda: 1.0,
    )
    async with RetellClient(
        server.sandbox.config.api_key, base_url=server.base_url, retry=retry
    ) as http:
        yield http


def number(index: int) -> str:
    return f"+1415555{index:04d}"


async def place(
    client: RetellClient, server: SandboxServer, count: int, outcome: Outcome
) -> list[str]:
    """Place `count` calls with the same outcome; return their ids."""
    ids = []
    for index in range(count):
        server.sandbox.set_outcome(number(index), outcome)
        call = await client.create_phone_call(
            from_number=TELNYX, to_number=number(index)
        )
        ids.append(call.call_id)
    return ids


async def follow_all(
    poller: CallPoller, ids: list[str], timeout_seconds: float = 10.0
) -> list:
    waits = (poller.wait(call_id, timeout_seconds=timeout_seconds) for call_id in ids)
    return await asyncio.wait_for(
        asyncio.gather(*waits, return_exceptions=True), HANG_GUARD_SECONDS
    )


def reads(server: SandboxServer) -> dict[str, int]:
    requests = server.sandbox.stats()["requests"]
    return {route: requests.get(route, 0) for route in (LIST_ROUTE, GET_ROUTE)}


async def test_many_calls_cost_far_fewer_reads_than_calls(client, server):
    """200 one-minute calls followed together take fewer reads than a quarter of
    the calls, every call reaching its end."""
    ids = await place(client, server, 200, MINUTE_CALL)

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        calls = await follow_all(poller, ids)

    assert [(call.call_id, call.call_status) for call in calls] == [
        (call_id, "ended") for call_id in ids
    ]
    counts = reads(server)
    assert counts[LIST_ROUTE] > 0
    assert sum(counts.values()) < len(ids) / 4


async def test_minute_call_alone_costs_two_reads(client, server):
    """A one-minute call followed on its own is read twice: three requests in all
    with its creation."""
    [call_id] = await place(client, server, 1, MINUTE_CALL)

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        [call] = await follow_all(poller, [call_id])

    assert call.call_status == "ended"
    assert sum(reads(server).values()) == 2


async def test_final_state_is_the_calls_own(client, server):
    """The returned call carries the status, reason and duration Retell reports."""
    busy = Outcome(kind="busy", ring_seconds=4)
    server.sandbox.set_outcome(number(1), busy)
    ids = await place(client, server, 1, MINUTE_CALL)
    busy_call = await client.create_phone_call(from_number=TELNYX, to_number=number(1))

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        answered, not_connected = await follow_all(poller, [ids[0], busy_call.call_id])

    recorded = server.sandbox.get_call(ids[0])
    assert (answered.call_status, answered.duration_ms) == ("ended", 55_000)
    assert answered.disconnection_reason == recorded["disconnection_reason"]
    assert (not_connected.call_status, not_connected.disconnection_reason) == (
        "not_connected",
        "dial_busy",
    )


async def test_timeout_raises_follow_calls_error(client, server):
    """A call live past the deadline raises RetellCallTimeoutError, not stopped."""
    [call_id] = await place(client, server, 1, Outcome(kind="stuck_ongoing"))

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        with pytest.raises(RetellCallTimeoutError) as caught:
            await poller.wait(call_id, timeout_seconds=0.5)

    assert str(caught.value) == (
        f"Call {call_id} did not reach a final status in time; last status "
        "ongoing. It was not dialled again; read it later with get_call."
    )
    assert (caught.value.call_id, caught.value.last_status) == (call_id, "ongoing")
    assert server.sandbox.stats()["requests"].get(STOP_ROUTE, 0) == 0


async def test_timeout_with_stop_stops_the_call(client, server):
    """With stop_on_timeout, a call live at the deadline is stopped once."""
    [call_id] = await place(client, server, 1, Outcome(kind="stuck_ongoing"))

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        with pytest.raises(RetellCallTimeoutError) as caught:
            await poller.wait(call_id, timeout_seconds=0.5, stop_on_timeout=True)

    assert str(caught.value) == (
        f"Call {call_id} did not end in time (last status ongoing); it was "
        "stopped and is now ended"
    )
    assert server.sandbox.stats()["requests"][STOP_ROUTE] == 1


async def test_failed_list_request_is_retried(client, server):
    """Two list-calls answers of 503 are retried by the client; every call ends."""
    ids = await place(client, server, 5, MINUTE_CALL)
    server.sandbox.add_fault(
        Fault(endpoint="list-calls", action="error", status=503, times=2)
    )

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        calls = await follow_all(poller, ids)

    assert {call.call_status for call in calls} == {"ended"}
    stats = server.sandbox.stats()
    assert stats["responses"]["503"] == 2
    assert stats["requests"][LIST_ROUTE] >= 3


async def test_persistent_list_failure_reaches_the_waiters(client, server):
    """When list-calls keeps failing, waiters get the error long before their
    deadline instead of waiting on."""
    ids = await place(client, server, 3, Outcome(kind="stuck_ongoing"))
    server.sandbox.add_fault(
        Fault(endpoint="list-calls", action="error", status=503, times=0)
    )

    async with CallPoller(client, schedule=SCHEDULE, max_failed_looks=2) as poller:
        outcomes = await follow_all(poller, ids, timeout_seconds=3600)

    assert [type(outcome) for outcome in outcomes] == [RetellServerError] * 3
    assert str(outcomes[0]) == (
        "POST /v3/list-calls answered 503 (server error): Service Unavailable "
        "(sandbox fault)."
    )


async def test_calls_missing_from_the_list_are_read_with_get_call(client):
    """When list-calls lags behind, calls it leaves out are read with get-call."""
    config = SandboxConfig(time_scale=TIME_SCALE, list_lag_seconds=3600)
    with serve_sandbox(config) as lagging:
        async with RetellClient(
            config.api_key, base_url=lagging.base_url
        ) as lag_client:
            ids = await place(lag_client, lagging, 3, MINUTE_CALL)
            async with CallPoller(lag_client, schedule=SCHEDULE) as poller:
                calls = await follow_all(poller, ids)
        counts = reads(lagging)

    assert {call.call_status for call in calls} == {"ended"}
    assert counts[LIST_ROUTE] >= 1
    assert counts[GET_ROUTE] >= 3


async def test_a_refused_batch_is_read_call_by_call(client, server):
    """list-calls refusing a batch (400) leads to get-call for each of its calls;
    only the call that get-call refuses too fails."""
    ids = await place(client, server, 3, MINUTE_CALL)
    for endpoint in ("list-calls", "get-call"):
        server.sandbox.add_fault(
            Fault(
                endpoint=endpoint,
                action="error",
                status=400,
                to_number=number(0),
                times=0,
            )
        )

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        bad, *good = await follow_all(poller, ids)

    assert isinstance(bad, RetellValidationError)
    assert str(bad) == (
        f"GET /v2/get-call/{ids[0]} answered 400 (invalid request): Bad Request "
        "(sandbox fault)."
    )
    assert [call.call_status for call in good] == ["ended", "ended"]


async def test_refused_key_fails_every_waiter(client, server):
    """A 401 on a batch read ends every wait with the authentication error."""
    ids = await place(client, server, 4, Outcome(kind="stuck_ongoing"))
    server.sandbox.add_fault(
        Fault(endpoint="list-calls", action="error", status=401, times=0)
    )

    async with CallPoller(client, schedule=SCHEDULE) as poller:
        outcomes = await follow_all(poller, ids, timeout_seconds=3600)

    assert {type(outcome) for outcome in outcomes} == {RetellAuthenticationError}
    assert poller.following == 0


async def test_closing_the_poller_ends_the_waits(client, server):
    """Calls still followed when the poller closes get an error saying so."""
    [call_id] = await place(client, server, 1, Outcome(kind="stuck_ongoing"))
    poller = CallPoller(client, schedule=SCHEDULE)
    waiting = asyncio.create_task(poller.wait(call_id, timeout_seconds=3600))
    await asyncio.sleep(0.1)

    await poller.aclose()

    with pytest.raises(RetellError) as caught:
        await asyncio.wait_for(waiting, HANG_GUARD_SECONDS)
    assert str(caught.value) == (
        f"Stopped following call {call_id}: the poller was closed; the call was "
        "not stopped. Read it later with get_call."
    )


def test_schedule_spaces_looks_by_age():
    """Looks come at age × 9 after the first, between the shortest and longest gap."""
    schedule = PollSchedule()

    gaps = [schedule.gap_after(age) for age in (0.1, 10, 90, 1000)]

    assert gaps == [2.0, 80.0, 120.0, 120.0]
    assert PollSchedule.with_min_gap(0.5) == PollSchedule(
        min_gap_seconds=0.5,
        first_look_seconds=2.5,
        max_gap_seconds=30.0,
        list_lag_seconds=7.5,
    )


def test_schedule_refuses_a_factor_that_never_grows():
    """An age_factor of 1 or less would look at a call at the same age forever."""
    with pytest.raises(ValueError, match="age_factor above 1"):
        PollSchedule(age_factor=1.0)
