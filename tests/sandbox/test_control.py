"""The unauthenticated /sandbox/ control endpoints and the stats they report."""

from __future__ import annotations

import httpx

from prefect_retell.sandbox import Outcome, Sandbox, SandboxServer

from .support import TWILIO, create, wait_for_status


async def test_health(server: SandboxServer):
    """/sandbox/health answers ok without a key."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/sandbox/health")

    assert response.json() == {"status": "ok"}


async def test_stats_counts_requests_responses_and_calls(
    client: httpx.AsyncClient, sandbox: Sandbox, server: SandboxServer
):
    """Stats count requests by route template, answers by status, and list calls."""
    created = await create(client, "+14155550123", metadata={"row": "1"})
    await client.get(f"/v2/get-call/{created.json()['call_id']}")
    await client.get("/v2/get-call/call_missing")

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        stats = (await http.get("/sandbox/stats")).json()

    assert stats["requests"] == {
        "POST /v2/create-phone-call": 1,
        "GET /v2/get-call/{call_id}": 2,
    }
    assert stats["responses"] == {"201": 1, "200": 1, "422": 1}
    (call,) = stats["calls"]
    assert call["call_id"] == created.json()["call_id"]
    assert call["from_number"] == TWILIO
    assert call["metadata"] == {"row": "1"}
    assert call["agent_id"] == "agent_sandbox_reminder"
    assert isinstance(call["created_at"], float)
    assert stats["max_live_calls"] == 1


async def test_faults_outcomes_and_cps_over_http(
    client: httpx.AsyncClient, sandbox: Sandbox, server: SandboxServer
):
    """Faults, outcomes and CPS can be set with plain HTTP."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.post(
            "/sandbox/faults",
            json=[{"endpoint": "get-concurrency", "action": "error", "status": 503}],
        )
        await http.post(
            "/sandbox/outcomes",
            json={"+14155550170": {"kind": "no_answer", "ring_seconds": 1}},
        )
        cps = await http.post(f"/sandbox/phone-numbers/{TWILIO}/cps", json={"cps": 1})

    assert (await client.get("/get-concurrency")).status_code == 503
    call_id = (await create(client, "+14155550170")).json()["call_id"]
    call, _ = await wait_for_status(client, call_id, {"not_connected"})
    assert call["disconnection_reason"] == "dial_no_answer"
    assert cps.status_code == 200
    assert (await create(client, "+14155550171")).status_code == 429


async def test_invalid_control_bodies_are_400(server: SandboxServer, sandbox):
    """A malformed fault, outcome or CPS answers 400 with a reason."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        fault = await http.post("/sandbox/faults", json={"endpoint": "get-call"})
        outcome = await http.post("/sandbox/outcomes", json={"+1": {"kind": "late"}})
        cps = await http.post(f"/sandbox/phone-numbers/{TWILIO}/cps", json={})
        unknown = await http.post(
            "/sandbox/phone-numbers/+19995550100/cps", json={"cps": 2}
        )

    assert fault.status_code == outcome.status_code == cps.status_code == 400
    assert fault.json()["message"].startswith("action:")
    assert unknown.status_code == 404


async def test_reset_and_clear_faults_over_http(
    client: httpx.AsyncClient, sandbox: Sandbox, server: SandboxServer
):
    """POST /sandbox/reset forgets calls; DELETE /sandbox/faults disarms faults."""
    await create(client, "+14155550123")
    sandbox.add_fault({"endpoint": "*", "action": "error"})

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.delete("/sandbox/faults")
        await http.post("/sandbox/reset")

    assert sandbox.faults() == []
    assert sandbox.stats()["calls"] == []


async def test_recording_and_log_links_resolve(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """recording_url serves audio and public_log_url a text timeline."""
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=0, talk_seconds=1)
    )
    call_id = (await create(client, "+14155550123")).json()["call_id"]
    call, _ = await wait_for_status(client, call_id, {"ended"})

    recording = await client.get(call["recording_url"])
    log = await client.get(call["public_log_url"])

    assert recording.headers["content-type"] == "audio/wav"
    assert recording.content.startswith(b"RIFF")
    assert "status: ended" in log.text
    assert "+14155550123" not in log.text


async def test_python_get_call_does_not_consume_transient_status(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """Sandbox.get_call inspects a call without using up its transient read."""
    sandbox.set_outcome(
        "+14155550173",
        Outcome(kind="stuck_ongoing", ring_seconds=0, transient_status="transferring"),
    )
    call_id = (await create(client, "+14155550173")).json()["call_id"]

    inspected = sandbox.get_call(call_id)
    first_read = (await client.get(f"/v2/get-call/{call_id}")).json()
    second_read = (await client.get(f"/v2/get-call/{call_id}")).json()

    assert inspected["call_status"] == "ongoing"
    assert first_read["call_status"] == "transferring"
    assert second_read["call_status"] == "ongoing"
