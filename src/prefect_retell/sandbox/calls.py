"""Sandbox calls and their lifecycle, computed lazily from the clock.

A call stores only what was fixed at creation (its `CallPlan`) and, if stopped, when.
Its status is worked out at every read from the elapsed time, so a paused test sees
consistent answers; only webhook delivery needs the moments of change ahead of time,
and `webhook_times` derives them from the same plan:

    registered --ring--> ongoing --talk--> ended          (answered, voicemail)
    registered --ring--> not_connected                    (no_answer, busy, failed)
    registered --ring--> error                            (error)
    registered forever / ongoing forever                  (stuck_*, until stop-call)

Timestamps are real epoch milliseconds, but `duration_ms` and the costs use the
SIMULATED talk time: at a time scale of 0.02 a call that "lasted 90 s" reports
`duration_ms` 90000 although it took 1.8 s of wall time. The post-call analysis
appears a few simulated seconds after the end, as with Retell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .conversation import build_utterances, call_summary, transcript_text
from .outcomes import CONNECTED_KINDS, CallPlan

ANALYSIS_DELAY_SECONDS = 5.0
"""Simulated seconds between a call's end and its post-call analysis."""

FINAL_STATUSES = frozenset({"ended", "not_connected", "error"})
LIVE_STATUSES = frozenset({"registered", "ongoing"})


# Per-second prices in cents; they add up to Retell's advertised 0.1167 c/s
# ($0.07 per minute).
_PRODUCT_PRICES = (
    ("voice_engine", 0.0917),
    ("llm_gpt_4_1", 0.0075),
    ("telephony", 0.0175),
)
_TRANSCRIPT_FIELDS = ("transcript", "transcript_object", "transcript_with_tool_calls")
_UNIT_PRICE = round(sum(price for _, price in _PRODUCT_PRICES), 4)
_FALLBACK_BASE_URL = "https://sandbox.retell.invalid"


@dataclass
class CallRecord:
    """One call as the sandbox stores it.

    Attributes:
        call_id: "call_" and 32 hex digits.
        created_at: Real epoch seconds at which the create was accepted.
        from_number: The account's number that dials.
        to_number: The destination.
        agent: The agent version object that runs the call.
        llm: The Retell LLM version behind the agent.
        plan: The call's fixed future.
        time_scale: Real seconds per simulated second.
        metadata: Metadata as supplied, or None.
        dynamic_variables: Dynamic variables as supplied, or None.
        custom_sip_headers: SIP headers as supplied, or None.
        idempotency_key: The create's idempotency key, or None.
        telephony_identifier: Provider ids, e.g. a Twilio call SID.
        stopped_at: Real epoch seconds of a stop-call that ended it live, or None.
        transient_pending: Whether the one read reporting the plan's transient
            status is still to come.
    """

    call_id: str
    created_at: float
    from_number: str
    to_number: str
    agent: dict[str, Any]
    llm: dict[str, Any]
    plan: CallPlan
    time_scale: float
    metadata: Any = None
    dynamic_variables: dict[str, str] | None = None
    custom_sip_headers: dict[str, str] | None = None
    idempotency_key: str | None = None
    telephony_identifier: dict[str, str] = field(default_factory=dict)
    stopped_at: float | None = None
    transient_pending: bool = False

    @property
    def ring_end(self) -> float:
        """Real epoch seconds at which the ring ends."""
        return self.created_at + self.plan.ring_seconds * self.time_scale


@dataclass(frozen=True)
class Phase:
    """Where a call stands at one instant.

    Attributes:
        status: Retell's call_status.
        start: Real epoch seconds the call connected, or None.
        end: Real epoch seconds the call became final, or None.
        talk_seconds: Simulated talk time of a final connected call, else 0.
        reason: The disconnection reason of a final call, else None.
    """

    status: str
    start: float | None = None
    end: float | None = None
    talk_seconds: float = 0.0
    reason: str | None = None


REGISTERED = Phase("registered")


def phase_at(call: CallRecord, now: float) -> Phase:
    """Return the phase of `call` at real epoch second `now`.

    Args:
        call: The call.
        now: The instant, not before the call's creation.
    """
    if call.stopped_at is None:
        return _natural_phase(call, now)

    when = call.stopped_at
    before = _natural_phase(call, when)
    if before.status == "registered":
        return Phase("not_connected", end=when, reason="manual_stopped")
    if before.status == "ongoing":
        talk = (when - call.ring_end) / call.time_scale
        return Phase("ended", call.ring_end, when, talk, "manual_stopped")
    return before


def live_until(call: CallRecord) -> float:
    """Return the real epoch second from which `call` is no longer live.

    A call not stopped is live (registered or ongoing) at `now` exactly when `now`
    is before this moment, so the sandbox can keep its live calls ordered by it
    instead of asking every call its phase on each create. A call stuck live
    until stop-call answers math.inf.

    Args:
        call: The call, not stopped.
    """
    final = phase_at(call, math.inf)
    return math.inf if final.end is None else final.end


def webhook_times(call: CallRecord) -> list[tuple[str, float]]:
    """Return the webhook events `call` will have, each with its real epoch second.

    `call_started` only for a call that connects; `call_ended` once it is final,
    connected or not; `call_analyzed` when its analysis appears, which the sandbox
    produces for `ended` and `not_connected` calls but not for `error` ones. A call
    stuck live has no end yet: stop-call gives it one, after which this answers
    differently.

    Args:
        call: The call.

    Returns:
        (event, when) pairs in the order the events happen.
    """
    final = phase_at(call, math.inf)
    events: list[tuple[str, float]] = []
    if final.start is not None:
        events.append(("call_started", final.start))
    if final.status in FINAL_STATUSES and final.end is not None:
        events.append(("call_ended", final.end))
    analysed_at = analysis_time(call, final)
    if analysed_at is not None:
        events.append(("call_analyzed", analysed_at))
    return events


def analysis_time(call: CallRecord, phase: Phase) -> float | None:
    """Return when the analysis of a call in `phase` appears, or None if never."""
    if phase.status not in ("ended", "not_connected") or phase.end is None:
        return None
    return phase.end + ANALYSIS_DELAY_SECONDS * call.time_scale


def render_call(
    call: CallRecord,
    now: float,
    *,
    base_url: str | None,
    fresh: bool = False,
    status_override: str | None = None,
    listing: bool = False,
    phase: Phase | None = None,
) -> dict[str, Any]:
    """Return the Retell call object of `call` as seen at `now`.

    Args:
        call: The call.
        now: Real epoch seconds of the read.
        base_url: Where the sandbox is served, for recording and log links.
        fresh: Render the call as create-phone-call answers it: "registered".
        status_override: A status to report instead of the computed one (the
            plan's transient status); the disconnection reason is then hidden.
        listing: Leave out the transcript fields, as list-calls does.
        phase: The phase to render instead of the one at `now`; a call that
            connects and ends in the same instant is still shown "ongoing" in
            its `call_started` webhook.

    Returns:
        The call object, JSON-ready.
    """
    if phase is None:
        phase = REGISTERED if fresh else phase_at(call, now)
    body = _identity(call)
    body.update(_timing(phase))
    base = base_url or _FALLBACK_BASE_URL
    body.update(_artifacts(call, phase, now, base, transcripts=not listing))
    if status_override is not None:
        body.update(call_status=status_override, disconnection_reason=None)
    return body


def _natural_phase(call: CallRecord, now: float) -> Phase:
    plan = call.plan
    if plan.kind == "stuck_registered" or now < call.ring_end:
        return REGISTERED
    if plan.kind == "error":
        return Phase("error", end=call.ring_end, reason=plan.disconnection_reason)
    if plan.kind not in CONNECTED_KINDS:
        reason = plan.disconnection_reason
        return Phase("not_connected", end=call.ring_end, reason=reason)
    if plan.kind == "stuck_ongoing":
        return Phase("ongoing", start=call.ring_end)

    talk_end = call.ring_end + plan.talk_seconds * call.time_scale
    if now < talk_end:
        return Phase("ongoing", start=call.ring_end)
    reason = plan.disconnection_reason
    return Phase("ended", call.ring_end, talk_end, plan.talk_seconds, reason)


def _identity(call: CallRecord) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "call_type": "phone_call",
        "agent_id": call.agent["agent_id"],
        "agent_version": call.agent["version"],
        "agent_name": call.agent["agent_name"],
        "direction": "outbound",
        "from_number": call.from_number,
        "to_number": call.to_number,
        "metadata": call.metadata,
        "retell_llm_dynamic_variables": call.dynamic_variables,
        "custom_sip_headers": call.custom_sip_headers,
        "telephony_identifier": dict(call.telephony_identifier),
        "data_storage_setting": "everything",
        "opt_in_signed_url": False,
        "latency": {},
    }


def _timing(phase: Phase) -> dict[str, Any]:
    final = phase.status in FINAL_STATUSES
    return {
        "call_status": phase.status,
        "start_timestamp": _ms(phase.start),
        "end_timestamp": _ms(phase.end),
        "duration_ms": round(phase.talk_seconds * 1000) if final else None,
        "disconnection_reason": phase.reason,
    }


def _artifacts(
    call: CallRecord, phase: Phase, now: float, base_url: str, *, transcripts: bool
) -> dict[str, Any]:
    connected_end = phase.status == "ended" and phase.start is not None
    artifacts: dict[str, Any] = {
        "recording_url": None,
        "public_log_url": None,
        "call_analysis": None,
        "call_cost": None,
    }
    if phase.status in FINAL_STATUSES:
        artifacts["public_log_url"] = f"{base_url}/sandbox/logs/{call.call_id}.txt"
    if transcripts:
        artifacts.update(dict.fromkeys(_TRANSCRIPT_FIELDS))
    if connected_end and transcripts:
        artifacts.update(_conversation(call, phase))
    if connected_end:
        artifacts["recording_url"] = f"{base_url}/sandbox/recordings/{call.call_id}.wav"
        artifacts["call_cost"] = _cost(phase.talk_seconds)
    if _analysis_ready(call, phase, now):
        artifacts["call_analysis"] = _analysis(call, phase)
    return artifacts


def _conversation(call: CallRecord, phase: Phase) -> dict[str, Any]:
    utterances = build_utterances(
        call.llm,
        voicemail=call.plan.kind == "voicemail",
        successful=_successful(call, phase),
        variables=call.dynamic_variables or {},
        talk_seconds=phase.talk_seconds,
    )
    return {
        "transcript": transcript_text(utterances),
        "transcript_object": utterances,
        "transcript_with_tool_calls": utterances,
    }


def _analysis_ready(call: CallRecord, phase: Phase, now: float) -> bool:
    ready_at = analysis_time(call, phase)
    return ready_at is not None and now >= ready_at


def _analysis(call: CallRecord, phase: Phase) -> dict[str, Any]:
    connected = phase.start is not None
    successful = _successful(call, phase)
    return {
        "call_summary": call_summary(call.plan.kind, phase.reason, successful),
        "call_successful": successful,
        "user_sentiment": call.plan.user_sentiment if connected else "Unknown",
        "in_voicemail": connected and call.plan.kind == "voicemail",
        "custom_analysis_data": {},
    }


def _successful(call: CallRecord, phase: Phase) -> bool:
    return call.plan.call_successful and phase.reason != "manual_stopped"


def _cost(talk_seconds: float) -> dict[str, Any]:
    seconds = round(talk_seconds, 3)
    return {
        "combined_cost": round(seconds * _UNIT_PRICE, 4),
        "total_duration_seconds": seconds,
        "total_duration_unit_price": _UNIT_PRICE,
        "product_costs": [
            {"product": name, "unit_price": price, "cost": round(seconds * price, 4)}
            for name, price in _PRODUCT_PRICES
        ],
    }


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
