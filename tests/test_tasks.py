"""The Prefect tasks, run for real under the test server against the sandbox."""

from __future__ import annotations

import time

import pytest

from flow_support import (
    CREATE_ROUTE,
    REMINDER_AGENT,
    SURVEY_AGENT,
    TWILIO,
    UPDATE_NUMBER_ROUTE,
)
from prefect_retell import (
    PhoneCallRequest,
    RetellCallTimeoutError,
    RetellConfigurationError,
    bind_agents,
    create_call,
    get_call,
    wait_for_call,
)
from prefect_retell.sandbox import Outcome

# Tasks called outside a flow log to the console only; Prefect warns about that.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Logger 'prefect.task_runs' attempted to send logs:UserWarning"
)

HALF_AND_HALF = [
    {"agent_id": REMINDER_AGENT, "weight": 0.5},
    {"agent_id": SURVEY_AGENT, "weight": 0.5},
]


def _patches(sandbox) -> int:
    return sandbox.sandbox.stats()["requests"].get(UPDATE_NUMBER_ROUTE, 0)


# --- bind_agents ---------------------------------------------------------------


async def test_bind_agents_binds_weighted_agents(prefect_server, sandbox, credentials):
    """Two agents at 0.5 each are bound as the number's outbound agents."""
    number = await bind_agents(credentials, TWILIO, outbound_agents=HALF_AND_HALF)

    assert sandbox.sandbox.get_phone_number(TWILIO)["outbound_agents"] == HALF_AND_HALF
    assert [(a.agent_id, a.weight) for a in number.outbound_agents] == [
        (REMINDER_AGENT, 0.5),
        (SURVEY_AGENT, 0.5),
    ]
    assert _patches(sandbox) == 1


async def test_bind_agents_sends_nothing_when_already_bound(
    prefect_server, sandbox, credentials
):
    """Binding the same agents again reads the number and sends no PATCH."""
    await bind_agents(credentials, TWILIO, outbound_agents=HALF_AND_HALF)

    await bind_agents(credentials, TWILIO, outbound_agents=HALF_AND_HALF)

    assert _patches(sandbox) == 1


async def test_bind_agents_splits_a_plain_list_evenly(
    prefect_server, sandbox, credentials
):
    """A list of agent ids without weights gets equal weights that sum to 1."""
    await bind_agents(
        credentials, TWILIO, outbound_agents=[REMINDER_AGENT, SURVEY_AGENT]
    )

    assert sandbox.sandbox.get_phone_number(TWILIO)["outbound_agents"] == HALF_AND_HALF


async def test_bind_agents_refuses_weights_not_summing_to_1(
    prefect_server, sandbox, credentials
):
    """Weights 0.5 and 0.4 raise before anything is sent."""
    agents = [
        {"agent_id": REMINDER_AGENT, "weight": 0.5},
        {"agent_id": SURVEY_AGENT, "weight": 0.4},
    ]

    with pytest.raises(RetellConfigurationError) as caught:
        await bind_agents(credentials, TWILIO, outbound_agents=agents)

    assert str(caught.value) == (
        "Agent weights must sum to 1 (Retell's rule), but they sum to 0.9: "
        "agent_sandbox_reminder=0.5, agent_sandbox_survey=0.4"
    )
    assert _patches(sandbox) == 0


# --- create_call, get_call, wait_for_call ----------------------------------------


async def test_create_call_places_one_registered_call(
    prefect_server, sandbox, credentials
):
    """create_call places the call and returns it as registered."""
    request = PhoneCallRequest(from_number=TWILIO, to_number="+14155550123")

    call = await create_call(credentials, request)

    assert call.call_status == "registered"
    assert [c["call_id"] for c in sandbox.sandbox.stats()["calls"]] == [call.call_id]
    assert sandbox.sandbox.stats()["requests"][CREATE_ROUTE] == 1


async def test_get_call_reads_the_call(prefect_server, sandbox, credentials):
    """get_call returns the call Retell holds, by id."""
    request = PhoneCallRequest(from_number=TWILIO, to_number="+14155550123")
    placed = await create_call(credentials, request)

    call = await get_call(credentials, placed.call_id)

    assert (call.call_id, call.to_number) == (placed.call_id, "+14155550123")


async def test_wait_for_call_returns_the_final_call(
    prefect_server, sandbox, credentials
):
    """wait_for_call returns once the call is not_connected."""
    sandbox.sandbox.set_outcome(
        "+14155550170", Outcome(kind="no_answer", ring_seconds=20)
    )
    request = PhoneCallRequest(from_number=TWILIO, to_number="+14155550170")
    placed = await create_call(credentials, request)

    call = await wait_for_call(credentials, placed.call_id, poll_interval_seconds=0.05)

    assert (call.call_status, call.disconnection_reason) == (
        "not_connected",
        "dial_no_answer",
    )


async def test_wait_for_call_ends_at_its_own_deadline(
    prefect_server, sandbox, credentials
):
    """A call stuck ongoing: a 2 s wait raises RetellCallTimeoutError in time (F27)."""
    sandbox.sandbox.set_outcome("+14155550171", Outcome(kind="stuck_ongoing"))
    request = PhoneCallRequest(from_number=TWILIO, to_number="+14155550171")
    placed = await create_call(credentials, request)

    started = time.monotonic()
    with pytest.raises(RetellCallTimeoutError) as caught:
        await wait_for_call(
            credentials,
            placed.call_id,
            timeout_seconds=2,
            poll_interval_seconds=0.5,
        )
    elapsed = time.monotonic() - started

    # A bound on behaviour, generous for a loaded machine: the deadline is 2 s.
    assert elapsed < 3.5
    assert str(caught.value) == (
        f"Call {placed.call_id} did not reach a final status in time; last status "
        "ongoing. It was not dialled again; read it later with get_call."
    )
    assert (caught.value.call_id, caught.value.last_status) == (
        placed.call_id,
        "ongoing",
    )
