"""Injected faults: error answers, dropped connections, hangs and delays."""

from __future__ import annotations

import time

import httpx
import pytest
from pydantic import ValidationError

from prefect_retell.sandbox import Fault, SandboxServer

from .support import client_for, create

RATE_LIMITED = "Account rate limited, please throttle your requests."


async def test_error_fault_answers_without_creating(client: httpx.AsyncClient, sandbox):
    """An error fault answers its status, body and headers; no call is placed."""
    sandbox.add_fault(
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=429,
            headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},
        )
    )

    refused = await create(client, "+14155550123")
    accepted = await create(client, "+14155550123")

    assert refused.status_code == 429
    assert refused.json() == {"status": "error", "message": RATE_LIMITED}
    assert refused.headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert accepted.status_code == 201
    stats = sandbox.stats()
    assert len(stats["calls"]) == 1
    assert stats["rate_limited"]["injected"] == 1


async def test_error_fault_after_lets_requests_through_first(
    client: httpx.AsyncClient, sandbox
):
    """after=1 lets the first create through and refuses the second."""
    sandbox.add_fault(
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=429,
            headers={"Retry-After": "2"},
            after=1,
        )
    )

    first = await create(client, "+14155550123")
    second = await create(client, "+14155550124")
    third = await create(client, "+14155550125")

    assert [first.status_code, second.status_code, third.status_code] == [
        201,
        429,
        201,
    ]
    assert second.headers["Retry-After"] == "2"


async def test_error_fault_times_then_success(client: httpx.AsyncClient, sandbox):
    """Three 500s on get-call, then the real answer (field case F18)."""
    call_id = (await create(client, "+14155550123")).json()["call_id"]
    sandbox.add_fault(Fault(endpoint="get-call", action="error", status=500, times=3))

    statuses = [
        (await client.get(f"/v2/get-call/{call_id}")).status_code for _ in range(4)
    ]

    assert statuses == [500, 500, 500, 200]
    assert sandbox.stats()["requests"]["POST /v2/create-phone-call"] == 1


async def test_error_fault_with_raw_text_body(client: httpx.AsyncClient, sandbox):
    """A string body is sent as is, e.g. a proxy's HTML 502 page."""
    page = "<html><body>502 Bad Gateway</body></html>"
    sandbox.add_fault(Fault(endpoint="*", action="error", status=502, body=page))

    response = await client.get("/get-concurrency")

    assert response.status_code == 502
    assert response.text == page
    assert response.headers["content-type"].startswith("text/html")


async def test_times_zero_applies_to_every_request(client: httpx.AsyncClient, sandbox):
    """times=0 keeps a fault firing until it is cleared."""
    sandbox.add_fault(Fault(endpoint="get-concurrency", action="error", times=0))

    failing = [(await client.get("/get-concurrency")).status_code for _ in range(3)]
    sandbox.clear_faults()
    healed = await client.get("/get-concurrency")

    assert failing == [500, 500, 500]
    assert healed.status_code == 200


async def test_to_number_matcher(client: httpx.AsyncClient, sandbox):
    """A fault with to_number only fires for creates to that number."""
    sandbox.add_fault(
        Fault(endpoint="create-phone-call", action="error", to_number="+14155550124")
    )

    other = await create(client, "+14155550123")
    target = await create(client, "+14155550124")

    assert (other.status_code, target.status_code) == (201, 500)


async def test_call_id_matcher(client: httpx.AsyncClient, sandbox):
    """A fault with call_id only fires for requests about that call."""
    first = (await create(client, "+14155550123")).json()["call_id"]
    second = (await create(client, "+14155550124")).json()["call_id"]
    sandbox.add_fault(Fault(endpoint="get-call", action="error", call_id=second))

    assert (await client.get(f"/v2/get-call/{first}")).status_code == 200
    assert (await client.get(f"/v2/get-call/{second}")).status_code == 500


async def test_each_request_consumes_one_fault_in_order(
    client: httpx.AsyncClient, sandbox
):
    """Faults fire in the order added, one per request."""
    sandbox.add_fault(Fault(endpoint="get-concurrency", action="error", status=503))
    sandbox.add_fault(Fault(endpoint="*", action="error", status=502))

    statuses = [(await client.get("/get-concurrency")).status_code for _ in range(3)]

    assert statuses == [503, 502, 200]


async def test_drop_creates_the_call_but_breaks_the_response(
    client: httpx.AsyncClient, sandbox
):
    """A drop processes the create, then cuts the answer: RemoteProtocolError."""
    sandbox.add_fault(Fault(endpoint="create-phone-call", action="drop"))

    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, "+14155550123", idempotency_key="row-1")
    replay = await create(client, "+14155550123", idempotency_key="row-1")

    stats = sandbox.stats()
    assert len(stats["calls"]) == 1
    assert stats["calls"][0]["to_number"] == "+14155550123"
    assert replay.json()["call_id"] == stats["calls"][0]["call_id"]
    assert stats["responses"]["dropped"] == 1


async def test_drop_of_an_empty_answer_is_still_broken(
    client: httpx.AsyncClient, sandbox
):
    """A dropped stop-call (204, no body) also ends in a transport error."""
    call_id = (await create(client, "+14155550123")).json()["call_id"]
    sandbox.add_fault(Fault(endpoint="stop-call", action="drop"))

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"/v2/stop-call/{call_id}")

    assert sandbox.get_call(call_id)["disconnection_reason"] == "manual_stopped"


async def test_hang_creates_the_call_and_times_the_client_out(
    server: SandboxServer, sandbox
):
    """A hang answers too late for a short read timeout, yet the call exists."""
    sandbox.add_fault(Fault(endpoint="create-phone-call", action="hang", seconds=5))
    timeout = httpx.Timeout(5.0, read=0.2)

    async with client_for(server, timeout=timeout) as http:
        with pytest.raises(httpx.ReadTimeout):
            await create(http, "+14155550123")

    calls = sandbox.stats()["calls"]
    assert [call["to_number"] for call in calls] == ["+14155550123"]


async def test_delay_answers_normally_after_waiting(client: httpx.AsyncClient, sandbox):
    """A delay waits, then processes and answers as usual."""
    sandbox.add_fault(Fault(endpoint="get-concurrency", action="delay", seconds=0.2))
    started = time.monotonic()

    response = await client.get("/get-concurrency")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_unknown_fault_endpoint_is_rejected():
    """A misspelt endpoint is refused instead of never firing."""
    with pytest.raises(ValidationError, match="unknown endpoint 'create-call'"):
        Fault(endpoint="create-call", action="error")


async def test_faults_are_counted_only_for_authenticated_requests(
    server: SandboxServer, sandbox
):
    """A request with a wrong key gets 401 and leaves the fault armed."""
    sandbox.add_fault(Fault(endpoint="get-concurrency", action="error", status=503))
    headers = {"Authorization": "Bearer wrong"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        unauthorized = await http.get("/get-concurrency")

    assert unauthorized.status_code == 401
    assert sandbox.faults()[0]["applied"] == 0
