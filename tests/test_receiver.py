"""The webhook receiver over real HTTP, sending events to a real Prefect API.

Each test starts its own receiver on 127.0.0.1. Tests that read events back use
the session's Prefect test server; tests that only look at the answers point the
receiver at a port where nothing listens, so that `GET /healthz` tells exactly
what was queued: nothing can leave the queue.

An outage of the Prefect API is staged by `ApiGate`, a port of our own in front
of the test server that refuses connections, accepts and never answers, answers
503, or forwards to the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.filters import EventFilter, EventResourceFilter
from retell.lib import webhook_auth as sdk

from conftest import SECRET_API_KEY
from prefect_retell import (
    DeliveryPolicy,
    RetellConfigurationError,
    RetellCredentials,
    WebhookReceiverServer,
    create_webhook_app,
    sign_webhook,
)

KEY = SECRET_API_KEY
CALLEE = "+14155550123"
CLI = Path(sys.executable).with_name("prefect-retell")

# Quick retries, so that a restored API is noticed within a second.
FAST = DeliveryPolicy(
    attempt_timeout_seconds=2.0,
    initial_backoff_seconds=0.05,
    max_backoff_seconds=0.5,
    shutdown_timeout_seconds=1.0,
    jitter=lambda: 1.0,
)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_call_id() -> str:
    """A call id of this test alone: the Prefect server is shared by the session."""
    return f"call_{uuid.uuid4().hex[:20]}"


def webhook(event: str, call_id: str, **call: object) -> bytes:
    """A Retell webhook body, compact as Retell sends it."""
    fields = {
        "call_id": call_id,
        "call_status": "ended",
        "agent_id": "agent_fx",
        "direction": "outbound",
        "from_number": "+14155550100",
        "to_number": CALLEE,
        "duration_ms": 61_000,
        "disconnection_reason": "user_hangup",
        "transcript": "Agent: Hello Ada\nUser: Hi",
        **call,
    }
    return json.dumps({"event": event, "call": fields}, separators=(",", ":")).encode()


def signed(body: bytes, key: str = KEY, at_ms: int | None = None) -> dict[str, str]:
    at_ms = now_ms() if at_ms is None else at_ms
    return {"x-retell-signature": sign_webhook(body, key, at_ms)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_api_url() -> str:
    """A Prefect API address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api"


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., WebhookReceiverServer]]:
    """Start receivers with the given options; all are stopped after the test."""
    servers: list[WebhookReceiverServer] = []

    def start(**options: object) -> WebhookReceiverServer:
        options.setdefault("delivery", FAST)
        server = WebhookReceiverServer(create_webhook_app(KEY, **options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Far below Retell's 10 s: an answer that takes longer fails the test.
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def post(
    client: httpx.AsyncClient, server: WebhookReceiverServer, body: bytes, **headers
) -> httpx.Response:
    return await client.post(f"{server.url}/", content=body, headers=headers)


async def health(client: httpx.AsyncClient, server: WebhookReceiverServer) -> dict:
    return (await client.get(f"{server.url}/healthz")).json()


async def wait_for_health(
    client: httpx.AsyncClient,
    server: WebhookReceiverServer,
    condition: Callable[[dict], bool],
    timeout_seconds: float = 30.0,
) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while not condition(state := await health(client, server)):
        assert time.monotonic() < deadline, f"health never matched: {state}"
        await asyncio.sleep(0.05)
    return state


async def call_events(call_id: str) -> list[Event]:
    """The events Prefect holds for one call, oldest first."""
    # The filter is made now: its window ends at the time it is made.
    query = EventFilter(resource=EventResourceFilter(id=[f"retell.call.{call_id}"]))
    async with get_client() as prefect:
        page = await prefect.read_events(filter=query, limit=50)
    return sorted(page.events, key=lambda event: (event.occurred, event.event))


async def wait_for_events(
    call_id: str, count: int, timeout_seconds: float = 60.0
) -> list[Event]:
    """Wait until Prefect holds `count` events for a call (it stores in batches)."""
    deadline = time.monotonic() + timeout_seconds
    while len(events := await call_events(call_id)) < count:
        assert time.monotonic() < deadline, f"{call_id}: only {events}"
        await asyncio.sleep(0.5)
    return events


def names(events: list[Event]) -> Counter:
    return Counter(event.event for event in events)


# Events in Prefect


async def test_signed_webhooks_become_prefect_events(
    prefect_server, start_receiver, client
):
    """Started, ended and analyzed become retell.call.* events on the call."""
    server = start_receiver()
    call_id = new_call_id()
    metadata = {"prefect_flow_run_id": str(uuid.uuid4()), "row": "3"}
    bodies = [
        webhook("call_started", call_id, call_status="ongoing", metadata=metadata),
        webhook("call_ended", call_id, metadata=metadata),
        webhook(
            "call_analyzed",
            call_id,
            metadata=metadata,
            call_analysis={"call_successful": True, "call_summary": "Booked."},
        ),
    ]

    answers = [await post(client, server, body, **signed(body)) for body in bodies]

    assert [answer.json()["status"] for answer in answers] == ["accepted"] * 3
    events = await wait_for_events(call_id, 3)
    assert [event.event for event in events] == [
        "retell.call.started",
        "retell.call.ended",
        "retell.call.analyzed",
    ]
    assert {event.resource.id for event in events} == {f"retell.call.{call_id}"}
    assert events[2].payload["call_analysis"]["call_summary"] == "Booked."


async def test_events_relate_agent_number_and_flow_run(
    prefect_server, start_receiver, client
):
    """Each event names the agent, our from-number and the campaign's flow run."""
    server = start_receiver()
    call_id, flow_run_id = new_call_id(), str(uuid.uuid4())
    body = webhook("call_ended", call_id, metadata={"prefect_flow_run_id": flow_run_id})

    await post(client, server, body, **signed(body))

    [event] = await wait_for_events(call_id, 1)
    assert {(r.role, r.id) for r in event.related} == {
        ("agent", "retell.agent.agent_fx"),
        ("from-number", "retell.phone-number.14155550100"),
        ("flow-run", f"prefect.flow-run.{flow_run_id}"),
    }


async def test_payload_has_no_transcript_key_or_full_number(
    prefect_server, start_receiver, client, caplog
):
    """The stored event and the receiver's logs hold no transcript, key or number."""
    caplog.set_level(logging.DEBUG)
    server = start_receiver()
    call_id = new_call_id()
    body = webhook("call_ended", call_id)

    await post(client, server, body, **signed(body))

    [event] = await wait_for_events(call_id, 1)
    stored = event.model_dump_json()
    assert event.payload["to_number"] == "+*******0123"
    assert event.payload["call_status"] == "ended"
    assert "transcript" not in event.payload
    for secret in ("Hello Ada", KEY, "SECRET123", CALLEE[1:]):
        assert secret not in stored
        assert secret not in caplog.text


async def test_transcript_is_included_when_asked(
    prefect_server, start_receiver, client
):
    """include_transcript=True puts the call's transcript in the payload."""
    server = start_receiver(include_transcript=True)
    call_id = new_call_id()
    body = webhook("call_ended", call_id)

    await post(client, server, body, **signed(body))

    [event] = await wait_for_events(call_id, 1)
    assert event.payload["transcript"] == "Agent: Hello Ada\nUser: Hi"


async def test_transcript_too_large_for_prefect_is_left_out(
    prefect_server, start_receiver, client
):
    """A transcript past Prefect's event size is dropped, and the event still sent."""
    server = start_receiver(include_transcript=True)
    call_id = new_call_id()
    body = webhook("call_ended", call_id, transcript="Agent: hello. " * 120_000)

    answer = await post(client, server, body, **signed(body))

    assert answer.json()["status"] == "accepted"
    [event] = await wait_for_events(call_id, 1)
    assert "transcript" not in event.payload
    assert event.payload["transcript_omitted"] == "too large for a Prefect event"


async def test_failed_calls_emit_failed_once_beside_ended(
    prefect_server, start_receiver, client
):
    """Busy, no answer, dial failed: delivered twice, then analyzed, fail once."""
    server = start_receiver()
    reasons = {new_call_id(): r for r in ("dial_busy", "dial_no_answer", "dial_failed")}

    for call_id, reason in reasons.items():
        call = {"call_status": "not_connected", "disconnection_reason": reason}
        ended = webhook("call_ended", call_id, **call)
        analyzed = webhook("call_analyzed", call_id, **call)
        for body in (ended, ended, analyzed):
            assert (await post(client, server, body, **signed(body))).status_code == 200

    for call_id, reason in reasons.items():
        events = await wait_for_events(call_id, 3)
        assert names(events) == {
            "retell.call.ended": 1,
            "retell.call.failed": 1,
            "retell.call.analyzed": 1,
        }
        [failed] = [event for event in events if event.event == "retell.call.failed"]
        assert failed.payload["reason"] == reason


# Field case F21: duplicate, late and out-of-order deliveries


async def test_f21_concurrent_duplicates_late_and_out_of_order(
    prefect_server, start_receiver, client
):
    """One event per (call, event); a call_started after the end is not emitted."""
    server = start_receiver()
    first, second = new_call_id(), new_call_id()
    ended = webhook("call_ended", first)

    together = await asyncio.gather(
        post(client, server, ended, **signed(ended)),
        post(client, server, ended, **signed(ended)),
    )
    later = [
        webhook("call_analyzed", first, call_analysis={"call_successful": True}),
        webhook("call_started", first, call_status="ongoing"),
        webhook("call_ended", second),
        webhook("call_started", second, call_status="ongoing"),
    ]
    answers = [await post(client, server, body, **signed(body)) for body in later]

    assert [answer.status_code for answer in together] == [200, 200]
    assert sorted(answer.json()["status"] for answer in together) == [
        "accepted",
        "duplicate",
    ]
    assert [answer.json()["status"] for answer in answers] == [
        "accepted",
        "superseded",
        "accepted",
        "superseded",
    ]
    assert [e.event for e in await wait_for_events(first, 2)] == [
        "retell.call.ended",
        "retell.call.analyzed",
    ]
    assert [e.event for e in await wait_for_events(second, 1)] == ["retell.call.ended"]
    assert (await health(client, server))["sent_events"] == 3


async def test_repeated_events_are_told_apart_by_body(start_receiver, client):
    """Two transcript updates of a call are both kept; a redelivered one is not."""
    server = start_receiver(prefect_api_url=dead_api_url())
    call_id = new_call_id()
    one = webhook("transcript_updated", call_id, call_status="ongoing")
    two = webhook("transcript_updated", call_id, call_status="ongoing", duration_ms=5)

    statuses = [
        (await post(client, server, body, **signed(body))).json()["status"]
        for body in (one, one, two)
    ]

    assert statuses == ["accepted", "duplicate", "accepted"]
    assert (await health(client, server))["queued_events"] == 2


# Signatures


def _bad_signatures(body: bytes) -> dict[str, dict[str, str]]:
    old_ms = now_ms() - 301_000
    return {
        "missing": {},
        "empty": {"x-retell-signature": ""},
        "malformed": {"x-retell-signature": "v=1,d=not-hex"},
        "wrong key": signed(body, key="key_other"),
        "other body": signed(body.replace(b"user_hangup", b"agent_hangup")),
        "stale": signed(body, at_ms=old_ms),
        "from the future": signed(body, at_ms=now_ms() + 301_000),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "malformed",
        "wrong key",
        "other body",
        "stale",
        "from the future",
    ],
)
async def test_bad_signature_is_refused_and_nothing_queued(
    start_receiver, client, case
):
    """A missing, malformed, wrong or stale signature answers 401 and queues nothing."""
    server = start_receiver(prefect_api_url=dead_api_url())
    body = webhook("call_ended", new_call_id())

    answer = await post(client, server, body, **_bad_signatures(body)[case])

    assert answer.status_code == 401
    assert KEY not in answer.text
    assert (await health(client, server))["queued_events"] == 0


async def test_replayed_webhook_is_refused_once_stale(start_receiver, client):
    """A captured webhook replayed past five minutes is refused, even if new to us."""
    server = start_receiver(prefect_api_url=dead_api_url())
    body = webhook("call_ended", new_call_id())
    captured = signed(body, at_ms=now_ms() - 6 * 60_000)

    answer = await post(client, server, body, **captured)

    assert answer.status_code == 401
    assert "stale" in answer.json()["message"]
    assert (await health(client, server))["queued_events"] == 0


async def test_replay_within_the_window_is_acknowledged_not_emitted(
    start_receiver, client
):
    """The same signed webhook sent again answers 200 duplicate and queues nothing."""
    server = start_receiver(prefect_api_url=dead_api_url())
    body = webhook("call_ended", new_call_id())
    header = signed(body)

    first = await post(client, server, body, **header)
    again = await post(client, server, body, **header)

    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    assert (await health(client, server))["queued_events"] == 1


async def test_signature_from_the_official_sdk_is_accepted(start_receiver, client):
    """A body signed by retell-sdk's own sign, non-ASCII and spacing kept, passes."""
    server = start_receiver(prefect_api_url=dead_api_url())
    call = {"call_id": new_call_id(), "call_status": "ended", "metadata": {"n": "Zoë"}}
    text = json.dumps({"event": "call_ended", "call": call}, ensure_ascii=False)

    header = sdk.symmetric["sign"](text, KEY)
    answer = await post(client, server, text.encode(), **{"x-retell-signature": header})

    assert answer.json()["status"] == "accepted"


async def test_sdk_signature_with_another_key_is_refused(start_receiver, client):
    """retell-sdk's signature made with another key is refused with 401."""
    server = start_receiver(prefect_api_url=dead_api_url())
    text = webhook("call_ended", new_call_id()).decode()

    header = sdk.symmetric["sign"](text, "key_other")
    answer = await post(client, server, text.encode(), **{"x-retell-signature": header})

    assert answer.status_code == 401


# Bodies


async def test_body_at_the_cap_is_accepted(start_receiver, client):
    """A signed body of exactly max_body_bytes is read and accepted."""
    server = start_receiver(prefect_api_url=dead_api_url(), max_body_bytes=1024)
    body = webhook("call_ended", new_call_id(), metadata={"pad": ""})
    body = body.replace(b'"pad":""', b'"pad":"' + b"x" * (1024 - len(body)) + b'"')

    answer = await post(client, server, body, **signed(body))

    assert len(body) == 1024
    assert answer.json()["status"] == "accepted"


async def test_oversized_body_is_refused_with_413(start_receiver, client):
    """A signed body one byte over max_body_bytes answers 413."""
    server = start_receiver(prefect_api_url=dead_api_url(), max_body_bytes=1024)
    body = webhook("call_ended", new_call_id(), metadata={"pad": "x" * 1024})

    answer = await post(client, server, body, **signed(body))

    assert answer.status_code == 413
    assert (await health(client, server))["queued_events"] == 0


async def test_oversized_chunked_body_is_refused_with_413(start_receiver, client):
    """A body sent without a length is cut off at the cap with 413."""
    server = start_receiver(prefect_api_url=dead_api_url(), max_body_bytes=1024)

    async def chunks():
        for _ in range(64):
            yield b"x" * 100

    answer = await client.post(f"{server.url}/", content=chunks())

    assert answer.status_code == 413


async def test_signed_body_that_is_not_json_is_refused_with_400(start_receiver, client):
    """A correctly signed body that is not JSON answers 400."""
    server = start_receiver(prefect_api_url=dead_api_url())
    body = b"<html>502 Bad Gateway</html>"

    answer = await post(client, server, body, **signed(body))

    assert answer.status_code == 400
    assert answer.json()["message"] == "Retell webhook body is not JSON (28 bytes)"


async def test_signed_json_that_is_not_a_webhook_is_refused_with_422(
    start_receiver, client
):
    """Signed JSON without a call answers 422, naming the missing field."""
    server = start_receiver(prefect_api_url=dead_api_url())
    body = b'{"event":"call_ended"}'

    answer = await post(client, server, body, **signed(body))

    assert answer.status_code == 422
    assert answer.json()["message"].endswith("wrong or missing: call")


async def test_unsigned_garbage_is_refused_as_unsigned(start_receiver, client):
    """A body that is not JSON and not signed answers 401: nothing is parsed first."""
    server = start_receiver(prefect_api_url=dead_api_url())

    answer = await post(client, server, b"{not json")

    assert answer.status_code == 401


async def test_only_post_is_a_webhook(start_receiver, client):
    """GET on the webhook path answers 405."""
    server = start_receiver(prefect_api_url=dead_api_url())

    assert (await client.get(f"{server.url}/")).status_code == 405


def test_app_needs_a_prefect_api():
    """Without PREFECT_API_URL or prefect_api_url, building the app is refused."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(RetellConfigurationError, match="set PREFECT_API_URL"),
    ):
        create_webhook_app(KEY)


@pytest.mark.parametrize("setting", [{"batch_size": 0}, {"attempt_timeout_seconds": 0}])
def test_delivery_policy_refuses_settings_that_cannot_work(setting):
    """A batch of no events or a zero timeout is a configuration error."""
    with pytest.raises(RetellConfigurationError, match="must be"):
        DeliveryPolicy(**setting)


# The Prefect API down, slow or failing


class ApiGate:
    """A port in front of the Prefect test server that we open and close at will.

    `refuse` leaves the port unbound; `hang` binds it and never accepts, so the
    kernel completes connections that then wait forever; `unavailable` answers
    every request with 503; `forward` relays bytes to the real server.
    """

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname, target.port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{target.path}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._listener: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None

    def refuse(self) -> None:
        self._close()

    def hang(self) -> None:
        self._close()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)

    def unavailable(self) -> None:
        self._start(self._answer_503)

    def forward(self) -> None:
        self._start(self._relay)

    def stop(self) -> None:
        self._close()
        asyncio.run_coroutine_threadsafe(self._cancel_relays(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _cancel_relays(self) -> None:
        relays = [
            task for task in asyncio.all_tasks() if task is not asyncio.current_task()
        ]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    def _start(self, handler) -> None:
        self._close()
        coroutine = asyncio.start_server(handler, "127.0.0.1", self.port)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        self._server = future.result(5)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._server is not None:
            server, self._server = self._server, None
            self._loop.call_soon_threadsafe(server.close)

    async def _answer_503(self, reader, writer) -> None:
        await reader.read(65536)
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
            b"connection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def _relay(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pipe(source, sink) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer)
        )


@pytest.fixture
def gate(prefect_server) -> Iterator[ApiGate]:
    from prefect.settings import PREFECT_API_URL

    api_gate = ApiGate(PREFECT_API_URL.value())
    yield api_gate
    api_gate.stop()


@pytest.mark.parametrize("outage", ["refuse", "hang", "unavailable"])
async def test_events_wait_out_a_prefect_outage(start_receiver, client, gate, outage):
    """Webhooks are answered at once while Prefect is away; each event lands once."""
    getattr(gate, outage)()
    server = start_receiver(prefect_api_url=gate.url)
    calls = [new_call_id() for _ in range(3)]
    bodies = [
        webhook("call_ended", calls[0]),
        webhook("call_ended", calls[1], disconnection_reason="dial_busy"),
        webhook("call_started", calls[2], call_status="ongoing"),
        webhook("call_ended", calls[2]),
    ]

    for body in bodies:
        started = time.monotonic()
        answer = await post(client, server, body, **signed(body))
        assert answer.status_code == 200
        assert time.monotonic() - started < 5.0
    waiting = await wait_for_health(
        client, server, lambda state: state["prefect_api"] == "failing"
    )
    gate.forward()
    done = await wait_for_health(client, server, lambda s: s["queued_events"] == 0)

    assert waiting["queued_events"] == 5
    assert done["sent_events"] == 5
    assert names(await wait_for_events(calls[0], 1)) == {"retell.call.ended": 1}
    assert names(await wait_for_events(calls[1], 2)) == {
        "retell.call.ended": 1,
        "retell.call.failed": 1,
    }
    assert names(await wait_for_events(calls[2], 2)) == {
        "retell.call.started": 1,
        "retell.call.ended": 1,
    }


async def test_full_queue_answers_503_and_takes_the_retry(start_receiver, client, gate):
    """Past max_queued_events a webhook gets 503; Retell's retry is then accepted."""
    gate.refuse()
    server = start_receiver(prefect_api_url=gate.url, max_queued_events=2)
    first, second, third = (webhook("call_ended", new_call_id()) for _ in range(3))
    for body in (first, second):
        await post(client, server, body, **signed(body))

    refused = await post(client, server, third, **signed(third))
    full = await client.get(f"{server.url}/healthz")
    gate.forward()
    await wait_for_health(client, server, lambda state: state["queued_events"] == 0)
    retried = await post(client, server, third, **signed(third))

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "30"
    assert (full.status_code, full.json()["status"]) == (503, "full")
    assert retried.json()["status"] == "accepted"


async def test_queued_events_are_sent_at_shutdown(client, gate):
    """Events still queued when the receiver stops are sent before it exits."""
    gate.refuse()
    # After one failure the sender would wait a minute: only the stop sends.
    patient = DeliveryPolicy(
        attempt_timeout_seconds=2.0,
        initial_backoff_seconds=60.0,
        max_backoff_seconds=60.0,
        jitter=lambda: 1.0,
    )
    server = WebhookReceiverServer(
        create_webhook_app(KEY, prefect_api_url=gate.url, delivery=patient)
    ).start()
    call_id = new_call_id()
    body = webhook("call_analyzed", call_id)
    await post(client, server, body, **signed(body))
    await wait_for_health(
        client, server, lambda state: state["prefect_api"] == "failing"
    )
    gate.forward()

    before = await health(client, server)
    await asyncio.to_thread(server.stop)

    assert before["queued_events"] == 1
    assert names(await wait_for_events(call_id, 1)) == {"retell.call.analyzed": 1}


# The command line


def _cli_environment(home: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "RETELL_"))
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        **extra,
    )
    return env


async def _wait_until_listening(
    process: subprocess.Popen, url: str, timeout_seconds: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the receiver did not start"
            await asyncio.sleep(0.2)


async def test_cli_serves_with_a_saved_block(prefect_server, client, tmp_path):
    """`webhooks serve` with a block: 401 unsigned, 200 signed, the key never shown."""
    from prefect.settings import PREFECT_API_URL

    await RetellCredentials(api_key=KEY).asave("receiver-test", overwrite=True)
    port = free_port()
    env = _cli_environment(tmp_path, PREFECT_API_URL=PREFECT_API_URL.value())
    command = [str(CLI), "webhooks", "serve", "--port", str(port)]
    command += ["--credentials-block", "receiver-test"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_listening(process, url)
        body = webhook("call_ended", new_call_id())
        unsigned = await client.post(f"{url}/", content=body)
        accepted = await client.post(f"{url}/", content=body, headers=signed(body))
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)

    assert unsigned.status_code == 401
    assert accepted.json()["status"] == "accepted"
    assert f"Receiving Retell webhooks at {url}/" in stdout
    assert process.returncode == 0, stderr
    assert KEY not in stdout + stderr
    assert "SECRET123" not in stdout + stderr


def test_cli_refuses_to_start_without_a_prefect_api(tmp_path):
    """With no PREFECT_API_URL the command says what to set and exits 2."""
    env = _cli_environment(tmp_path, RETELL_API_KEY=KEY)
    result = subprocess.run(
        [str(CLI), "webhooks", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "set PREFECT_API_URL" in result.stderr
    assert KEY not in result.stdout + result.stderr
