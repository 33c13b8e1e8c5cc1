"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from prefect_retell.sandbox import DEFAULT_SANDBOX_API_KEY, SandboxServer

TWILIO = "+16505550100"
TELNYX = "+16505550101"
CUSTOM = "+16505550102"
SEEDED_CPS = {TWILIO: 5, TELNYX: 16, CUSTOM: 1}
# A hundredth of real time: a 20-second simulated call lasts 0.2 s.
TIME_SCALE = 0.01


def client_for(server: SandboxServer, **options: Any) -> httpx.AsyncClient:
    """Return an httpx client for `server` with the sandbox key."""
    headers = {"Authorization": f"Bearer {DEFAULT_SANDBOX_API_KEY}"}
    return httpx.AsyncClient(base_url=server.base_url, headers=headers, **options)


async def create(
    http: httpx.AsyncClient, to_number: str, **fields: Any
) -> httpx.Response:
    """POST a create-phone-call from the Twilio number unless told otherwise."""
    body = {"from_number": TWILIO, "to_number": to_number, **fields}
    return await http.post("/v2/create-phone-call", json=body)


async def wait_for_status(
    http: httpx.AsyncClient,
    call_id: str,
    statuses: set[str],
    timeout_seconds: float = 5.0,
    *,
    first: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Poll get-call until the status is one of `statuses`.

    Args:
        http: The client.
        call_id: The call to poll.
        statuses: Statuses that end the wait.
        timeout_seconds: How long to poll before failing.
        first: A status already seen (e.g. in the create answer) to start with.

    Returns:
        The last call object and every status seen, in order, without repeats.
    """
    seen: list[str] = [first] if first else []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        call = (await http.get(f"/v2/get-call/{call_id}")).json()
        if not seen or seen[-1] != call["call_status"]:
            seen.append(call["call_status"])
        if call["call_status"] in statuses:
            return call, seen
        if loop.time() > deadline:
            raise AssertionError(f"call stayed {seen[-1]}; saw {seen}")
        await asyncio.sleep(0.005)
