"""Retell's call webhooks as the sandbox sends them: when, what, and signed how.

Every call gets its events as its phase changes on the sandbox's scaled clock (see
`calls.webhook_times`): `call_started` when it connects, `call_ended` when it is
final, `call_analyzed` when its analysis appears. Each is POSTed to the agent's
`webhook_url`, or else the account's, as `{"event": ..., "call": ...}` where the
call is the object get-call answers at that moment. The body is compact JSON and
the header `x-retell-signature: v=<unix ms>,d=<hex>` carries an HMAC-SHA256 of the
body followed by the timestamp, keyed with the account's API key, as Retell signs.

A delivery that is not answered 2xx within `webhook_timeout_seconds` is retried up
to `MAX_RETRIES` times. Retell does not publish its retry schedule; the sandbox
waits `RETRY_BACKOFF_SECONDS` simulated seconds before the first retry and
doubles it for each next one, so that at a time scale of 0.01 the retries follow
0.05, 0.1 and 0.2 s after the failures. Each attempt is signed afresh.

Known shortcomings: only these three events exist; Retell's opt-in events
(`transcript_updated`, the transfer events) and an agent's `webhook_events` are not
modelled, and an agent's `webhook_url` can only be set through
`Sandbox.set_webhook_url` or the control route, since the sandbox has no
update-agent endpoint.

This module keeps the bookkeeping (what is due, what was sent, the counters); the
`WebhookDispatcher` of the running server does the sending. It is not thread-safe
by itself: the `Sandbox` calls it under its lock.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .calls import CallRecord, webhook_times
from .faults import WEBHOOK_EVENTS, WebhookFault

SIGNATURE_HEADER = "x-retell-signature"
MAX_RETRIES = 3
"""Retries after a delivery that failed, as Retell documents."""
RETRY_BACKOFF_SECONDS = 5.0
"""Simulated seconds before the first retry; each next retry waits twice as long."""

_RANK = {event: rank for rank, event in enumerate(WEBHOOK_EVENTS)}


def sign_body(body: bytes, api_key: str, timestamp_ms: int) -> str:
    """Return the `x-retell-signature` value for `body` signed at `timestamp_ms`.

    Args:
        body: The exact bytes that will be POSTed.
        api_key: The account's API key.
        timestamp_ms: Signing time in Unix milliseconds.
    """
    message = body + str(timestamp_ms).encode("ascii")
    digest = hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"v={timestamp_ms},d={digest}"


def encode_payload(event: str, call: dict[str, Any]) -> bytes:
    """Return the body of one webhook: compact JSON, UTF-8, as Retell sends it."""
    payload = {"event": event, "call": call}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def delivery_options(fault: WebhookFault | None) -> dict[str, Any]:
    """Return the `Delivery` fields that carry out a webhook fault, if any."""
    if fault is None:
        return {}
    if fault.action == "duplicate":
        return {"copies": fault.copies}
    if fault.action == "delay":
        return {"delay_seconds": fault.seconds}
    if fault.action == "reorder":
        return {"hold": True}
    return {"dropped": True}


@dataclass(frozen=True)
class Delivery:
    """One event handed to the dispatcher, with what its fault (if any) asks.

    Attributes:
        event: The event name, e.g. "call_ended".
        call_id: The call it is about.
        url: Where to POST it.
        body: The exact bytes to POST (every copy and retry sends the same).
        generation: The sandbox's reset count when it was made; deliveries of an
            earlier generation are abandoned.
        copies: Deliveries to send at once (more than 1 for a duplicate fault).
        delay_seconds: Real seconds to wait first (a delay fault).
        hold: Send it only after the call's next event (a reorder fault).
        dropped: Never send it (a drop fault); it still releases held events.
    """

    event: str
    call_id: str
    url: str
    body: bytes
    generation: int
    copies: int = 1
    delay_seconds: float = 0.0
    hold: bool = False
    dropped: bool = False


@dataclass
class WebhookLedger:
    """The webhook side of a sandbox: its URL, what is due, what was sent, counts.

    Attributes:
        account_url: The account-level webhook URL, or None for no webhooks.
        generation: How many resets the sandbox has had; see `Delivery`.
    """

    account_url: str | None
    generation: int = 0
    in_flight: int = 0
    _queue: list[tuple[float, int, int, str, str]] = field(default_factory=list)
    _sent: dict[str, set[str]] = field(default_factory=dict)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {
            "attempted": Counter(),
            "acknowledged": Counter(),
            "failed": Counter(),
            "dropped": Counter(),
        }
    )

    def schedule(self, call: CallRecord) -> None:
        """Queue the events `call` will have and has not had yet.

        Called when a call is placed and again when stop-call changes its future;
        entries made stale by such a change are skipped when they come due.
        """
        sent = self._sent.setdefault(call.call_id, set())
        for event, when in webhook_times(call):
            if event not in sent:
                self._push(call.call_id, event, when)

    def next_due(self) -> float | None:
        """Real epoch seconds of the earliest queued event, or None."""
        return self._queue[0][0] if self._queue else None

    def pop_due(
        self, now: float, calls: Mapping[str, CallRecord]
    ) -> list[tuple[CallRecord, str, float]]:
        """Take the events due at `now`, each at most once per call, in order.

        Returns:
            (call, event, when) for each event, `when` being the moment it happened.
        """
        due: list[tuple[CallRecord, str, float]] = []
        while self._queue and self._queue[0][0] <= now:
            _, _, _, call_id, event = heapq.heappop(self._queue)
            call = calls.get(call_id)
            sent = self._sent.get(call_id, set())
            when = dict(webhook_times(call)).get(event) if call else None
            if call is None or event in sent or when is None:
                continue
            if when > now:
                self._push(call_id, event, when)
                continue
            sent.add(event)
            due.append((call, event, when))
        return due

    def has_later_event(self, call: CallRecord, event: str) -> bool:
        """Tell whether `call` will have an event after `event` not yet sent."""
        sent = self._sent.get(call.call_id, set())
        return any(
            _RANK[later] > _RANK[event] and later not in sent
            for later, _ in webhook_times(call)
        )

    def count(self, outcome: str, event: str, copies: int = 1) -> None:
        """Add to one counter: attempted, acknowledged, failed or dropped."""
        self._counts[outcome][event] += copies

    def report(self) -> dict[str, Any]:
        """Return the counters per event type, JSON-ready."""
        report: dict[str, Any] = {
            outcome: dict(counts) for outcome, counts in self._counts.items()
        }
        report["in_flight"] = self.in_flight
        return report

    def _push(self, call_id: str, event: str, when: float) -> None:
        entry = (when, _RANK[event], next(self._order), call_id, event)
        heapq.heappush(self._queue, entry)
