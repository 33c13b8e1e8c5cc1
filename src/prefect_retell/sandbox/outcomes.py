"""Deterministic call outcomes: who answers, how long it rings, how long they talk.

Without an override, the outcome of a call depends only on the sandbox seed and the
destination number, through a SHA-256 hash (Python's `hash()` changes between
processes). Rough shares: answered 60 %, voicemail 12 %, no answer 14 %, busy 8 %,
failed 6 %; rings last 2 to 25 and conversations 20 to 150 simulated seconds. The
same number therefore gets the same outcome on every attempt, which keeps
rehearsals reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutcomeKind = Literal[
    "answered",
    "voicemail",
    "no_answer",
    "busy",
    "failed",
    "error",
    "stuck_registered",
    "stuck_ongoing",
]

DEFAULT_REASONS: dict[str, str | None] = {
    "voicemail": "voicemail_reached",
    "no_answer": "dial_no_answer",
    "busy": "dial_busy",
    "failed": "dial_failed",
    # The error Retell documents for outbound campaigns; pass another reason in
    # the Outcome to stage a different one.
    "error": "concurrency_limit_reached",
    "stuck_registered": None,
    "stuck_ongoing": None,
}

CONNECTED_KINDS = frozenset({"answered", "voicemail", "stuck_ongoing"})

_KIND_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("answered", 0.60),
    ("voicemail", 0.12),
    ("no_answer", 0.14),
    ("busy", 0.08),
    ("failed", 0.06),
)
_RING_RANGE_SECONDS = (2.0, 25.0)
_TALK_RANGE_SECONDS = (20.0, 150.0)
_SENTIMENTS = (("Positive", 0.5), ("Neutral", 0.35), ("Negative", 0.15))


class Outcome(BaseModel):
    """What happens to calls placed to one destination number.

    Unset durations fall back to the number's deterministic values. Durations are
    simulated seconds; the sandbox's `time_scale` turns them into wall time.

    Examples:
        A number that rings for 3 simulated seconds and is never answered, and one
        that reports the unknown status "transferring" once:

        >>> unanswered = Outcome(kind="no_answer", ring_seconds=3)
        >>> odd = Outcome(kind="answered", transient_status="transferring")
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: OutcomeKind = Field(
        description=(
            "answered/voicemail end 'ended'; no_answer/busy/failed end "
            "'not_connected'; error ends 'error'; stuck_registered and "
            "stuck_ongoing keep that status until stop-call."
        )
    )
    ring_seconds: float | None = Field(
        default=None, ge=0, description="Simulated seconds in 'registered'."
    )
    talk_seconds: float | None = Field(
        default=None, ge=0, description="Simulated seconds in 'ongoing'."
    )
    disconnection_reason: str | None = Field(
        default=None,
        description="Reason to report instead of the kind's usual one.",
    )
    transient_status: str | None = Field(
        default=None,
        description=(
            "A status outside Retell's enum (such as 'transferring') that exactly "
            "one read after the ring reports, by get-call or list-calls."
        ),
    )
    call_successful: bool | None = Field(
        default=None,
        description=(
            "What the post-call analysis of an answered call says; unset, it is "
            "drawn from the seed (true 4 times in 5)."
        ),
    )


@dataclass(frozen=True)
class CallPlan:
    """The whole future of one call, fixed when the call is created.

    Attributes:
        kind: The outcome kind.
        ring_seconds: Simulated seconds before the call connects or fails.
        talk_seconds: Simulated seconds of conversation (0 if never connected).
        disconnection_reason: Reason reported once the call is final.
        transient_status: Unknown status reported by one read, or None.
        call_successful: What the post-call analysis will say.
        user_sentiment: What the post-call analysis will say.
    """

    kind: str
    ring_seconds: float
    talk_seconds: float
    disconnection_reason: str | None
    transient_status: str | None = None
    call_successful: bool = False
    user_sentiment: str = "Unknown"


def stable_fractions(*parts: object) -> list[float]:
    """Return four fractions in [0, 1) derived from `parts`, equal in every process.

    Args:
        parts: Values whose string forms identify the draw.

    Returns:
        Four independent-looking fractions.
    """
    text = "\x1f".join(str(part) for part in parts)
    digest = hashlib.sha256(text.encode()).digest()
    chunks = (digest[index : index + 8] for index in range(0, 32, 8))
    return [int.from_bytes(chunk, "big") / 2**64 for chunk in chunks]


def pick_weighted(choices: Sequence[tuple[str, float]], fraction: float) -> str:
    """Pick one name from `(name, weight)` pairs with a fraction in [0, 1).

    Args:
        choices: Names and their positive weights.
        fraction: The draw.

    Returns:
        The chosen name; the last one if rounding leaves the draw past the end.
    """
    total = sum(weight for _, weight in choices)
    point = fraction * total
    for name, weight in choices:
        if point < weight:
            return name
        point -= weight
    return choices[-1][0]


def default_outcome(seed: int, to_number: str) -> Outcome:
    """Return the outcome a number gets when nobody overrides it.

    Args:
        seed: The sandbox seed.
        to_number: The destination, E.164.

    Returns:
        A fully specified Outcome (kind, ring, talk and reason set).
    """
    kind_draw, ring_draw, talk_draw, reason_draw = stable_fractions(
        seed, "outcome", to_number
    )
    kind = pick_weighted(_KIND_WEIGHTS, kind_draw)
    reason = DEFAULT_REASONS.get(kind)
    if kind == "answered":
        reason = "user_hangup" if reason_draw < 0.6 else "agent_hangup"

    return Outcome(
        kind=kind,
        ring_seconds=_spread(_RING_RANGE_SECONDS, ring_draw),
        talk_seconds=_spread(_TALK_RANGE_SECONDS, talk_draw),
        disconnection_reason=reason,
    )


def plan_call(seed: int, to_number: str, override: Outcome | None) -> CallPlan:
    """Fix the future of a new call to `to_number`.

    Args:
        seed: The sandbox seed.
        to_number: The destination, E.164.
        override: The number's Outcome set by `Sandbox.set_outcome`, if any.

    Returns:
        The plan; fields the override leaves unset come from the default outcome.
    """
    default = default_outcome(seed, to_number)
    chosen = override or default
    ring = _first_set(chosen.ring_seconds, default.ring_seconds)
    talk = _first_set(chosen.talk_seconds, default.talk_seconds)
    if chosen.kind not in CONNECTED_KINDS:
        talk = 0.0

    return CallPlan(
        kind=chosen.kind,
        ring_seconds=ring,
        talk_seconds=talk,
        disconnection_reason=_reason_for(chosen, default),
        transient_status=chosen.transient_status,
        **_analysis_for(seed, to_number, chosen),
    )


def error_plan(reason: str) -> CallPlan:
    """Return the plan of a call that is accepted and fails at once."""
    return CallPlan(
        kind="error", ring_seconds=0.0, talk_seconds=0.0, disconnection_reason=reason
    )


def _reason_for(chosen: Outcome, default: Outcome) -> str | None:
    if chosen.disconnection_reason is not None:
        return chosen.disconnection_reason
    if chosen.kind == "answered":
        # The default kind may differ, so its reason only helps if it was answered.
        if default.kind == "answered":
            return default.disconnection_reason
        return "user_hangup"
    return DEFAULT_REASONS[chosen.kind]


def _analysis_for(seed: int, to_number: str, chosen: Outcome) -> dict[str, object]:
    success_draw, sentiment_draw, _, _ = stable_fractions(seed, "analysis", to_number)
    if chosen.kind not in CONNECTED_KINDS:
        return {"call_successful": False, "user_sentiment": "Unknown"}
    if chosen.kind == "voicemail":
        return {"call_successful": False, "user_sentiment": "Neutral"}
    successful = chosen.call_successful
    return {
        "call_successful": success_draw < 0.8 if successful is None else successful,
        "user_sentiment": pick_weighted(_SENTIMENTS, sentiment_draw),
    }


def _spread(bounds: tuple[float, float], fraction: float) -> float:
    low, high = bounds
    return round(low + (high - low) * fraction, 1)


def _first_set(value: float | None, fallback: float | None) -> float:
    if value is not None:
        return float(value)
    return float(fallback or 0.0)
