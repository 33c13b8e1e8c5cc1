"""The client over real HTTP against the sandbox: errors, retries, idempotency."""

from __future__ import annotations

import email.utils
import logging
import socket
import time

import pytest

from prefect_retell import (
    RetellAuthenticationError,
    RetellClient,
    RetellConnectionError,
    RetellNotFoundError,
    RetellRateLimitError,
    RetellServerError,
    RetellValidationError,
    RetryPolicy,
)
from prefect_retell.sandbox import Fault, Outcome

FROM = "+16505550100"
TO = "+14155550123"


class SleepRecorder:
    """Stands in for asyncio.sleep so that retry waits are recorded, not slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(sandbox, sleeps):
    retry = RetryPolicy(max_attempts=4, jitter=lambda: 1.0)
    async with RetellClient(
        sandbox.sandbox.config.api_key,
        base_url=sandbox.base_url,
        retry=retry,
        sleep=sleeps,
        timeout_seconds=2.0,
    ) as client:
        yield client


def requests_to(sandbox, route: str) -> int:
    return sandbox.sandbox.stats()["requests"].get(route, 0)


async def test_unknown_call_is_not_found_after_one_request(client, sandbox):
    """A 422 for an unknown call id maps to RetellNotFoundError, not retried (F17)."""
    with pytest.raises(RetellNotFoundError) as caught:
        await client.get_call("call_fx_missing")

    assert caught.value.status_code == 422
    assert caught.value.retell_message == (
        "Cannot find requested asset under given api key."
    )
    assert str(caught.value) == (
        "GET /v2/get-call/call_fx_missing answered 422 (not found): "
        "Cannot find requested asset under given api key."
    )
    assert requests_to(sandbox, "GET /v2/get-call/{call_id}") == 1


async def test_wrong_key_is_an_authentication_error_without_the_key(sandbox, sleeps):
    """A 401 is raised at once, and its message does not hold the key (F17)."""
    async with RetellClient(
        "key_fx_SECRET123", base_url=sandbox.base_url, sleep=sleeps
    ) as client:
        with pytest.raises(RetellAuthenticationError) as caught:
            await client.get_concurrency()

    assert caught.value.status_code == 401
    assert "key_fx_SECRET123" not in str(caught.value)
    assert "key_fx_SECRET123" not in repr(client)
    assert sleeps.waits == []
    assert requests_to(sandbox, "GET /get-concurrency") == 1


async def test_server_errors_are_retried_until_success(client, sandbox, sleeps):
    """503 twice then 200: the third attempt succeeds (F17)."""
    call = await client.create_phone_call(from_number=FROM, to_number=TO)
    sandbox.sandbox.add_fault(
        Fault(endpoint="get-call", action="error", status=503, times=2)
    )

    fetched = await client.get_call(call.call_id)

    assert fetched.call_id == call.call_id
    assert sleeps.waits == [0.5, 1.0]
    assert requests_to(sandbox, "GET /v2/get-call/{call_id}") == 3


async def test_persistent_server_error_raises_the_products_error(client, sandbox):
    """When every attempt fails the caller sees RetellServerError, not RetryError."""
    sandbox.sandbox.add_fault(
        Fault(endpoint="get-concurrency", action="error", status=500, times=0)
    )

    with pytest.raises(RetellServerError) as caught:
        await client.get_concurrency()

    assert caught.value.status_code == 500
    assert requests_to(sandbox, "GET /get-concurrency") == 4


async def test_client_errors_are_not_retried(client, sandbox, sleeps):
    """A 400 is final: one request, a RetellValidationError, no wait."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=400,
            body={"status": "error", "message": "to_number is not allowed"},
        )
    )

    with pytest.raises(RetellValidationError, match="to_number is not allowed"):
        await client.create_phone_call(from_number=FROM, to_number=TO)

    assert sleeps.waits == []
    assert sandbox.sandbox.stats()["calls"] == []


async def test_rate_limited_create_waits_and_keeps_its_key(client, sandbox, sleeps):
    """A 429 with Retry-After: 2 is retried after 2 s with the same key (F13a)."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=429,
            body={
                "status": "error",
                "message": "Account rate limited, please throttle your requests.",
            },
            headers={"Retry-After": "2"},
        )
    )

    call = await client.create_phone_call(
        from_number=FROM, to_number=TO, idempotency_key="fx-key-1"
    )

    assert sleeps.waits == [2.0]
    calls = sandbox.sandbox.stats()["calls"]
    assert [c["call_id"] for c in calls] == [call.call_id]
    assert calls[0]["idempotency_key"] == "fx-key-1"


async def test_retry_after_as_http_date_is_honoured(client, sandbox, sleeps):
    """Retry-After given as an HTTP date is parsed into a wait (F13b)."""
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="get-concurrency",
            action="error",
            status=429,
            headers={"Retry-After": when},
        )
    )

    await client.get_concurrency()

    assert len(sleeps.waits) == 1
    assert 8.0 <= sleeps.waits[0] <= 10.5


async def test_absurd_retry_after_is_capped(client, sandbox, sleeps):
    """Retry-After: 86400 is cut to the policy's 60 s, not slept for a day (F13c)."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="get-concurrency",
            action="error",
            status=429,
            headers={"Retry-After": "86400"},
        )
    )

    await client.get_concurrency()

    assert sleeps.waits == [60.0]


async def test_rate_limit_that_never_lifts_raises_rate_limit_error(client, sandbox):
    """429 on every attempt ends in RetellRateLimitError with Retell's message."""
    sandbox.sandbox.add_fault(
        Fault(endpoint="create-phone-call", action="error", status=429, times=0)
    )

    with pytest.raises(RetellRateLimitError) as caught:
        await client.create_phone_call(from_number=FROM, to_number=TO)

    assert str(caught.value).startswith(
        "POST /v2/create-phone-call answered 429 (rate limited)"
    )
    assert sandbox.sandbox.stats()["calls"] == []


async def test_dropped_answer_after_create_places_one_call(client, sandbox, sleeps):
    """The connection breaks after Retell placed the call: the retry carries the
    same idempotency key and gets that call back (F16)."""
    sandbox.sandbox.add_fault(Fault(endpoint="create-phone-call", action="drop"))

    call = await client.create_phone_call(from_number=FROM, to_number=TO)

    calls = sandbox.sandbox.stats()["calls"]
    assert [c["call_id"] for c in calls] == [call.call_id]
    assert requests_to(sandbox, "POST /v2/create-phone-call") == 2
    assert len(sleeps.waits) == 1


async def test_read_timeout_after_create_places_one_call(client, sandbox):
    """A read timeout after the call was placed is retried safely (F16)."""
    sandbox.sandbox.add_fault(
        Fault(endpoint="create-phone-call", action="hang", seconds=3.0)
    )

    call = await client.create_phone_call(from_number=FROM, to_number=TO)

    calls = sandbox.sandbox.stats()["calls"]
    assert [c["call_id"] for c in calls] == [call.call_id]
    assert sandbox.sandbox.stats()["idempotent_replays"] == 1


async def test_create_always_sends_an_idempotency_key(client, sandbox):
    """Without a key from the caller, the client makes one."""
    await client.create_phone_call(from_number=FROM, to_number=TO)

    key = sandbox.sandbox.stats()["calls"][0]["idempotency_key"]
    assert key.startswith("prefect-retell-")


async def test_connection_refused_is_retried_then_raised(sleeps):
    """Nothing listening: every attempt is made, then RetellConnectionError says
    that nothing was sent (F16, connect errors retried freely)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry = RetryPolicy(max_attempts=3, jitter=lambda: 1.0)
    async with RetellClient(
        "key", base_url=f"http://127.0.0.1:{port}", retry=retry, sleep=sleeps
    ) as client:
        with pytest.raises(RetellConnectionError) as caught:
            await client.get_concurrency()

    assert caught.value.request_sent is False
    assert str(caught.value) == (
        "GET /get-concurrency got no answer: ConnectError before anything was sent"
    )
    assert sleeps.waits == [0.5, 1.0]


async def test_html_error_page_is_read_without_crashing(client, sandbox):
    """A proxy's HTML 502 becomes a server error carrying the page's text."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="get-concurrency",
            action="error",
            status=502,
            body="<html><body>Bad gateway</body></html>",
            times=0,
        )
    )

    with pytest.raises(RetellServerError, match="Bad gateway"):
        await client.get_concurrency()


async def test_retry_warnings_hold_no_key(sandbox, sleeps, caplog):
    """Retry log lines name the request and the wait, never the key."""
    sandbox.sandbox.add_fault(
        Fault(endpoint="get-concurrency", action="error", status=503)
    )
    key = sandbox.sandbox.config.api_key
    retry = RetryPolicy(max_attempts=3, jitter=lambda: 1.0)
    caplog.set_level(logging.DEBUG)
    async with RetellClient(
        key, base_url=sandbox.base_url, retry=retry, sleep=sleeps
    ) as client:
        await client.get_concurrency()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("GET /get-concurrency answered 503 (server error)")
    assert warnings[0].endswith("; attempt 1 of 3, retrying in 0.5 s")
    assert key not in caplog.text


async def test_unknown_status_is_kept_and_not_final(client, sandbox):
    """A status Retell may add later is carried as a string and is not final."""
    sandbox.sandbox.set_outcome(
        TO, Outcome(kind="answered", ring_seconds=0, transient_status="transferring")
    )
    call = await client.create_phone_call(from_number=FROM, to_number=TO)

    statuses = []
    for _ in range(200):
        fetched = await client.get_call(call.call_id)
        statuses.append(fetched.call_status)
        if fetched.is_final:
            break
        time.sleep(0.01)

    assert "transferring" in statuses
    assert statuses[-1] == "ended"


async def test_list_calls_pages_through_every_call(client, sandbox):
    """iter_calls follows pagination keys until the last page."""
    for index in range(5):
        await client.create_phone_call(
            from_number="+16505550101",
            to_number=f"+1415555020{index}",
            metadata={"batch": "fx"},
        )
    criteria = {
        "metadata": [{"key": "batch", "type": "string", "op": "eq", "value": "fx"}]
    }

    found = [call async for call in client.iter_calls(criteria, page_size=2)]

    assert len(found) == 5
    assert requests_to(sandbox, "POST /v3/list-calls") == 3


async def test_stop_call_ends_a_live_call(client, sandbox):
    """stop-call answers 204 and the call ends as manually stopped."""
    sandbox.sandbox.set_outcome(TO, Outcome(kind="stuck_ongoing", ring_seconds=0))
    call = await client.create_phone_call(from_number=FROM, to_number=TO)

    assert await client.stop_call(call.call_id) is None

    stopped = await client.get_call(call.call_id)
    assert stopped.is_final
    assert stopped.disconnection_reason == "manual_stopped"
