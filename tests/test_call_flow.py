"""The `outbound_call` flow end to end against the sandbox."""

from __future__ import annotations

import pytest

from flow_support import CREATE_ROUTE, GET_CALL_ROUTE, STOP_CALL_ROUTE, TWILIO
from prefect_retell import RetellCallTimeoutError, outbound_call
from prefect_retell.sandbox import Fault, Outcome

TO = "+14155550123"


async def test_outbound_call_returns_the_final_call(
    prefect_server, sandbox, credentials
):
    """The flow places one call with its variables and returns it once ended."""
    sandbox.sandbox.set_outcome(
        TO, Outcome(kind="answered", ring_seconds=10, talk_seconds=30)
    )

    call = await outbound_call(
        from_number=TWILIO,
        to_number=TO,
        credentials=credentials,
        dynamic_variables={"first_name": "Ada"},
        metadata={"ticket": "T-1"},
        poll_interval_seconds=0.05,
    )

    assert (call.call_status, call.duration_ms) == ("ended", 30000)
    placed = sandbox.sandbox.get_call(call.call_id)
    assert placed["retell_llm_dynamic_variables"] == {"first_name": "Ada"}
    assert placed["metadata"] == {"ticket": "T-1"}


async def test_failing_polls_do_not_dial_again(prefect_server, sandbox, credentials):
    """Three 500s on get-call after the create: one create, the call ends (F18)."""
    sandbox.sandbox.set_outcome(
        TO, Outcome(kind="answered", ring_seconds=10, talk_seconds=30)
    )
    sandbox.sandbox.add_fault(
        Fault(endpoint="get-call", action="error", status=500, times=3)
    )

    call = await outbound_call(
        from_number=TWILIO,
        to_number=TO,
        credentials=credentials,
        poll_interval_seconds=0.05,
    )

    stats = sandbox.sandbox.stats()
    assert call.call_status == "ended"
    assert stats["requests"][CREATE_ROUTE] == 1
    assert len(stats["calls"]) == 1
    assert stats["responses"]["500"] == 3
    assert stats["requests"][GET_CALL_ROUTE] >= 4


async def test_outbound_call_stops_a_call_live_at_its_deadline(
    prefect_server, sandbox, credentials
):
    """With stop_on_timeout, a call live at the deadline is stopped, then raised."""
    sandbox.sandbox.set_outcome(TO, Outcome(kind="stuck_ongoing", ring_seconds=10))

    with pytest.raises(RetellCallTimeoutError) as caught:
        await outbound_call(
            from_number=TWILIO,
            to_number=TO,
            credentials=credentials,
            timeout_seconds=0.5,
            poll_interval_seconds=0.05,
            stop_on_timeout=True,
        )

    call_id = caught.value.call_id
    assert str(caught.value) == (
        f"Call {call_id} did not end in time (last status ongoing); "
        "it was stopped and is now ended"
    )
    assert sandbox.sandbox.stats()["requests"][STOP_CALL_ROUTE] == 1
    assert sandbox.sandbox.get_call(call_id)["disconnection_reason"] == "manual_stopped"
