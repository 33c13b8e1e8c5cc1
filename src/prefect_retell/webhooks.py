"""Checking, reading and de-duplicating Retell's call webhooks.

Retell POSTs `{"event": "call_ended", "call": {...}}` to the account's or the
agent's webhook URL, signed in the `x-retell-signature` header. A receiver does,
in order:

1. `verify_webhook` on the exact bytes received, before any parsing: re-encoded
   JSON (other whitespace, other unicode escapes) no longer matches the MAC.
2. `parse_webhook` to get a `WebhookEvent`.
3. `WebhookDeduplicator.claim`, because Retell delivers at least once: retries
   after a timeout arrive as duplicates, late, and out of order.
4. `prefect_events_for` to get the Prefect events to emit.

Nothing here needs a Prefect server or the network.

Example:
    >>> body = b'{"event":"call_ended","call":{"call_id":"c1","call_status":"ended"}}'
    >>> header = sign_webhook(body, "key_example", 1_700_000_000_000)
    >>> verify_webhook(body, header, "key_example", now_ms=1_700_000_000_000)
    >>> [e["event"] for e in prefect_events_for(parse_webhook(body))]
    ['retell.call.ended']
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_retell.errors import RetellConfigurationError, RetellError
from prefect_retell.models import FAILED_DISCONNECTION_REASONS, CallStatus, PhoneCall
from prefect_retell.privacy import mask_phone_number

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookDeduplicator",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "is_failed_call",
    "parse_webhook",
    "prefect_events_for",
    "sign_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "x-retell-signature"
DEFAULT_TOLERANCE_MS = 5 * 60 * 1000

# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_SIGNATURE = re.compile(r"v=([0-9]+),d=([0-9a-f]{64})")

# Metadata keys that the campaign flow writes into each call it places.
_FLOW_RUN_KEY = "prefect_flow_run_id"
_CAMPAIGN_KEY = "prefect_retell_campaign"


class WebhookSignatureError(RetellError):
    """A webhook's signature is missing, malformed, stale or wrong.

    The message never holds the key or the body. Answer such a request with 401
    and do not act on it.

    Attributes:
        reason: One of `missing`, `malformed`, `stale` or `wrong`.
    """

    def __init__(self, message: str, *, reason: str):
        self.reason = reason
        super().__init__(message)


class WebhookPayloadError(RetellError, ValueError):
    """A webhook body is not JSON or not the shape of a Retell call event.

    Attributes:
        reason: `not_json`, or `not_an_event` for JSON of another shape; a
            receiver answers them differently (400 and 422).
    """

    def __init__(self, message: str, *, reason: str):
        self.reason = reason
        super().__init__(message)


class WebhookEvent(BaseModel):
    """One Retell call webhook: the event's name and the call as it stands.

    `event` is kept as sent, so events that Retell adds later pass through.
    """

    model_config = ConfigDict(extra="allow")

    event: str = Field(min_length=1)
    call: PhoneCall

    def __repr__(self) -> str:
        return f"WebhookEvent(event={self.event!r}, call={self.call!r})"


def _digest(body: bytes, api_key: str, timestamp_ms: int) -> str:
    message = body + str(timestamp_ms).encode("ascii")
    return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_webhook(body: bytes, api_key: str, timestamp_ms: int) -> str:
    """Sign a body as Retell does, for tests and for forwarding webhooks on.

    Args:
        body: The exact bytes of the request body.
        api_key: The Retell API key flagged for webhooks.
        timestamp_ms: The signing time, in Unix milliseconds.

    Returns:
        The value of the `x-retell-signature` header: `v=<timestamp>,d=<hex>`.

    Example:
        >>> body, key = b'{"event":"call_ended"}', "test-api-key"
        >>> sign_webhook(body, key, 1_700_000_000_000)[:32]
        'v=1700000000000,d=07024cabe7dd8f'
    """
    return f"v={timestamp_ms},d={_digest(body, api_key, timestamp_ms)}"


def verify_webhook(
    body: bytes,
    signature: str | None,
    api_key: str,
    *,
    now_ms: int | None = None,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> None:
    """Check a webhook's `x-retell-signature` against its raw body.

    Args:
        body: The exact bytes received, before any JSON parsing.
        signature: The header's value, or None when the header was absent.
        api_key: The Retell API key flagged for webhooks.
        now_ms: The current time in Unix milliseconds; the system clock if None.
        tolerance_ms: How far the signing time may lie from now, either way. A
            difference of exactly this much is accepted, as Retell's SDKs do.

    Raises:
        WebhookSignatureError: The signature is missing, malformed, stale or wrong.
        RetellConfigurationError: `api_key` is empty.

    Example:
        >>> header = sign_webhook(b"{}", "key_example", 1_700_000_000_000)
        >>> verify_webhook(b"{}", header, "key_example", now_ms=1_700_000_060_000)
    """
    if not api_key:
        raise RetellConfigurationError("no API key to verify Retell webhooks with")
    timestamp_ms, digest = _parse_signature(signature)
    _check_freshness(timestamp_ms, now_ms, tolerance_ms)

    # compare_digest: the time taken must not tell how many leading characters match.
    if not hmac.compare_digest(digest, _digest(body, api_key, timestamp_ms)):
        raise WebhookSignatureError(
            "Retell webhook signature does not match the body; check that the "
            "API key is the one flagged for webhooks and that the raw body was "
            "verified, not re-encoded JSON",
            reason="wrong",
        )


def _parse_signature(signature: str | None) -> tuple[int, str]:
    if not signature:
        raise WebhookSignatureError(
            f"Retell webhook has no {SIGNATURE_HEADER} header", reason="missing"
        )
    match = _SIGNATURE.fullmatch(signature)
    if match is None:
        # The header is not echoed: a forged one may hold anything.
        raise WebhookSignatureError(
            f"Retell webhook {SIGNATURE_HEADER} header is not of the form "
            "v=<unix ms>,d=<64 lowercase hex digits>",
            reason="malformed",
        )
    return int(match.group(1)), match.group(2)


def _check_freshness(timestamp_ms: int, now_ms: int | None, tolerance_ms: int) -> None:
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    skew_ms = now_ms - timestamp_ms
    if abs(skew_ms) > tolerance_ms:
        direction = "before" if skew_ms > 0 else "after"
        raise WebhookSignatureError(
            f"Retell webhook signature is stale: signed {abs(skew_ms) / 1000:.3f} s "
            f"{direction} now, {tolerance_ms / 1000:.3f} s allowed either way; "
            "a replay, or a clock that is off",
            reason="stale",
        )


def parse_webhook(body: bytes) -> WebhookEvent:
    """Read a Retell webhook body, once its signature has been verified.

    Args:
        body: The raw request body.

    Returns:
        The event, with unknown event names and call fields kept.

    Raises:
        WebhookPayloadError: The body is not JSON or not `{"event", "call"}`.

    Example:
        >>> body = b'{"event":"call_started",'
        >>> body += b'"call":{"call_id":"c1","call_status":"ongoing"}}'
        >>> parse_webhook(body).event
        'call_started'
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookPayloadError(
            f"Retell webhook body is not JSON ({len(body)} bytes)", reason="not_json"
        ) from exc
    try:
        return WebhookEvent.model_validate(data)
    except ValidationError as exc:
        # Only the field locations: the input values may hold phone numbers.
        fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
        raise WebhookPayloadError(
            "Retell webhook body is not a call event; wrong or missing: "
            + ", ".join(fields),
            reason="not_an_event",
        ) from exc


def is_failed_call(call: PhoneCall) -> bool:
    """Tell whether an ended call failed to reach the person.

    True for status `error` or `not_connected`, for a disconnection reason in
    `FAILED_DISCONNECTION_REASONS`, and for any reason starting with `error_`
    (Retell adds those over time, e.g. `error_llm_websocket_open`).
    """
    if call.call_status in {CallStatus.ERROR, CallStatus.NOT_CONNECTED}:
        return True
    reason = call.disconnection_reason or ""
    return reason in FAILED_DISCONNECTION_REASONS or reason.startswith("error_")


def prefect_events_for(
    event: WebhookEvent, *, include_transcript: bool = False
) -> list[dict[str, Any]]:
    """The Prefect events that one Retell webhook stands for.

    `call_started`, `call_ended` and `call_analyzed` become `retell.call.started`,
    `retell.call.ended` and `retell.call.analyzed`; any other event is named
    `retell.call.<event>`, without a leading `call_`. A failed `call_ended` adds
    `retell.call.failed`: only `call_ended`, because Retell sends it for every
    call, connected or not, already carrying the status and reason, whereas
    `call_analyzed` comes later (or not at all) for the same call and would
    report the failure twice.

    Each dict has `event`, `resource`, `related` and `payload`, ready for
    `prefect.events.emit_event(**event)`. The payload shows the person's number
    masked to its last four digits, and no transcript unless asked for.

    Args:
        event: A parsed webhook.
        include_transcript: Put the call's transcript in the payloads; Prefect
            stores event payloads and shows them to anyone with UI access.

    Returns:
        The events, the main one first.

    Example:
        >>> body = b'{"event":"call_ended","call":{"call_id":"c1",'
        >>> body += b'"call_status":"ended","disconnection_reason":"dial_busy"}}'
        >>> [e["event"] for e in prefect_events_for(parse_webhook(body))]
        ['retell.call.ended', 'retell.call.failed']
    """
    call = event.call
    payload = _payload(call, include_transcript)
    events = [_event(_event_name(event.event), call, payload)]
    if event.event == "call_ended" and is_failed_call(call):
        reason = call.disconnection_reason or call.call_status
        events.append(_event("retell.call.failed", call, {**payload, "reason": reason}))
    return events


def _event_name(retell_event: str) -> str:
    return "retell.call." + retell_event.removeprefix("call_")


def _event(name: str, call: PhoneCall, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": name,
        "resource": _resource(call),
        "related": _related(call),
        "payload": dict(payload),
    }


def _resource(call: PhoneCall) -> dict[str, str]:
    # Labels are what automation triggers can match on (payloads are not), so the
    # facts people act on are labels too: status, reason, and whether it worked.
    resource = {
        "prefect.resource.id": f"retell.call.{call.call_id}",
        "prefect.resource.name": call.call_id,
        "retell.call.status": call.call_status,
    }
    if call.disconnection_reason:
        resource["retell.call.disconnection-reason"] = call.disconnection_reason
    if call.is_final:
        resource["retell.call.reached"] = "false" if is_failed_call(call) else "true"
    analysis = call.call_analysis
    if analysis is not None and analysis.call_successful is not None:
        resource["retell.call.successful"] = str(analysis.call_successful).lower()
    return resource


def _own_number(call: PhoneCall) -> str | None:
    # On an inbound call the caller is the person; our number is the callee.
    if call.direction == "inbound":
        return None
    return call.from_number


def _related(call: PhoneCall) -> list[dict[str, str]]:
    related = []
    if call.agent_id:
        related.append(_related_resource(f"retell.agent.{call.agent_id}", "agent"))
    own_number = _own_number(call)
    if own_number:
        digits = "".join(ch for ch in own_number if ch.isdigit())
        related.append(
            _related_resource(f"retell.phone-number.{digits}", "from-number")
        )
    metadata = call.metadata or {}
    if metadata.get(_FLOW_RUN_KEY):
        flow_run_id = f"prefect.flow-run.{metadata[_FLOW_RUN_KEY]}"
        related.append(_related_resource(flow_run_id, "flow-run"))
    if metadata.get(_CAMPAIGN_KEY):
        campaign_id = f"retell.campaign.{metadata[_CAMPAIGN_KEY]}"
        related.append(_related_resource(campaign_id, "campaign"))
    return related


def _related_resource(resource_id: str, role: str) -> dict[str, str]:
    return {"prefect.resource.id": resource_id, "prefect.resource.role": role}


def _payload(call: PhoneCall, include_transcript: bool) -> dict[str, Any]:
    inbound = call.direction == "inbound"
    analysis = call.call_analysis
    payload: dict[str, Any] = {
        "call_id": call.call_id,
        "call_status": call.call_status,
        "disconnection_reason": call.disconnection_reason,
        "duration_ms": call.duration_ms,
        "direction": call.direction,
        # The person's number is masked even when logs show full numbers:
        # Prefect keeps event payloads and shows them in the UI.
        "from_number": _mask(call.from_number) if inbound else call.from_number,
        "to_number": call.to_number if inbound else _mask(call.to_number),
        "call_analysis": analysis.model_dump(mode="json") if analysis else None,
        "call_cost": call.call_cost.model_dump(mode="json") if call.call_cost else None,
        "metadata": call.metadata,
    }
    if include_transcript:
        payload["transcript"] = call.transcript
    return payload


def _mask(number: str | None) -> str | None:
    return mask_phone_number(number, always=True) if number else None


class WebhookDeduplicator:
    """Remembers which (call id, event) pairs were handled, to drop redeliveries.

    Retell retries a webhook that timed out, so the same event can arrive twice,
    even at once. `claim` checks and marks in one step under a lock, so two
    overlapping deliveries cannot both pass. The key is the pair, not the call
    id alone: `call_ended` and `call_analyzed` of one call are both wanted.

    The memory is per process and bounded: past `max_entries`, the least
    recently claimed pairs are forgotten. Several workers, or a restart, need a
    shared store (such as a unique database key) instead.

    Args:
        max_entries: How many pairs to remember.

    Example:
        >>> seen = WebhookDeduplicator()
        >>> seen.claim("call_1", "call_ended"), seen.claim("call_1", "call_ended")
        (True, False)
    """

    def __init__(self, max_entries: int = 10_000):
        if max_entries < 1:
            raise RetellConfigurationError(
                f"max_entries must be at least 1, not {max_entries}"
            )
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, call_id: str, event: str) -> bool:
        """Mark a pair as handled; True only for the first claim of it."""
        key = (call_id, event)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return True

    def claimed(self, call_id: str, event: str) -> bool:
        """Tell whether a pair was claimed, without claiming it or refreshing it."""
        with self._lock:
            return (call_id, event) in self._seen

    def release(self, call_id: str, event: str) -> None:
        """Forget a pair, so that a redelivery is handled after a failed attempt."""
        with self._lock:
            self._seen.pop((call_id, event), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
