"""Signed call webhooks: events, signatures, retries, faults, reset and shutdown.

Each test starts its own receiver: a plain HTTP server on 127.0.0.1 that records
the raw body and headers of every POST and answers as the test scripts it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from retell import Retell

from prefect_retell.sandbox import (
    DEFAULT_SANDBOX_API_KEY,
    Outcome,
    Sandbox,
    SandboxConfig,
    SandboxServer,
    WebhookFault,
    serve_sandbox,
)

from .support import TIME_SCALE, TWILIO

ANSWERED = "+14155550123"
UNANSWERED = "+14155550124"
REMINDER_AGENT = "agent_sandbox_reminder"
SIGNATURE = "x-retell-signature"


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got."""

    body: bytes
    headers: dict[str, str]
    path: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.payload["event"]

    @property
    def call_id(self) -> str:
        return self.payload["call"]["call_id"]


# The receiver's script: given a hit and how many earlier hits had the same event
# for the same call, the status to answer and the seconds to wait first.
Answer = Callable[[Hit, int], "int | tuple[int, float]"]


class Receiver:
    """A webhook endpoint on a free loopback port that records what it gets."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.hits: list[Hit] = []
        self.answer: Answer = answer or (lambda hit, seen: 200)
        self.released = threading.Event()
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # Join every handler thread at close, so that tests can count threads.
        self._server.daemon_threads = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver"
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/retell"

    def wait_for(self, count: int, timeout_seconds: float = 10.0) -> list[Hit]:
        """Wait until `count` POSTs arrived and return all so far."""
        with self._arrived:
            arrived = self._arrived.wait_for(
                lambda: len(self.hits) >= count, timeout_seconds
            )
            hits = list(self.hits)
        assert arrived, f"got {[(h.event, h.call_id) for h in hits]}, not {count}"
        return hits

    def events(self, call_id: str | None = None) -> list[str]:
        """The event names received so far, in order, for one call or all."""
        with self._arrived:
            hits = list(self.hits)
        return [hit.event for hit in hits if call_id in (None, hit.call_id)]

    def close(self) -> None:
        """Stop serving; answers still waiting are released first."""
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, hit: Hit) -> int:
        with self._arrived:
            seen = sum(
                1
                for old in self.hits
                if (old.event, old.call_id) == (hit.event, hit.call_id)
            )
            self.hits.append(hit)
            self._arrived.notify_all()
        return seen

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                hit = Hit(body, headers, self.path)
                answer = receiver.answer(hit, receiver._record(hit))
                status, wait = answer if isinstance(answer, tuple) else (answer, 0)
                receiver.released.wait(wait)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sandbox gave up waiting and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver answering 200 to everything, closed after the test."""
    running = Receiver()
    yield running
    running.close()


def api(server: SandboxServer) -> httpx.Client:
    """A synchronous client for the sandbox's Retell routes."""
    headers = {"Authorization": f"Bearer {DEFAULT_SANDBOX_API_KEY}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=10)


def place(server: SandboxServer, to_number: str, outcome: Outcome) -> str:
    """Stage `outcome` for `to_number`, place a call there, return its id."""
    server.sandbox.set_outcome(to_number, outcome)
    with api(server) as http:
        body = {"from_number": TWILIO, "to_number": to_number}
        response = http.post("/v2/create-phone-call", json=body)
    assert response.status_code == 201
    return response.json()["call_id"]


def answered(ring_seconds: float = 1, talk_seconds: float = 3) -> Outcome:
    return Outcome(
        kind="answered", ring_seconds=ring_seconds, talk_seconds=talk_seconds
    )


def no_answer() -> Outcome:
    return Outcome(kind="no_answer", ring_seconds=1)


def settle(seconds: float = 0.3) -> None:
    """Leave time for deliveries that should not come, before asserting so."""
    time.sleep(seconds)


# -- events ---------------------------------------------------------------------


def test_answered_call_sends_three_events_in_order(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """An answered call's receiver gets call_started, call_ended, call_analyzed."""
    sandbox.set_webhook_url(receiver.url)
    call_id = place(server, ANSWERED, answered())

    started, ended, analyzed = receiver.wait_for(3)

    assert [started.event, ended.event, analyzed.event] == [
        "call_started",
        "call_ended",
        "call_analyzed",
    ]
    assert all(set(hit.payload) == {"event", "call"} for hit in receiver.hits)
    assert started.payload["call"]["call_status"] == "ongoing"
    assert started.payload["call"]["end_timestamp"] is None
    final = sandbox.get_call(call_id)
    assert analyzed.payload["call"] == final
    assert final["call_analysis"] is not None
    assert ended.payload["call"] == {**final, "call_analysis": None}
    assert started.headers["content-type"] == "application/json"
    assert started.path == "/hooks/retell"


def test_unanswered_call_sends_ended_and_analyzed_only(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """A call that never connects has no call_started."""
    sandbox.set_webhook_url(receiver.url)
    call_id = place(server, UNANSWERED, no_answer())

    ended, analyzed = receiver.wait_for(2)
    settle()

    assert receiver.events() == ["call_ended", "call_analyzed"]
    assert ended.payload["call"]["call_status"] == "not_connected"
    assert ended.payload["call"]["disconnection_reason"] == "dial_no_answer"
    assert ended.payload["call"]["call_analysis"] is None
    assert analyzed.payload["call"] == sandbox.get_call(call_id)


def test_error_call_sends_call_ended_only(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """An error call has no analysis in the sandbox, so no call_analyzed either."""
    sandbox.set_webhook_url(receiver.url)
    place(server, UNANSWERED, Outcome(kind="error"))

    (ended,) = receiver.wait_for(1)
    settle()

    assert receiver.events() == ["call_ended"]
    assert ended.payload["call"]["call_status"] == "error"


def test_stop_call_sends_ended_with_manual_stopped(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """A call stuck live ends, and is analysed, when stop-call ends it."""
    sandbox.set_webhook_url(receiver.url)
    outcome = Outcome(kind="stuck_ongoing", ring_seconds=1)
    call_id = place(server, ANSWERED, outcome)
    receiver.wait_for(1)
    settle()
    assert receiver.events() == ["call_started"]

    with api(server) as http:
        assert http.post(f"/v2/stop-call/{call_id}").status_code == 204
    _, ended, _ = receiver.wait_for(3)

    assert receiver.events() == ["call_started", "call_ended", "call_analyzed"]
    assert ended.payload["call"]["call_status"] == "ended"
    assert ended.payload["call"]["disconnection_reason"] == "manual_stopped"


def test_no_webhook_url_sends_nothing(server: SandboxServer, sandbox: Sandbox):
    """Without an account or agent URL no delivery is attempted."""
    call_id = place(server, UNANSWERED, no_answer())
    settle()

    assert sandbox.get_call(call_id)["call_analysis"] is not None
    assert sandbox.stats()["webhooks"]["attempted"] == {}


def test_agent_webhook_url_replaces_the_account_url(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """Calls of an agent with its own webhook_url go there, not to the account's."""
    own = Receiver()
    try:
        sandbox.set_webhook_url(receiver.url)
        sandbox.set_webhook_url(own.url, agent_id=REMINDER_AGENT)
        place(server, UNANSWERED, no_answer())

        own.wait_for(2)
        settle()
        with api(server) as http:
            agent = http.get(f"/get-agent/{REMINDER_AGENT}").json()
    finally:
        own.close()

    assert own.events() == ["call_ended", "call_analyzed"]
    assert receiver.hits == []
    assert agent["webhook_url"] == own.url


def test_webhook_url_set_over_http(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """POST /sandbox/webhook-url sets the account URL; a bad URL answers 400."""
    with httpx.Client(base_url=server.base_url) as http:
        bad = http.post("/sandbox/webhook-url", json={"url": "ftp://example"})
        good = http.post("/sandbox/webhook-url", json={"url": receiver.url})
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(2)

    assert bad.status_code == 400
    assert "absolute http or https URL" in bad.json()["message"]
    assert good.status_code == 200


def test_config_rejects_a_non_http_webhook_url():
    """SandboxConfig refuses a webhook URL it could not POST to."""
    with pytest.raises(ValueError, match="absolute http or https URL"):
        SandboxConfig(webhook_url="127.0.0.1:9000/hooks")


# -- signatures -----------------------------------------------------------------


def test_official_sdk_verifies_every_signature(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """retell-sdk's verify accepts each delivery's signature, and only for its body."""
    sandbox.set_webhook_url(receiver.url)
    place(server, ANSWERED, answered())
    place(server, UNANSWERED, no_answer())
    hits = receiver.wait_for(5)
    sdk = Retell(api_key=DEFAULT_SANDBOX_API_KEY, base_url=server.base_url)

    verdicts = [
        sdk.verify(hit.body.decode(), DEFAULT_SANDBOX_API_KEY, hit.headers[SIGNATURE])
        for hit in hits
    ]
    tampered = hits[0].body.replace(b'"call_started"', b'"call_ended"')

    assert verdicts == [True] * 5
    assert not sdk.verify(
        tampered.decode(), DEFAULT_SANDBOX_API_KEY, hits[0].headers[SIGNATURE]
    )
    assert not sdk.verify(
        hits[0].body.decode(), "key_other", hits[0].headers[SIGNATURE]
    )


def test_signature_is_hmac_of_body_and_millisecond_timestamp(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """The header is v=<unix ms>,d=<hex HMAC-SHA256 of body + timestamp>."""
    sandbox.set_webhook_url(receiver.url)
    place(server, UNANSWERED, no_answer())

    hit = receiver.wait_for(1)[0]
    version, digest = hit.headers[SIGNATURE].split(",")
    timestamp = version.removeprefix("v=")
    expected = hmac.new(
        DEFAULT_SANDBOX_API_KEY.encode(),
        hit.body + timestamp.encode(),
        hashlib.sha256,
    ).hexdigest()

    assert digest == f"d={expected}"
    assert abs(int(timestamp) - time.time() * 1000) < 60_000


# -- retries --------------------------------------------------------------------


def test_retries_after_500_until_acknowledged(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """Two 500s for call_ended, then 200: three attempts, one acknowledgement."""
    receiver.answer = lambda hit, seen: (
        500 if hit.event == "call_ended" and seen < 2 else 200
    )
    sandbox.set_webhook_url(receiver.url)
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(4)
    settle()
    ended = [hit for hit in receiver.hits if hit.event == "call_ended"]
    webhooks = sandbox.stats()["webhooks"]

    assert len(ended) == 3
    assert len({hit.body for hit in ended}) == 1
    assert webhooks["attempted"] == {"call_ended": 3, "call_analyzed": 1}
    assert webhooks["acknowledged"] == {"call_ended": 1, "call_analyzed": 1}
    assert webhooks["failed"] == {}
    assert webhooks["in_flight"] == 0


def test_gives_up_after_three_retries_without_holding_back_later_events(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """call_ended always answered 500 is tried four times; call_analyzed still goes."""
    receiver.answer = lambda hit, seen: 500 if hit.event == "call_ended" else 200
    sandbox.set_webhook_url(receiver.url)
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(5)
    settle()
    webhooks = sandbox.stats()["webhooks"]

    assert receiver.events().count("call_ended") == 4
    assert receiver.events().count("call_analyzed") == 1
    assert webhooks["failed"] == {"call_ended": 1}
    assert webhooks["acknowledged"] == {"call_analyzed": 1}


def test_retries_after_a_timeout(own_server: Callable[..., SandboxServer]):
    """An answer slower than webhook_timeout_seconds counts as failed and is retried."""
    receiver = Receiver(
        lambda hit, seen: (200, 3.0) if hit.event == "call_ended" and seen == 0 else 200
    )
    try:
        server = own_server(webhook_url=receiver.url, webhook_timeout_seconds=0.3)
        place(server, UNANSWERED, no_answer())
        receiver.wait_for(3)
        settle()
        webhooks = server.sandbox.stats()["webhooks"]
    finally:
        receiver.close()

    # call_analyzed may come before the retry: retries do not hold the line.
    assert sorted(receiver.events()) == ["call_analyzed", "call_ended", "call_ended"]
    assert webhooks["attempted"] == {"call_ended": 2, "call_analyzed": 1}
    assert webhooks["acknowledged"] == {"call_ended": 1, "call_analyzed": 1}


# -- faults ---------------------------------------------------------------------


def test_duplicate_fault_sends_copies_at_once(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """copies=3 sends three identical call_ended bodies concurrently."""
    # Each copy is answered only once all three arrived: sent one after another,
    # the first would wait for the others and time out instead.
    barrier = threading.Barrier(3, timeout=5)

    def answer(hit: Hit, seen: int) -> int:
        if hit.event == "call_ended":
            barrier.wait()
        return 200

    receiver.answer = answer
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="call_ended", action="duplicate", copies=3))
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(4)
    settle()
    ended = [hit for hit in receiver.hits if hit.event == "call_ended"]
    webhooks = sandbox.stats()["webhooks"]

    assert len(ended) == 3
    assert len({hit.body for hit in ended}) == 1
    assert webhooks["attempted"]["call_ended"] == 3
    assert webhooks["acknowledged"]["call_ended"] == 3


def test_delay_fault_makes_an_event_arrive_late(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """call_started delayed half a second arrives after the call's other events."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="call_started", action="delay", seconds=0.5))
    place(server, ANSWERED, answered())

    receiver.wait_for(3)

    assert receiver.events() == ["call_ended", "call_analyzed", "call_started"]


def test_reorder_fault_sends_an_event_after_the_next_one(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """A reordered call_started arrives right after call_ended."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="call_started", action="reorder"))
    call_id = place(server, ANSWERED, answered())

    started = receiver.wait_for(3)[1]

    assert receiver.events() == ["call_ended", "call_started", "call_analyzed"]
    assert started.payload["call"]["call_status"] == "ongoing"
    assert started.call_id == call_id


def test_reorder_fault_holds_call_ended_of_an_unanswered_call(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """With no call_started, a held call_ended comes after call_analyzed."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="*", action="reorder"))
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(2)

    assert receiver.events() == ["call_analyzed", "call_ended"]
    assert sandbox.faults()[0]["applied"] == 1


def test_reorder_fault_cannot_hold_a_call_s_last_event(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """call_analyzed has nothing to wait for, so the fault stays armed, unused."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="call_analyzed", action="reorder"))
    place(server, UNANSWERED, no_answer())

    receiver.wait_for(2)

    assert receiver.events() == ["call_ended", "call_analyzed"]
    assert sandbox.faults()[0]["applied"] == 0


def test_drop_fault_targets_one_destination(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """call_analyzed dropped for one number never comes; the other number's does."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(
        WebhookFault(event="call_analyzed", action="drop", to_number=ANSWERED, times=0)
    )
    dropped_call = place(server, ANSWERED, answered())
    kept_call = place(server, UNANSWERED, no_answer())

    receiver.wait_for(4)
    settle()
    webhooks = sandbox.stats()["webhooks"]

    assert receiver.events(dropped_call) == ["call_started", "call_ended"]
    assert receiver.events(kept_call) == ["call_ended", "call_analyzed"]
    assert webhooks["dropped"] == {"call_analyzed": 1}
    assert webhooks["attempted"]["call_analyzed"] == 1


def test_duplicated_late_and_out_of_order_deliveries_together(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """F21: call_ended twice at once, then call_analyzed, then a stale call_started."""
    sandbox.set_webhook_url(receiver.url)
    sandbox.add_fault(WebhookFault(event="call_ended", action="duplicate"))
    sandbox.add_fault(WebhookFault(event="call_started", action="delay", seconds=0.5))
    place(server, ANSWERED, answered())

    hits = receiver.wait_for(4)

    assert [hit.event for hit in hits] == [
        "call_ended",
        "call_ended",
        "call_analyzed",
        "call_started",
    ]
    assert hits[0].body == hits[1].body


def test_webhook_faults_over_http(server: SandboxServer, sandbox: Sandbox):
    """POST /sandbox/faults takes webhook faults beside API faults."""
    faults = [
        {"endpoint": "get-call", "action": "error"},
        {"event": "call_ended", "action": "duplicate", "copies": 3},
    ]
    with httpx.Client(base_url=server.base_url) as http:
        added = http.post("/sandbox/faults", json=faults)
        bad = http.post(
            "/sandbox/faults", json={"event": "call_done", "action": "drop"}
        )

    assert added.status_code == 200
    assert [fault.get("event") for fault in added.json()] == [None, "call_ended"]
    assert added.json()[1]["copies"] == 3
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("event: Value error, unknown event")


# -- stats, reset and shutdown --------------------------------------------------


def test_stats_count_get_call_requests_per_call(
    server: SandboxServer, sandbox: Sandbox
):
    """Each call's entry in the stats says how often get-call asked for it."""
    polled = place(server, ANSWERED, answered())
    quiet = place(server, UNANSWERED, no_answer())
    with api(server) as http:
        for _ in range(3):
            http.get(f"/v2/get-call/{polled}")
        stats = httpx.get(f"{server.base_url}/sandbox/stats").json()

    requests = {call["call_id"]: call["get_call_requests"] for call in stats["calls"]}
    assert requests == {polled: 3, quiet: 0}
    assert set(stats["webhooks"]) == {
        "attempted",
        "acknowledged",
        "failed",
        "dropped",
        "in_flight",
    }


def test_reset_forgets_webhook_state(
    server: SandboxServer, sandbox: Sandbox, receiver: Receiver
):
    """reset() abandons queued events and clears URLs, faults and counters."""
    sandbox.set_webhook_url(receiver.url)
    place(server, UNANSWERED, no_answer())
    receiver.wait_for(2)
    sandbox.set_webhook_url(receiver.url, agent_id=REMINDER_AGENT)
    sandbox.add_fault(WebhookFault(event="*", action="drop", times=0))
    place(server, ANSWERED, Outcome(kind="no_answer", ring_seconds=30))

    sandbox.reset()
    place(server, UNANSWERED, no_answer())
    settle(0.6)

    assert len(receiver.hits) == 2
    assert sandbox.faults() == []
    assert sandbox.stats()["webhooks"] == {
        "attempted": {},
        "acknowledged": {},
        "failed": {},
        "dropped": {},
        "in_flight": 0,
    }
    with api(server) as http:
        assert http.get(f"/get-agent/{REMINDER_AGENT}").json()["webhook_url"] is None


def test_stopping_the_server_leaves_no_delivery_or_thread():
    """Stopping cancels deliveries in flight and queued; no thread outlives it."""
    receiver = Receiver(lambda hit, seen: (200, 30.0))
    threads_before = set(threading.enumerate())
    config = SandboxConfig(time_scale=TIME_SCALE, webhook_url=receiver.url)

    try:
        with serve_sandbox(config) as server:
            place(server, ANSWERED, answered(ring_seconds=1, talk_seconds=30))
            receiver.wait_for(1)
        in_flight = server.sandbox.stats()["webhooks"]["in_flight"]
        settle(0.6)
    finally:
        receiver.close()

    assert receiver.events() == ["call_started"]
    assert in_flight == 0
    assert set(threading.enumerate()) - threads_before == set()


def test_cli_sandbox_sends_webhooks_to_its_webhook_url(receiver: Receiver):
    """`prefect-retell sandbox --webhook-url` delivers signed call events."""
    script = (
        "from prefect_retell.cli import main; "
        f"main(['sandbox', '--port', '0', '--time-scale', '0.01', "
        f"'--webhook-url', {receiver.url!r}])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base_url = process.stdout.readline().split()[-1]
        headers = {"Authorization": f"Bearer {DEFAULT_SANDBOX_API_KEY}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            # An unseeded number: its outcome depends on the seed, and every
            # outcome of a seeded number ends with call_ended.
            http.post(
                "/v2/create-phone-call",
                json={"from_number": TWILIO, "to_number": UNANSWERED},
            )
        hits = [hit for hit in receiver.wait_for(2) if hit.event == "call_ended"]
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    finally:
        process.kill()

    assert len(hits) == 1
    sdk = Retell(api_key=DEFAULT_SANDBOX_API_KEY, base_url=base_url)
    assert sdk.verify(
        hits[0].body.decode(), DEFAULT_SANDBOX_API_KEY, hits[0].headers[SIGNATURE]
    )
