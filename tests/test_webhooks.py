"""Tests of webhook signatures, parsing, event mapping and de-duplication."""

from __future__ import annotations

import json
import threading
import time

import pytest
from retell.lib import webhook_auth as sdk

from prefect_retell.errors import RetellConfigurationError, RetellError
from prefect_retell.webhooks import (
    WebhookDeduplicator,
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    parse_webhook,
    prefect_events_for,
    sign_webhook,
    verify_webhook,
)

KEY = "key_fx_SECRET123"
NOW_MS = 1_700_000_000_000
FIVE_MINUTES_MS = 300_000
BODY = json.dumps(
    {
        "event": "call_ended",
        "call": {
            "call_id": "call_fx_001",
            "call_status": "ended",
            "from_number": "+14155550100",
            "to_number": "+14155550123",
        },
    },
    separators=(",", ":"),
).encode()


def make_event(event: str = "call_ended", **call: object) -> WebhookEvent:
    fields = {
        "call_id": "call_fx_001",
        "call_status": "ended",
        "agent_id": "agent_fx",
        "direction": "outbound",
        "from_number": "+14155550100",
        "to_number": "+14155550123",
        "duration_ms": 61_000,
        "transcript": "Agent: Hello\nUser: Hi",
        "disconnection_reason": "user_hangup",
    }
    return WebhookEvent.model_validate({"event": event, "call": {**fields, **call}})


def event_names(event: WebhookEvent) -> list[str]:
    return [e["event"] for e in prefect_events_for(event)]


def signature_error(body: bytes, signature: str | None, **kwargs: object) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(body, signature, KEY, **{"now_ms": NOW_MS, **kwargs})
    assert KEY not in str(caught.value)
    return caught.value.reason


# Signatures


def test_sign_matches_retell_test_vector():
    """The signature of the vector from Retell's SDK tests is reproduced exactly."""
    header = sign_webhook(b'{"event":"call_ended"}', "test-api-key", 1700000000000)

    assert header == (
        "v=1700000000000,"
        "d=07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e"
    )


def test_verify_accepts_own_signature():
    """A body signed with sign_webhook verifies with the same key."""
    verify_webhook(BODY, sign_webhook(BODY, KEY, NOW_MS), KEY, now_ms=NOW_MS)


def test_verify_uses_system_clock_by_default():
    """Without now_ms, a signature made just now is accepted."""
    verify_webhook(BODY, sign_webhook(BODY, KEY, int(time.time() * 1000)), KEY)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_refused(signature):
    """An absent or empty header is refused as missing."""
    assert signature_error(BODY, signature) == "missing"


@pytest.mark.parametrize(
    "signature",
    [
        "garbage",
        "v=1700000000000",
        "v=1700000000000,d=" + "A" * 64,
        "v=1700000000000,d=" + "a" * 63,
        " v=1700000000000,d=" + "a" * 64,
        "v=1700000000000,d=" + "a" * 64 + "\n",
        "v=１７００,d=" + "a" * 64,
    ],
)
def test_malformed_signature_is_refused(signature):
    """A header not fully of the form v=<digits>,d=<64 lowercase hex> is malformed."""
    assert signature_error(BODY, signature) == "malformed"


def test_malformed_message_does_not_echo_header():
    """The malformed-header message does not repeat what the sender put there."""
    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(BODY, "v=1,d=+14155550123", KEY, now_ms=NOW_MS)

    assert str(caught.value) == (
        "Retell webhook x-retell-signature header is not of the form "
        "v=<unix ms>,d=<64 lowercase hex digits>"
    )


@pytest.mark.parametrize("offset_ms", [FIVE_MINUTES_MS + 1, -(FIVE_MINUTES_MS + 1)])
def test_signature_just_past_five_minutes_is_stale(offset_ms):
    """A signature 5 min + 1 ms in the past or in the future is stale."""
    signature = sign_webhook(BODY, KEY, NOW_MS - offset_ms)

    assert signature_error(BODY, signature) == "stale"


def test_stale_message_says_how_far_and_which_way():
    """The stale message gives the skew, its direction and the allowance."""
    signature = sign_webhook(BODY, KEY, NOW_MS + FIVE_MINUTES_MS + 1)

    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(BODY, signature, KEY, now_ms=NOW_MS)

    assert str(caught.value) == (
        "Retell webhook signature is stale: signed 300.001 s after now, "
        "300.000 s allowed either way; a replay, or a clock that is off"
    )


@pytest.mark.parametrize("offset_ms", [FIVE_MINUTES_MS, -FIVE_MINUTES_MS])
def test_signature_exactly_five_minutes_off_is_accepted(offset_ms):
    """A signature exactly 5 min in the past or future is accepted."""
    signature = sign_webhook(BODY, KEY, NOW_MS - offset_ms)

    verify_webhook(BODY, signature, KEY, now_ms=NOW_MS)


def test_signature_with_wrong_key_is_refused():
    """A body signed with another key is refused as wrong, without either key."""
    signature = sign_webhook(BODY, "key_other", NOW_MS)

    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(BODY, signature, KEY, now_ms=NOW_MS)

    assert caught.value.reason == "wrong"
    assert "key_other" not in str(caught.value)
    assert KEY not in str(caught.value)
    assert "call_fx_001" not in str(caught.value)


def test_reencoded_body_is_refused():
    """The same JSON re-serialised with other whitespace no longer verifies."""
    signature = sign_webhook(BODY, KEY, NOW_MS)
    reencoded = json.dumps(json.loads(BODY), indent=2).encode()

    assert signature_error(reencoded, signature) == "wrong"


def test_signature_error_is_a_retell_error():
    """WebhookSignatureError sits under RetellError."""
    assert issubclass(WebhookSignatureError, RetellError)


def test_empty_key_is_a_configuration_error():
    """Verifying with an empty key is refused before the header is looked at."""
    with pytest.raises(RetellConfigurationError):
        verify_webhook(BODY, sign_webhook(BODY, "", NOW_MS), "", now_ms=NOW_MS)


# Interop with the official retell-sdk (retell/lib/webhook_auth.py)


def test_sdk_verify_accepts_our_signature():
    """The SDK's verify, at a fixed clock, accepts a sign_webhook signature."""
    signature = sign_webhook(BODY, KEY, NOW_MS)

    assert sdk.symmetric["verify"](BODY.decode(), KEY, signature, {"timestamp": NOW_MS})


def test_sdk_public_verify_accepts_our_fresh_signature():
    """The SDK's top-level verify (system clock) accepts a fresh signature of ours."""
    signature = sign_webhook(BODY, KEY, int(time.time() * 1000))

    assert sdk.verify(BODY.decode(), KEY, signature)


def test_our_verify_accepts_sdk_signature():
    """verify_webhook accepts a signature made by the SDK's own sign."""
    signature = sdk.symmetric["sign"](BODY.decode(), KEY, NOW_MS)

    verify_webhook(BODY, signature, KEY, now_ms=NOW_MS)


def test_sdk_and_we_agree_on_the_five_minute_boundary():
    """At exactly 5 min both accept; 1 ms more, both refuse."""
    signature = sign_webhook(BODY, KEY, NOW_MS)
    text = BODY.decode()

    assert sdk.symmetric["verify"](
        text, KEY, signature, {"timestamp": NOW_MS + 300_000}
    )
    assert not sdk.symmetric["verify"](
        text, KEY, signature, {"timestamp": NOW_MS + 300_001}
    )
    assert signature_error(BODY, signature, now_ms=NOW_MS + 300_001) == "stale"


# Parsing


def test_parse_reads_event_and_call():
    """A signed body parses to its event name and call."""
    event = parse_webhook(BODY)

    assert (event.event, event.call.call_id) == ("call_ended", "call_fx_001")


def test_parse_keeps_unknown_event_names():
    """An event name Retell adds later is kept as sent."""
    body = (
        b'{"event":"transfer_bridged","call":{"call_id":"c1","call_status":"ongoing"}}'
    )

    assert parse_webhook(body).event == "transfer_bridged"


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b"\xff\xfe", b"{"])
def test_parse_refuses_non_json(body):
    """A body that is not JSON raises WebhookPayloadError."""
    with pytest.raises(WebhookPayloadError, match="is not JSON"):
        parse_webhook(body)


def test_parse_refuses_wrong_shape_naming_fields_only():
    """A wrong shape names the bad fields, never their values."""
    body = b'{"event":"call_ended","call":{"to_number":"+14155550123"}}'

    with pytest.raises(WebhookPayloadError) as caught:
        parse_webhook(body)

    assert str(caught.value) == (
        "Retell webhook body is not a call event; wrong or missing: "
        "call.call_id, call.call_status"
    )


@pytest.mark.parametrize("body", [b"[]", b'"call_ended"', b'{"call":{}}'])
def test_parse_refuses_non_object_bodies(body):
    """JSON that is not an event object raises WebhookPayloadError."""
    with pytest.raises(WebhookPayloadError, match="not a call event"):
        parse_webhook(body)


def test_payload_error_is_a_value_error():
    """WebhookPayloadError is both a RetellError and a ValueError."""
    assert issubclass(WebhookPayloadError, RetellError)
    assert issubclass(WebhookPayloadError, ValueError)


# Event mapping


@pytest.mark.parametrize(
    ("retell_event", "prefect_event"),
    [
        ("call_started", "retell.call.started"),
        ("call_ended", "retell.call.ended"),
        ("call_analyzed", "retell.call.analyzed"),
        ("transcript_updated", "retell.call.transcript_updated"),
    ],
)
def test_event_names_map(retell_event, prefect_event):
    """Retell event names map to retell.call.<name without call_>."""
    assert event_names(make_event(retell_event, call_status="ongoing")) == [
        prefect_event
    ]


@pytest.mark.parametrize(
    "reason",
    ["dial_busy", "dial_no_answer", "dial_failed", "error_llm_websocket_open"],
)
def test_failed_call_ended_adds_failed_event(reason):
    """A call_ended with a failure reason also emits retell.call.failed."""
    events = prefect_events_for(
        make_event(call_status="not_connected", disconnection_reason=reason)
    )

    assert [e["event"] for e in events] == ["retell.call.ended", "retell.call.failed"]
    assert events[1]["payload"]["reason"] == reason


def test_error_status_without_reason_fails_with_status():
    """A call_ended with status error and no reason fails with reason 'error'."""
    events = prefect_events_for(
        make_event(call_status="error", disconnection_reason=None)
    )

    assert events[1]["payload"]["reason"] == "error"


def test_failure_reason_alone_marks_an_ended_call_failed():
    """A failure reason counts even when the status is plain ended."""
    event = make_event(call_status="ended", disconnection_reason="dial_busy")

    assert event_names(event) == ["retell.call.ended", "retell.call.failed"]


def test_user_hangup_is_not_failed():
    """A normal call ended by the person emits only retell.call.ended."""
    assert event_names(make_event(disconnection_reason="user_hangup")) == [
        "retell.call.ended"
    ]


def test_failed_event_only_on_call_ended():
    """A failed call's call_analyzed does not emit retell.call.failed again."""
    event = make_event("call_analyzed", disconnection_reason="dial_busy")

    assert event_names(event) == ["retell.call.analyzed"]


def test_resource_is_the_call():
    """The event's resource is retell.call.<call_id>."""
    [event] = prefect_events_for(make_event())

    assert event["resource"] == {
        "prefect.resource.id": "retell.call.call_fx_001",
        "prefect.resource.name": "call_fx_001",
        "retell.call.status": "ended",
        "retell.call.disconnection-reason": "user_hangup",
        "retell.call.reached": "true",
    }


@pytest.mark.parametrize(
    ("fields", "labels"),
    [
        (
            {"call_status": "not_connected", "disconnection_reason": "dial_busy"},
            {"retell.call.reached": "false"},
        ),
        (
            {"call_analysis": {"call_successful": False}},
            {"retell.call.reached": "true", "retell.call.successful": "false"},
        ),
        ({"call_status": "ongoing", "disconnection_reason": None}, {}),
    ],
)
def test_resource_labels_that_triggers_match_on(fields, labels):
    """Reached and successful are labels, so an automation can match on them."""
    [event, *_] = prefect_events_for(make_event(**fields))

    found = {
        key: value
        for key, value in event["resource"].items()
        if key in ("retell.call.reached", "retell.call.successful")
    }
    assert found == labels


def test_payload_has_no_transcript_by_default():
    """Without include_transcript the payload has no transcript."""
    [event] = prefect_events_for(make_event())

    assert "transcript" not in event["payload"]
    assert "Hello" not in json.dumps(event)


def test_payload_transcript_when_asked():
    """include_transcript=True puts the transcript in the payload."""
    [event] = prefect_events_for(make_event(), include_transcript=True)

    assert event["payload"]["transcript"] == "Agent: Hello\nUser: Hi"


def test_payload_masks_the_callee_number(monkeypatch):
    """The person's number is masked even when logs may show full numbers."""
    monkeypatch.setenv("PREFECT_RETELL_LOG_FULL_NUMBERS", "true")

    [event] = prefect_events_for(make_event())

    assert event["payload"]["to_number"] == "+*******0123"
    assert "14155550123" not in json.dumps(event)


def test_payload_masks_the_caller_of_an_inbound_call():
    """On an inbound call the masked number is the caller's, and none is related."""
    [event] = prefect_events_for(
        make_event(direction="inbound", from_number="+14155550123", to_number="+1999")
    )

    assert event["payload"]["from_number"] == "+*******0123"
    assert "14155550123" not in json.dumps(event)


def test_payload_fields():
    """The payload carries the call's outcome, analysis and metadata."""
    call = make_event(
        "call_analyzed",
        call_analysis={"call_successful": True, "call_summary": "Booked."},
        metadata={"row": 3},
    )

    [event] = prefect_events_for(call)

    assert event["payload"] == {
        "call_id": "call_fx_001",
        "call_status": "ended",
        "disconnection_reason": "user_hangup",
        "duration_ms": 61_000,
        "direction": "outbound",
        "from_number": "+14155550100",
        "to_number": "+*******0123",
        "call_analysis": {
            "call_summary": "Booked.",
            "call_successful": True,
            "user_sentiment": None,
            "in_voicemail": None,
            "custom_analysis_data": None,
        },
        "call_cost": None,
        "metadata": {"row": 3},
    }


def test_related_resources():
    """Agent, our from-number, flow run and campaign are related with roles."""
    metadata = {"prefect_flow_run_id": "fr-1", "prefect_retell_campaign": "camp-1"}

    [event] = prefect_events_for(make_event(metadata=metadata))

    assert event["related"] == [
        {
            "prefect.resource.id": "retell.agent.agent_fx",
            "prefect.resource.role": "agent",
        },
        {
            "prefect.resource.id": "retell.phone-number.14155550100",
            "prefect.resource.role": "from-number",
        },
        {
            "prefect.resource.id": "prefect.flow-run.fr-1",
            "prefect.resource.role": "flow-run",
        },
        {
            "prefect.resource.id": "retell.campaign.camp-1",
            "prefect.resource.role": "campaign",
        },
    ]


def test_related_omits_what_is_absent():
    """Without agent, number or metadata markers, nothing is related."""
    event = WebhookEvent.model_validate(
        {"event": "call_ended", "call": {"call_id": "c1", "call_status": "ended"}}
    )

    assert prefect_events_for(event)[0]["related"] == []


def test_events_can_be_built_as_prefect_events():
    """Each dict is accepted by Prefect's Event model as it stands."""
    from prefect.events import Event

    events = prefect_events_for(
        make_event(
            disconnection_reason="dial_busy", metadata={"prefect_flow_run_id": "x"}
        )
    )

    for event in events:
        Event(**event)


# De-duplication


def test_dedup_claims_once():
    """The first claim of a pair wins; a repeat does not."""
    seen = WebhookDeduplicator()

    assert seen.claim("call_fx_001", "call_ended") is True
    assert seen.claim("call_fx_001", "call_ended") is False


def test_dedup_keys_on_call_and_event():
    """Other events of the same call, and the same event of another call, pass."""
    seen = WebhookDeduplicator()
    seen.claim("call_fx_001", "call_ended")

    assert seen.claim("call_fx_001", "call_analyzed") is True
    assert seen.claim("call_fx_002", "call_ended") is True


def test_dedup_release_allows_a_retry():
    """A released pair can be claimed again."""
    seen = WebhookDeduplicator()
    seen.claim("call_fx_001", "call_ended")

    seen.release("call_fx_001", "call_ended")

    assert seen.claim("call_fx_001", "call_ended") is True


def test_dedup_forgets_least_recently_claimed_past_its_bound():
    """Past max_entries the least recently used pair is forgotten first."""
    seen = WebhookDeduplicator(max_entries=2)
    seen.claim("a", "call_ended")
    seen.claim("b", "call_ended")
    seen.claim("a", "call_ended")  # a is now the most recent
    seen.claim("c", "call_ended")

    assert len(seen) == 2
    assert seen.claim("a", "call_ended") is False
    assert seen.claim("b", "call_ended") is True


def test_dedup_refuses_zero_bound():
    """max_entries below 1 is a configuration error."""
    with pytest.raises(RetellConfigurationError):
        WebhookDeduplicator(max_entries=0)


@pytest.mark.parametrize("attempt", range(20))
def test_dedup_concurrent_claims_have_one_winner(attempt):
    """Two threads claiming the same pair at once: exactly one wins."""
    seen = WebhookDeduplicator()
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def deliver() -> None:
        barrier.wait()
        results.append(seen.claim("call_fx_001", "call_ended"))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, True]
