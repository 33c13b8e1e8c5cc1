"""Idempotency, calls-per-second and concurrency limits."""

from __future__ import annotations

import asyncio

import httpx

from prefect_retell.sandbox import Outcome, Sandbox

from .support import TELNYX, TWILIO, client_for, create

RATE_LIMITED = "Account rate limited, please throttle your requests."


async def test_idempotent_replay_returns_the_original_call(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """Resending a create with the same key gives 201, the same call, no new call."""
    first = await create(client, "+14155550123", idempotency_key="row-1-attempt")
    second = await create(client, "+14155550123", idempotency_key="row-1-attempt")

    assert first.status_code == second.status_code == 201
    assert second.json()["call_id"] == first.json()["call_id"]
    stats = sandbox.stats()
    assert len(stats["calls"]) == 1
    assert stats["calls"][0]["idempotency_key"] == "row-1-attempt"
    assert stats["idempotent_replays"] == 1


async def test_replay_shows_the_current_state(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A replay answers with the call as it is now, not as it was created."""
    sandbox.set_outcome("+14155550161", Outcome(kind="no_answer", ring_seconds=0))
    await create(client, "+14155550161", idempotency_key="k-now")
    await asyncio.sleep(0.02)

    replay = await create(client, "+14155550161", idempotency_key="k-now")

    assert replay.json()["call_status"] == "not_connected"


async def test_different_keys_place_different_calls(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """Two keys for one number place two calls."""
    await create(client, "+14155550123", idempotency_key="a")
    await create(client, "+14155550123", idempotency_key="b")

    assert len(sandbox.stats()["calls"]) == 2


async def test_expired_idempotency_key_places_a_new_call(own_server):
    """After the TTL a key is forgotten and the create places a second call."""
    server = own_server(idempotency_ttl_seconds=0.05)
    async with client_for(server) as http:
        first = await create(http, "+14155550123", idempotency_key="k")
        await asyncio.sleep(0.1)
        second = await create(http, "+14155550123", idempotency_key="k")

    assert first.json()["call_id"] != second.json()["call_id"]


async def test_cps_excess_is_429_with_retry_after(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """With CPS 2, three simultaneous creates give two calls and one 429."""
    sandbox.set_cps(TWILIO, 2)

    responses = await asyncio.gather(
        *(create(client, f"+1415555014{index}") for index in range(3))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 201, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json() == {"status": "error", "message": RATE_LIMITED}
    assert refused.headers["Retry-After"] == "1"
    stats = sandbox.stats()
    assert stats["rate_limited"]["cps"] == 1
    assert stats["responses"]["429"] == 1
    assert len(stats["calls"]) == 2


async def test_cps_is_per_from_number(client: httpx.AsyncClient, sandbox: Sandbox):
    """Another number's creates do not use up the first number's CPS."""
    sandbox.set_cps(TWILIO, 1)

    twilio = await create(client, "+14155550141")
    telnyx = await create(client, "+14155550142", from_number=TELNYX)

    assert twilio.status_code == telnyx.status_code == 201


async def test_cps_window_slides(client: httpx.AsyncClient, sandbox: Sandbox):
    """A second later the number may dial again."""
    sandbox.set_cps(TWILIO, 1)
    await create(client, "+14155550141")
    refused = await create(client, "+14155550142")
    await asyncio.sleep(1.05)

    accepted = await create(client, "+14155550142")

    assert refused.status_code == 429
    assert accepted.status_code == 201


async def test_replays_are_not_subject_to_cps(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A replay within the same second as its create is not rate limited."""
    sandbox.set_cps(TWILIO, 1)
    first = await create(client, "+14155550141", idempotency_key="once")

    replay = await create(client, "+14155550141", idempotency_key="once")

    assert replay.status_code == 201
    assert replay.json()["call_id"] == first.json()["call_id"]


async def test_concurrency_reject_mode_is_429(own_server):
    """At the concurrency limit a create is refused with 429 and Retry-After."""
    server = own_server(concurrency_limit=2)
    for number in ("+14155550142", "+14155550143", "+14155550144"):
        server.sandbox.set_outcome(number, Outcome(kind="stuck_ongoing"))

    async with client_for(server) as http:
        accepted = [await create(http, n) for n in ("+14155550142", "+14155550143")]
        refused = await create(http, "+14155550144")
        concurrency = (await http.get("/get-concurrency")).json()

    assert [r.status_code for r in accepted] == [201, 201]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "Concurrency limit reached" in refused.json()["message"]
    assert server.sandbox.stats()["rate_limited"]["concurrency"] == 1
    assert server.sandbox.stats()["max_live_calls"] == 2
    assert concurrency["current_concurrency"] == 2
    assert concurrency["concurrency_limit"] == 2


async def test_concurrency_error_call_mode(own_server):
    """In error_call mode the excess create is 201 and ends error at once."""
    server = own_server(concurrency_limit=1, concurrency_mode="error_call")
    server.sandbox.set_outcome("+14155550142", Outcome(kind="stuck_ongoing"))

    async with client_for(server) as http:
        await create(http, "+14155550142")
        excess = await create(http, "+14155550150")
        await asyncio.sleep(0.01)
        call = (await http.get(f"/v2/get-call/{excess.json()['call_id']}")).json()

    assert excess.status_code == 201
    assert call["call_status"] == "error"
    assert call["disconnection_reason"] == "concurrency_limit_reached"


async def test_ended_calls_free_their_slot(own_server):
    """Not-connected calls stop counting toward the limit once final."""
    server = own_server(concurrency_limit=1)
    server.sandbox.set_outcome(
        "+14155550140", Outcome(kind="no_answer", ring_seconds=1)
    )

    async with client_for(server) as http:
        await create(http, "+14155550140")
        await asyncio.sleep(0.03)
        second = await create(http, "+14155550141")

    assert second.status_code == 201
