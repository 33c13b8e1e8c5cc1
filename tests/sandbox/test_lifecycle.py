"""Call lifecycles over HTTP, with explicit outcomes and a fast time scale."""

from __future__ import annotations

import asyncio

import httpx

from prefect_retell.sandbox import Outcome, Sandbox

from .support import TIME_SCALE, create, wait_for_status

FINAL = {"ended", "not_connected", "error"}


async def test_answered_call_goes_registered_ongoing_ended(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """An answered call rings, talks, then ends with the simulated duration."""
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=5, talk_seconds=20)
    )
    variables = {"first_name": "Ada", "clinic": "Elm Clinic"}
    created = await create(
        client, "+14155550123", retell_llm_dynamic_variables=variables
    )

    call, seen = await wait_for_status(
        client, created.json()["call_id"], FINAL, first=created.json()["call_status"]
    )

    assert seen == ["registered", "ongoing", "ended"]
    assert call["disconnection_reason"] == "user_hangup"
    assert call["duration_ms"] == 20_000
    elapsed_ms = call["end_timestamp"] - call["start_timestamp"]
    assert abs(elapsed_ms - 20_000 * TIME_SCALE) < 50
    assert call["call_cost"]["total_duration_seconds"] == 20
    assert call["transcript"].startswith("Agent: Hi Ada, this is the scheduling")
    assert "{{appointment_date}}" in call["transcript"]
    assert call["recording_url"].endswith(f"/sandbox/recordings/{call['call_id']}.wav")


async def test_analysis_appears_after_the_end(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """call_analysis shows up a few simulated seconds after the call ends."""
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=0, talk_seconds=1)
    )
    created = await create(client, "+14155550123")
    call, _ = await wait_for_status(client, created.json()["call_id"], FINAL)

    await asyncio.sleep(10 * TIME_SCALE)
    later = (await client.get(f"/v2/get-call/{call['call_id']}")).json()

    assert later["call_analysis"]["in_voicemail"] is False
    assert later["call_analysis"]["custom_analysis_data"] == {}


async def test_voicemail_ends_voicemail_reached(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A voicemail outcome ends with voicemail_reached and in_voicemail true."""
    sandbox.set_outcome(
        "+14155550124", Outcome(kind="voicemail", ring_seconds=1, talk_seconds=2)
    )
    created = await create(client, "+14155550124")
    call, seen = await wait_for_status(client, created.json()["call_id"], FINAL)
    await asyncio.sleep(10 * TIME_SCALE)
    call = (await client.get(f"/v2/get-call/{call['call_id']}")).json()

    assert seen[-1] == "ended"
    assert call["disconnection_reason"] == "voicemail_reached"
    assert call["call_analysis"]["in_voicemail"] is True


async def test_unanswered_calls_never_pass_through_ongoing(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """no_answer, busy and failed go from registered straight to not_connected."""
    expected = {
        "+14155550160": ("busy", "dial_busy"),
        "+14155550161": ("no_answer", "dial_no_answer"),
        "+14155550164": ("failed", "dial_failed"),
    }
    for number, (kind, _) in expected.items():
        sandbox.set_outcome(number, Outcome(kind=kind, ring_seconds=3))

    for number, (_, reason) in expected.items():
        created = await create(client, number)
        call, seen = await wait_for_status(
            client, created.json()["call_id"], FINAL, first="registered"
        )
        assert created.json()["call_status"] == "registered"
        assert seen == ["registered", "not_connected"], number
        assert call["disconnection_reason"] == reason
        assert call["start_timestamp"] is None
        assert call["end_timestamp"] is not None
        assert call["call_cost"] is None and call["recording_url"] is None


async def test_reason_override(client: httpx.AsyncClient, sandbox: Sandbox):
    """An Outcome's disconnection_reason replaces the kind's usual reason."""
    sandbox.set_outcome(
        "+14155550162",
        Outcome(
            kind="failed", ring_seconds=1, disconnection_reason="invalid_destination"
        ),
    )
    created = await create(client, "+14155550162")

    call, _ = await wait_for_status(client, created.json()["call_id"], FINAL)

    assert call["call_status"] == "not_connected"
    assert call["disconnection_reason"] == "invalid_destination"


async def test_error_outcome(client: httpx.AsyncClient, sandbox: Sandbox):
    """An error outcome is accepted (201) and ends error/concurrency_limit_reached."""
    sandbox.set_outcome("+14155550150", Outcome(kind="error"))
    created = await create(client, "+14155550150")

    call, _ = await wait_for_status(client, created.json()["call_id"], FINAL)

    assert created.status_code == 201
    assert created.json()["call_status"] == "registered"
    assert call["call_status"] == "error"
    assert call["disconnection_reason"] == "concurrency_limit_reached"


async def test_stuck_registered_until_stopped(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A stuck_registered call stays registered; stop-call makes it not_connected."""
    sandbox.set_outcome("+14155550172", Outcome(kind="stuck_registered"))
    call_id = (await create(client, "+14155550172")).json()["call_id"]
    await asyncio.sleep(50 * TIME_SCALE)
    still = (await client.get(f"/v2/get-call/{call_id}")).json()

    stopped = await client.post(f"/v2/stop-call/{call_id}")
    after = (await client.get(f"/v2/get-call/{call_id}")).json()

    assert still["call_status"] == "registered"
    assert stopped.status_code == 204 and stopped.content == b""
    assert after["call_status"] == "not_connected"
    assert after["disconnection_reason"] == "manual_stopped"


async def test_stuck_ongoing_until_stopped(client: httpx.AsyncClient, sandbox: Sandbox):
    """A stuck_ongoing call stays ongoing; stop-call ends it manual_stopped."""
    sandbox.set_outcome("+14155550171", Outcome(kind="stuck_ongoing", ring_seconds=1))
    call_id = (await create(client, "+14155550171")).json()["call_id"]
    await wait_for_status(client, call_id, {"ongoing"})
    await asyncio.sleep(50 * TIME_SCALE)
    still = (await client.get(f"/v2/get-call/{call_id}")).json()

    await client.post(f"/v2/stop-call/{call_id}")
    after = (await client.get(f"/v2/get-call/{call_id}")).json()

    assert still["call_status"] == "ongoing"
    assert after["call_status"] == "ended"
    assert after["disconnection_reason"] == "manual_stopped"
    assert after["duration_ms"] >= 50_000


async def test_stop_call_on_final_call_is_204_and_changes_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """Stopping a call that already ended answers 204 and leaves it as it was."""
    sandbox.set_outcome("+14155550161", Outcome(kind="no_answer", ring_seconds=0))
    call_id = (await create(client, "+14155550161")).json()["call_id"]
    before, _ = await wait_for_status(client, call_id, FINAL)

    response = await client.post(f"/v2/stop-call/{call_id}")
    after = (await client.get(f"/v2/get-call/{call_id}")).json()

    assert response.status_code == 204
    assert after["disconnection_reason"] == before["disconnection_reason"]
    assert after["end_timestamp"] == before["end_timestamp"]


async def test_transient_status_is_reported_once(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """An unknown transient status shows in exactly one get-call after the ring."""
    sandbox.set_outcome(
        "+14155550173",
        Outcome(
            kind="answered",
            ring_seconds=1,
            talk_seconds=100,
            transient_status="transferring",
        ),
    )
    call_id = (await create(client, "+14155550173")).json()["call_id"]

    _, seen = await wait_for_status(client, call_id, FINAL, first="registered")

    assert seen == ["registered", "transferring", "ongoing", "ended"]


async def test_outcomes_apply_to_new_calls_only(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """Changing a number's outcome leaves calls already placed as they were."""
    sandbox.set_outcome("+14155550180", Outcome(kind="busy", ring_seconds=1))
    first = (await create(client, "+14155550180")).json()["call_id"]
    sandbox.set_outcome("+14155550180", Outcome(kind="stuck_registered"))

    call, _ = await wait_for_status(client, first, FINAL)

    assert call["disconnection_reason"] == "dial_busy"
