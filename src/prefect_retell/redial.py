"""When a contact whose call did not reach them is called again.

Retell places one call per request and never redials. A campaign redials a
contact whose call ended for one of the chosen disconnection reasons (by default
no answer, busy and voicemail), after a pause, up to a number of calls per
contact. Each redial is a Retell call of its own, with its own attempt number and
idempotency key, so that a resumed campaign takes up a redial already placed
instead of placing it twice.

A call that ends `concurrency_limit_reached` never rang anyone: the campaign
places it again by itself after a short pause, and it does not count towards
`max_attempts`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from prefect_retell.errors import RetellConfigurationError
from prefect_retell.models import PhoneCall

__all__ = ["DEFAULT_REDIAL_ON", "CAPACITY_REASON", "RedialPolicy"]

DEFAULT_REDIAL_ON: tuple[str, ...] = (
    "dial_no_answer",
    "dial_busy",
    "voicemail_reached",
)
"""Reasons redialled unless the campaign names others."""

CAPACITY_REASON = "concurrency_limit_reached"
"""The reason a call never rang for lack of a free slot; always placed again."""

# Reasons for which a redial is wrong whatever the campaign asks: the person said
# no more calls, or the number cannot be reached at all.
_NEVER_REDIAL = {
    "user_requested_dnc": "the person asked not to be called again",
    "invalid_destination": "the number cannot be reached",
}

# Retell's documented disconnection reasons (retell-sdk 6.2.13), to catch typos
# in redial_on. A reason not listed is accepted with a warning: the list grows.
_KNOWN_REASONS = frozenset(
    {"user_hangup", "agent_hangup", "call_transfer", "voicemail_reached"}
    | {"ivr_reached", "inactivity", "max_duration_reached", "user_requested_dnc"}
    | {"user_requested_callback", "transfer_bridged", "transfer_cancelled"}
    | {"manual_stopped", "call_take_over", "dial_busy", "dial_failed"}
    | {"dial_no_answer", "invalid_destination", "telephony_provider_unavailable"}
    | {"telephony_provider_permission_denied", "sip_routing_error"}
    | {"marked_as_spam", "user_declined", "network_blocked", CAPACITY_REASON}
    | {"no_valid_payment", "scam_detected", "error_llm_websocket_open"}
    | {"error_llm_websocket_lost_connection", "error_llm_websocket_runtime"}
    | {"error_llm_websocket_corrupt_payload", "error_no_audio_received"}
    | {"error_asr", "error_retell", "error_unknown", "error_user_not_joined"}
    | {"registered_call_timeout", "credit_exhausted", "budget_reached"}
    | {"no_concurrency_fallback"}
)
_MOST_ATTEMPTS = 10
SHORTEST_DELAY_SECONDS = 10.0


@dataclass(frozen=True)
class RedialPolicy:
    """Which ended calls are placed again, how often and how long after.

    Attributes:
        redial_on: Disconnection reasons that lead to a redial.
        max_attempts: Most calls that reach the telephone network per contact,
            the first included; 1 turns redials off.
        delay_seconds: Pause between the end of one call and the next call to the
            same contact, on the campaign's clock; its calling window applies too.
        warnings: Notes about the settings, such as an unknown reason.
    """

    redial_on: frozenset[str]
    max_attempts: int
    delay_seconds: float
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_parameters(
        cls,
        redial_on: Iterable[str] | None,
        max_attempts: int,
        delay_seconds: float,
    ) -> RedialPolicy:
        """Check a campaign's redial settings.

        Raises:
            RetellConfigurationError: A setting cannot work or would do harm.
        """
        reasons = [
            r.strip() for r in (DEFAULT_REDIAL_ON if redial_on is None else redial_on)
        ]
        problems = _problems(reasons, max_attempts, delay_seconds)
        if problems:
            raise RetellConfigurationError(
                "; ".join(problems) + "; nothing was dialled."
            )
        return cls(
            redial_on=frozenset(reasons),
            max_attempts=max_attempts,
            delay_seconds=float(delay_seconds),
            warnings=tuple(_unknown_reason_warnings(reasons)),
        )

    def redials(self, call: PhoneCall, dials: int) -> bool:
        """Whether a contact whose `dials`-th call ended as `call` is called again."""
        return dials < self.max_attempts and call.disconnection_reason in self.redial_on


def _problems(reasons: list[str], max_attempts: int, delay_seconds: float) -> list[str]:
    problems = []
    if not 1 <= max_attempts <= _MOST_ATTEMPTS:
        problems.append(
            f"max_attempts must be between 1 and {_MOST_ATTEMPTS}, not {max_attempts}"
        )
    if max_attempts > 1 and delay_seconds < SHORTEST_DELAY_SECONDS:
        # Ringing one person back to back annoys them and gets numbers flagged
        # as spam by carriers.
        problems.append(
            f"redial_delay_seconds must be at least {SHORTEST_DELAY_SECONDS:g}, "
            f"not {delay_seconds:g}"
        )
    for reason in reasons:
        if reason in _NEVER_REDIAL:
            problems.append(
                f"redial_on may not include {reason}: {_NEVER_REDIAL[reason]}"
            )
    return problems


def _unknown_reason_warnings(reasons: list[str]) -> list[str]:
    warnings = []
    for reason in reasons:
        if reason in _KNOWN_REASONS:
            continue
        close = difflib.get_close_matches(reason, sorted(_KNOWN_REASONS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(
            f"redial_on names {reason!r}, which is not a disconnection reason "
            f"Retell documents{hint}"
        )
    return warnings
