"""A receiver for Retell's call webhooks that passes them on as Prefect events.

`create_webhook_app` builds an ASGI app to put behind a reverse proxy:

    POST /         a Retell webhook; 200 once its events are queued
    GET  /healthz  the queue's depth and how sending to Prefect goes

Each POST goes through these steps; the status in parentheses answers a refusal:

1. the body is read, at most `max_body_bytes` of it (413);
2. `verify_webhook` checks `x-retell-signature` over those exact bytes (401);
3. `parse_webhook` reads it (400 when not JSON, 422 when not a call event);
4. the pair (call id, event) is claimed in one step, so a redelivery, even one
   arriving at the same moment, answers 200 `duplicate`; a `call_started` that
   comes after the call's end answers 200 `superseded`, so that the call's state
   never moves backwards; neither is emitted;
5. `prefect_events_for` gives the events, which join the outbox (503 when the
   outbox is full: the claim is undone, so Retell's next retry is taken).

No request waits on Prefect. A background task sends the outbox, oldest first,
in batches, to the Prefect API's `POST /events`, which answers only once the
server holds the batch; an event leaves the outbox only then. While the API is
down, slow or failing, the task retries with growing pauses, and the receiver
keeps answering Retell. An event the API refuses as invalid (400, 413, 422) is
found by sending one at a time, then dropped with an error in the log, so that
it cannot hold back the rest. Each event's `occurred` is the moment the receiver
accepted the webhook.

Why not `prefect.events.emit_event`: it hands events to Prefect's process-wide
events worker, which streams them over a websocket without a receipt for each.
When the server stays unreachable through the events client's reconnection
attempts, the worker logs the event, payload included, and goes on to the next:
the event is gone unless a later one happens to carry it along.

Each event's id is derived from the call id and the event, so an event sent
twice (a batch whose answer was lost, or two receivers behind one proxy) is
kept once: Prefect's server passes on an event id it has not seen recently (to
storage, automations and subscribers alike), and never stores an id twice.

Shortcomings, each marked where it lives:
- The outbox and the de-duplication memory are in this process's memory. Events
  still queued when the process stops are lost once `shutdown_timeout_seconds`
  of trying have passed (the count is logged), and a restarted receiver emits a
  redelivered webhook again (Prefect then keeps one copy, by its id).
- Sending was tested against a self-hosted Prefect server, not Prefect Cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import socket
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn
from prefect.client.orchestration import PrefectClient
from prefect.events import Event
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_KEY,
    PREFECT_API_URL,
    get_current_settings,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prefect_retell._serving import bind, start_in_thread, url_of, uvicorn_config
from prefect_retell.errors import RetellConfigurationError
from prefect_retell.webhooks import (
    SIGNATURE_HEADER,
    WebhookDeduplicator,
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    parse_webhook,
    prefect_events_for,
    verify_webhook,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_QUEUED_EVENTS",
    "DEFAULT_REMEMBERED_PAIRS",
    "DeliveryPolicy",
    "WebhookReceiverServer",
    "create_webhook_app",
    "run_webhook_receiver",
]

logger = logging.getLogger(__name__)

# Calls with long transcripts and word timings reach hundreds of kB; the cap
# keeps a stranger from filling memory before the signature is checked.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# Events are a few kB each without transcripts: tens of MB at the most.
DEFAULT_MAX_QUEUED_EVENTS = 10_000
# Retell redelivers within minutes; at 16 calls a second (three events each),
# 100 000 pairs reach back about half an hour, in some 20 MB.
# SHORTCOMING: the memory is per process and lost on restart; receivers behind
# one proxy, or a restarted one, rely on Prefect skipping repeated event ids.
DEFAULT_REMEMBERED_PAIRS = 100_000

# Retell sends these once per call, each a step of its life; other events (such
# as transcript_updated) come many times per call, told apart by their bodies.
_ONCE_PER_CALL = frozenset({"call_started", "call_ended", "call_analyzed"})
_AFTER_START = ("call_ended", "call_analyzed")
# Fixed for good: changing it would give the same webhook a new event id.
_EVENT_ID_NAMESPACE = uuid.UUID("5d1c2f3e-9a47-4b8e-a3f6-2c7d8e9b0a14")
_REFUSED_STATUSES = frozenset({400, 413, 422})
# Failures of the network or the API, which end by themselves.
_RETRYABLE = (httpx.HTTPError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How queued events are sent to the Prefect API.

    Attributes:
        batch_size: The most events in one request.
        attempt_timeout_seconds: The longest wait for one request, retries by
            Prefect's own client included; a hanging API is then tried again.
        initial_backoff_seconds: The pause after a first failed attempt; it
            doubles after each further failure.
        max_backoff_seconds: The longest pause between two attempts, and so the
            longest delay between the API's return and the first events sent.
        shutdown_timeout_seconds: How long a stopping receiver keeps trying to
            send what is still queued.
        jitter: A function returning a factor in (0.75, 1]; fixed in tests.
    """

    batch_size: int = 100
    attempt_timeout_seconds: float = 10.0
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    shutdown_timeout_seconds: float = 10.0
    jitter: Callable[[], float] = field(
        default=lambda: random.uniform(0.75, 1.0), repr=False
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RetellConfigurationError(
                f"batch_size must be at least 1, not {self.batch_size}"
            )
        for name in ("attempt_timeout_seconds", "initial_backoff_seconds"):
            if getattr(self, name) <= 0:
                raise RetellConfigurationError(
                    f"{name} must be more than 0, not {getattr(self, name)}"
                )

    def wait_seconds(self, failures: int) -> float:
        """The pause after `failures` failed attempts in a row."""
        backoff = self.initial_backoff_seconds * 2 ** min(failures - 1, 30)
        return min(backoff, self.max_backoff_seconds) * self.jitter()


class _Outbox:
    """Events accepted from Retell and not yet taken by Prefect, oldest first.

    Bounded by a count of events rather than bytes: an event without transcript
    is a few kB. Used from the server's event loop only.
    """

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._events)

    def offer(self, events: Sequence[Event]) -> bool:
        """Queue all of `events`, or none when they do not fit."""
        if len(self._events) + len(events) > self.max_events:
            return False
        self._events.extend(events)
        self._ready.set()
        return True

    def peek(self, count: int) -> list[Event]:
        return list(itertools.islice(self._events, count))

    def discard(self, count: int) -> None:
        for _ in range(count):
            self._events.popleft()
        if not self._events:
            self._ready.clear()

    async def wait(self) -> None:
        await self._ready.wait()


@dataclass(frozen=True)
class _PrefectTarget:
    """Where events go, read from Prefect's settings when the app is built.

    Read then, not later: the server may run in a thread that does not see the
    caller's temporary Prefect settings.
    """

    api_url: str
    auth_string: str | None
    api_key: str | None

    def client(self) -> PrefectClient:
        return PrefectClient(
            self.api_url, auth_string=self.auth_string, api_key=self.api_key
        )

    @property
    def shown_url(self) -> str:
        """The URL without any user and password in it, for messages."""
        parts = urlsplit(self.api_url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=host))


class _Delivery:
    """Sends the outbox to the Prefect API until the receiver stops."""

    def __init__(
        self, outbox: _Outbox, target: _PrefectTarget, policy: DeliveryPolicy
    ) -> None:
        self.outbox = outbox
        self.target = target
        self.policy = policy
        self.sent_events = 0
        self.dropped_events = 0
        self.state = "unknown"
        self.last_error: str | None = None
        self._client: PrefectClient | None = None
        self._single_sends_left = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Send in the background while the block runs, then drain what is left."""
        async with self.target.client() as client:
            self._client = client
            task = asyncio.create_task(self._send_forever(), name="retell-events")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self._drain(self.policy.shutdown_timeout_seconds)

    async def _send_forever(self) -> None:
        failures = 0
        while True:
            await self.outbox.wait()
            try:
                await self._attempt()
            except Exception as exc:
                # Any failure, even a fault of ours, is retried: ending delivery
                # would leave the queued events waiting for nothing.
                failures += 1
                await asyncio.sleep(self._failed(exc, failures))
            else:
                if failures:
                    logger.info(
                        "Prefect API at %s answers again after %d failed attempts",
                        self.target.shown_url,
                        failures,
                    )
                failures = 0

    async def _attempt(self) -> None:
        """Send the oldest queued events once; raise if Prefect did not take them."""
        size = 1 if self._single_sends_left else self.policy.batch_size
        batch = self.outbox.peek(size)
        try:
            await asyncio.wait_for(
                self._post(batch), self.policy.attempt_timeout_seconds
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in _REFUSED_STATUSES:
                raise
            self._refused(batch, exc.response.status_code)
            return
        self.outbox.discard(len(batch))
        self._single_sends_left = max(self._single_sends_left - 1, 0)
        self.sent_events += len(batch)
        self.state, self.last_error = "ok", None
        logger.debug(
            "Sent %d events to Prefect; %d queued", len(batch), len(self.outbox)
        )

    async def _post(self, batch: list[Event]) -> None:
        # SHORTCOMING: tested against a self-hosted Prefect server only; Prefect
        # Cloud's workspace API is meant to take the same request, untried here.
        assert self._client is not None, "events are sent only while running"
        body = [event.model_dump(mode="json") for event in batch]
        await self._client.request("POST", "/events", json=body)

    def _refused(self, batch: list[Event], status: int) -> None:
        """Find the event Prefect refuses by sending one at a time, then drop it.

        Sending a refused event again cannot succeed, and it would hold back every
        event queued behind it.
        """
        if len(batch) > 1:
            self._single_sends_left = len(batch)
            return
        [event] = batch
        logger.error(
            "Prefect API answered %d to event %s (%s of %s); it is dropped",
            status,
            event.id,
            event.event,
            event.resource.id,
        )
        self.outbox.discard(1)
        self._single_sends_left = max(self._single_sends_left - 1, 0)
        self.dropped_events += 1

    def _failed(self, exc: Exception, failures: int) -> float:
        """Note a failed attempt and return the pause before the next one."""
        if not isinstance(exc, _RETRYABLE):
            logger.exception("Unexpected error sending events to Prefect")
        wait = self.policy.wait_seconds(failures)
        self.state, self.last_error = "failing", self._describe(exc)
        logger.warning(
            "Sending events to the Prefect API at %s failed (%s); attempt %d, "
            "%d events queued, trying again in %.1f s",
            self.target.shown_url,
            self.last_error,
            failures,
            len(self.outbox),
            wait,
        )
        return wait

    def _describe(self, exc: Exception) -> str:
        # Only the kind of failure: an httpx message repeats the request's URL.
        if isinstance(exc, httpx.HTTPStatusError):
            return f"answered {exc.response.status_code}"
        if isinstance(exc, asyncio.TimeoutError):
            return f"no answer within {self.policy.attempt_timeout_seconds:g} s"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    async def _drain(self, timeout_seconds: float) -> None:
        """Keep sending for a while at shutdown; say how many events are lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        failures = 0
        while len(self.outbox) and (remaining := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._attempt(), remaining)
            except Exception as exc:  # as in _send_forever
                failures += 1
                pause = min(self._failed(exc, failures), deadline - loop.time())
                await asyncio.sleep(max(pause, 0))
        if len(self.outbox):
            # SHORTCOMING: the outbox lives in memory. A file-backed outbox (such
            # as SQLite) would keep these events for the next start.
            logger.warning(
                "Stopping with %d events not sent to the Prefect API at %s; "
                "they are lost",
                len(self.outbox),
                self.target.shown_url,
            )


class _Receiver:
    """The state behind one webhook app: key, memory, outbox and delivery."""

    def __init__(
        self,
        api_key: str,
        *,
        include_transcript: bool,
        max_body_bytes: int,
        deduplicator: WebhookDeduplicator,
        delivery: _Delivery,
        max_event_bytes: int,
    ) -> None:
        self.api_key = api_key
        self.include_transcript = include_transcript
        self.max_body_bytes = max_body_bytes
        self.seen = deduplicator
        self.delivery = delivery
        self.outbox = delivery.outbox
        self.max_event_bytes = max_event_bytes

    async def webhook(self, request: Request) -> JSONResponse:
        """Check, claim and queue one webhook; never waits on Prefect."""
        try:
            body = await _read_body(request, self.max_body_bytes)
        except _BodyTooLarge:
            return _error(413, f"body is larger than {self.max_body_bytes} bytes")
        try:
            verify_webhook(body, request.headers.get(SIGNATURE_HEADER), self.api_key)
        except WebhookSignatureError as exc:
            logger.warning(
                "Refused a webhook from %s: %s signature", _peer(request), exc.reason
            )
            return _error(401, str(exc))
        try:
            webhook = parse_webhook(body)
        except WebhookPayloadError as exc:
            return _error(400 if exc.reason == "not_json" else 422, str(exc))
        return self._accept(webhook, body)

    def _accept(self, webhook: WebhookEvent, body: bytes) -> JSONResponse:
        # No await from the claim to the queueing: on the one event loop this
        # runs as a whole, so two deliveries of one event cannot both pass.
        call_id, claim = webhook.call.call_id, _claim_name(webhook, body)
        if self._superseded(webhook) and self.seen.claim(call_id, claim):
            logger.info("Retell %s for call %s came after its end", claim, call_id)
            return JSONResponse({"status": "superseded"})
        if not self.seen.claim(call_id, claim):
            logger.info("Retell %s for call %s delivered again", claim, call_id)
            return JSONResponse({"status": "duplicate"})
        try:
            events = self._events(webhook, claim)
        except _EventTooLarge as exc:
            self.seen.release(call_id, claim)
            return _error(413, f"the call's events would be too large: {exc}")
        except ValidationError as exc:
            # Only the field locations: the input values may hold phone numbers.
            self.seen.release(call_id, claim)
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            message = "the call cannot become a Prefect event; wrong: "
            return _error(422, message + ", ".join(fields))
        if not self.outbox.offer(events):
            self.seen.release(call_id, claim)
            logger.warning("Event queue full; asked Retell to retry call %s", call_id)
            return _error(503, "event queue is full", headers={"Retry-After": "30"})
        logger.info(
            "Retell %s for call %s queued as %s",
            webhook.event,
            call_id,
            ", ".join(event.event for event in events),
        )
        return JSONResponse(
            {"status": "accepted", "events": [event.event for event in events]}
        )

    def _superseded(self, webhook: WebhookEvent) -> bool:
        call_id = webhook.call.call_id
        return webhook.event == "call_started" and any(
            self.seen.claimed(call_id, later) for later in _AFTER_START
        )

    def _events(self, webhook: WebhookEvent, claim: str) -> list[Event]:
        occurred = datetime.now(timezone.utc)
        specs = prefect_events_for(webhook, include_transcript=self.include_transcript)
        return [
            self._fitted(
                Event(
                    id=_event_id(webhook.call.call_id, claim, spec["event"]),
                    occurred=occurred,
                    **spec,
                )
            )
            for spec in specs
        ]

    def _fitted(self, event: Event) -> Event:
        """The event, without its transcript if that makes it too large for Prefect."""
        if event.size_bytes <= self.max_event_bytes:
            return event
        if "transcript" in event.payload:
            payload = {k: v for k, v in event.payload.items() if k != "transcript"}
            payload["transcript_omitted"] = "too large for a Prefect event"
            event = event.model_copy(update={"payload": payload})
            if event.size_bytes <= self.max_event_bytes:
                logger.warning("Left the transcript out of event %s", event.id)
                return event
        raise _EventTooLarge(
            f"{event.size_bytes} bytes, Prefect takes {self.max_event_bytes} at most"
        )

    async def health(self, request: Request) -> JSONResponse:
        """The queue's depth and the state of sending; 503 while the queue is full."""
        full = len(self.outbox) >= self.outbox.max_events
        body = {
            "status": "full" if full else "ok",
            "queued_events": len(self.outbox),
            "max_queued_events": self.outbox.max_events,
            "sent_events": self.delivery.sent_events,
            "dropped_events": self.delivery.dropped_events,
            "prefect_api": self.delivery.state,
            "last_error": self.delivery.last_error,
        }
        return JSONResponse(body, status_code=503 if full else 200)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        logger.info(
            "Sending Retell call events to the Prefect API at %s",
            self.delivery.target.shown_url,
        )
        async with self.delivery.running():
            yield


class _BodyTooLarge(Exception):
    """The request body passed the size cap."""


class _EventTooLarge(Exception):
    """An event is larger than Prefect accepts, even without its transcript."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, read no further than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _claim_name(webhook: WebhookEvent, body: bytes) -> str:
    """What a delivery is de-duplicated on, beside the call id.

    A call has one `call_ended`, whatever its body says on a retry; it may have
    many `transcript_updated`, and only a byte-identical body is the same one.
    """
    if webhook.event in _ONCE_PER_CALL:
        return webhook.event
    return f"{webhook.event}#{hashlib.sha256(body).hexdigest()[:32]}"


def _event_id(call_id: str, claim: str, name: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_ID_NAMESPACE, f"{call_id}\n{claim}\n{name}")


def _peer(request: Request) -> str:
    return request.client.host if request.client else "an unknown address"


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"status": "error", "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _prefect_target(api_url: str | None) -> _PrefectTarget:
    url = api_url or PREFECT_API_URL.value()
    if not url:
        # Without a URL Prefect would start a temporary server of its own, whose
        # events vanish with this process.
        raise RetellConfigurationError(
            "No Prefect API to send call events to: set PREFECT_API_URL (for "
            "example `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`) "
            "or pass prefect_api_url."
        )
    return _PrefectTarget(url, PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value())


def create_webhook_app(
    api_key: str,
    *,
    include_transcript: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    prefect_api_url: str | None = None,
    delivery: DeliveryPolicy | None = None,
    deduplicator: WebhookDeduplicator | None = None,
) -> Starlette:
    """Build the ASGI app that turns Retell's signed webhooks into Prefect events.

    Serve it with `WebhookReceiverServer`, `run_webhook_receiver` or any ASGI
    server that runs the app's lifespan (the background sending lives there),
    in one process: the outbox and de-duplication memory are not shared.

    Args:
        api_key: The Retell API key flagged for webhooks, which signs them.
        include_transcript: Put each call's transcript in the event payloads;
            Prefect stores payloads and shows them to anyone with UI access.
        max_body_bytes: Larger bodies are refused with 413 before being checked.
        max_queued_events: The most events waiting for Prefect; past it, webhooks
            are answered 503 and Retell retries them later.
        prefect_api_url: The Prefect API to send events to; by default Prefect's
            `PREFECT_API_URL` setting. Its auth string or key is used as set.
        delivery: How events are sent and retried; `DeliveryPolicy()` by default.
        deduplicator: The memory of handled (call id, event) pairs; a new one
            holding `DEFAULT_REMEMBERED_PAIRS` by default. A pair forgotten
            and delivered again is emitted again, with the same event id, which
            Prefect then skips.

    Returns:
        The app. `app.state.prefect_api_url` tells where events go, without any
        credentials in it.

    Raises:
        RetellConfigurationError: No key, no Prefect API URL, or a limit below 1.

    Example:
        ```python
        from prefect_retell.receiver import WebhookReceiverServer, create_webhook_app

        app = create_webhook_app("key_...")
        with WebhookReceiverServer(app, port=8080) as server:
            print(f"Point Retell's webhook URL at {server.url}/")
            input("Press Enter to stop")
        ```
    """
    if not api_key:
        raise RetellConfigurationError("no API key to verify Retell webhooks with")
    for name, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_queued_events", max_queued_events),
    ):
        if value < 1:
            raise RetellConfigurationError(f"{name} must be at least 1, not {value}")
    target = _prefect_target(prefect_api_url)
    outbox = _Outbox(max_queued_events)
    receiver = _Receiver(
        api_key,
        include_transcript=include_transcript,
        max_body_bytes=max_body_bytes,
        deduplicator=deduplicator or WebhookDeduplicator(DEFAULT_REMEMBERED_PAIRS),
        delivery=_Delivery(outbox, target, delivery or DeliveryPolicy()),
        max_event_bytes=get_current_settings().server.events.maximum_size_bytes,
    )
    app = Starlette(
        routes=[
            Route("/", receiver.webhook, methods=["POST"]),
            Route("/healthz", receiver.health, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.prefect_api_url = target.shown_url
    app.state.shutdown_timeout_seconds = (
        receiver.delivery.policy.shutdown_timeout_seconds
    )
    return app


class WebhookReceiverServer:
    """A webhook app served by uvicorn in a background thread.

    The socket is bound when the object is made, so a busy port fails at once
    with `OSError`, and port 0 picks a free port whose URL is known at once.

    Args:
        app: The app from `create_webhook_app`.
        host: The interface to bind.
        port: The port to bind; 0 picks a free one.
        startup_timeout_seconds: How long `start` waits for the server to listen.

    Attributes:
        url: The receiver's root URL, such as "http://127.0.0.1:8080".
    """

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout_seconds: float = 10.0,
    ) -> None:
        self._socket = bind(host, port)
        self.url = url_of(host, self._socket)
        self._server = uvicorn.Server(uvicorn_config(app, graceful_shutdown_seconds=5))
        self._thread: threading.Thread | None = None
        self._startup_timeout_seconds = startup_timeout_seconds
        self._shutdown_timeout_seconds = app.state.shutdown_timeout_seconds

    def start(self) -> WebhookReceiverServer:
        """Start serving; return once the server accepts connections.

        Raises:
            RuntimeError: The server did not start in time.
        """
        self._thread, started = start_in_thread(
            self._server,
            self._socket,
            name="retell-webhooks",
            timeout_seconds=self._startup_timeout_seconds,
        )
        if not started:
            self.stop()
            raise RuntimeError(
                f"The webhook receiver did not start at {self.url}; "
                "see the log for the cause."
            )
        return self

    def stop(self) -> None:
        """Stop serving, after trying to send what is still queued."""
        self._server.should_exit = True
        if self._thread is None:
            self._socket.close()
            return
        self._thread.join(self._shutdown_timeout_seconds + 5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)

    def __enter__(self) -> WebhookReceiverServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_webhook_receiver(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve a webhook app in the foreground until Ctrl-C or SIGTERM.

    Args:
        app: The app from `create_webhook_app`.
        host: The interface to bind.
        port: The port to bind.
        on_ready: Called once with the receiver's root URL when it listens.

    Raises:
        OSError: The address cannot be bound.
    """
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn_config(app, graceful_shutdown_seconds=5))
    with contextlib.suppress(KeyboardInterrupt):
        # uvicorn re-raises the Ctrl-C it handled, after a clean shutdown.
        asyncio.run(_serve(server, sock, url_of(host, sock), on_ready))


async def _serve(
    server: uvicorn.Server,
    sock: socket.socket,
    url: str,
    on_ready: Callable[[str], None] | None,
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started and on_ready is not None:
        on_ready(url)
    await task
