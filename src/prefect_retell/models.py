"""Typed shapes of the Retell API objects that prefect-retell reads and writes.

Retell adds fields and enum values between releases, so every model keeps unknown
fields (`extra="allow"`) and every enum-like field is a plain string: a new
disconnection reason or status is carried through, never a validation error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

__all__ = [
    "FINAL_CALL_STATUSES",
    "FAILED_DISCONNECTION_REASONS",
    "Agent",
    "AgentWeight",
    "CallAnalysis",
    "CallCost",
    "CallListPage",
    "CallStatus",
    "Concurrency",
    "PhoneCall",
    "PhoneCallRequest",
    "PhoneNumber",
    "RetellLLM",
    "is_final_status",
]


class CallStatus:
    """The call statuses Retell documents; others may appear and are kept."""

    REGISTERED = "registered"
    ONGOING = "ongoing"
    ENDED = "ended"
    NOT_CONNECTED = "not_connected"
    ERROR = "error"


# Older docs list only registered/ongoing/ended/error: a loop waiting for "ended"
# alone never returns for a call that did not connect.
FINAL_CALL_STATUSES = frozenset(
    {CallStatus.ENDED, CallStatus.NOT_CONNECTED, CallStatus.ERROR}
)

# Reasons that mean the person was not reached, whatever the call's status.
FAILED_DISCONNECTION_REASONS = frozenset(
    {
        "dial_busy",
        "dial_failed",
        "dial_no_answer",
        "invalid_destination",
        "telephony_provider_permission_denied",
        "telephony_provider_unavailable",
        "sip_routing_error",
        "marked_as_spam",
        "user_declined",
        "network_blocked",
        "concurrency_limit_reached",
        "no_valid_payment",
        "scam_detected",
        "registered_call_timeout",
        "credit_exhausted",
        "budget_reached",
    }
)


def is_final_status(status: str | None) -> bool:
    """Tell whether a call status is final: `ended`, `not_connected` or `error`.

    An unknown status (Retell may add one) is treated as not final.
    """
    return status in FINAL_CALL_STATUSES


class RetellModel(BaseModel):
    """Base of the API models: unknown fields are kept, names are as Retell's."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AgentWeight(RetellModel):
    """One agent of a phone number's weighted inbound or outbound list."""

    agent_id: str
    weight: float = 1.0
    agent_version: int | str | None = None


class PhoneNumber(RetellModel):
    """A phone number of the account, with the agents bound to it."""

    phone_number: str
    phone_number_type: str | None = None
    phone_number_pretty: str | None = None
    nickname: str | None = None
    inbound_agents: list[AgentWeight] | None = None
    outbound_agents: list[AgentWeight] | None = None
    allowed_outbound_country_list: list[str] | None = None
    last_modification_timestamp: int | None = None


class Agent(RetellModel):
    """A voice agent, at one version."""

    agent_id: str
    version: int | None = None
    agent_name: str | None = None
    response_engine: dict[str, Any] | None = None
    is_published: bool | None = None


class RetellLLM(RetellModel):
    """A Retell LLM response engine, holding the agent's prompt."""

    llm_id: str
    version: int | None = None
    general_prompt: str | None = None
    begin_message: str | None = None


class Concurrency(RetellModel):
    """The account's concurrency: calls live now and the limit."""

    current_concurrency: int | None = None
    concurrency_limit: int | None = None
    reserved_inbound_concurrency: int | None = None


class CallAnalysis(RetellModel):
    """Retell's post-call analysis."""

    call_summary: str | None = None
    call_successful: bool | None = None
    user_sentiment: str | None = None
    in_voicemail: bool | None = None
    custom_analysis_data: dict[str, Any] | None = None


class CallCost(RetellModel):
    """What a call cost, in cents."""

    combined_cost: float | None = None
    total_duration_seconds: float | None = None


class PhoneCall(RetellModel):
    """A phone call as Retell reports it.

    `call_status` and `disconnection_reason` are plain strings, so values that
    Retell adds later are kept as they come.
    """

    call_id: str
    call_type: str = "phone_call"
    call_status: str
    agent_id: str | None = None
    agent_version: int | None = None
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    metadata: dict[str, Any] | None = None
    retell_llm_dynamic_variables: dict[str, Any] | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None
    duration_ms: int | None = None
    disconnection_reason: str | None = None
    transcript: str | None = None
    recording_url: str | None = None
    public_log_url: str | None = None
    call_analysis: CallAnalysis | None = None
    call_cost: CallCost | None = None

    @property
    def is_final(self) -> bool:
        """Whether the call has reached a final status."""
        return is_final_status(self.call_status)

    def __repr__(self) -> str:
        # The default repr would print both phone numbers and the transcript.
        return (
            f"PhoneCall(call_id={self.call_id!r}, call_status={self.call_status!r}, "
            f"disconnection_reason={self.disconnection_reason!r})"
        )


class CallListPage(RetellModel):
    """One page of `POST /v3/list-calls`."""

    items: list[PhoneCall] = Field(default_factory=list)
    has_more: bool = False
    pagination_key: str | None = None
    total: int | None = None


class PhoneCallRequest(BaseModel):
    """The body of `POST /v2/create-phone-call`.

    Dynamic variable and SIP header values must be strings: Retell's prompt
    substitution takes strings only, so a number here is refused before sending.
    """

    model_config = ConfigDict(extra="forbid")

    from_number: str
    to_number: str
    override_agent_id: str | None = None
    override_agent_version: int | str | None = None
    agent_override: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    retell_llm_dynamic_variables: dict[str, StrictStr] | None = None
    custom_sip_headers: dict[str, StrictStr] | None = None
    idempotency_key: str | None = None
    honor_internal_dnc: bool | None = None
    ignore_e164_validation: bool | None = None

    @field_validator("from_number", "to_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not (value.startswith("+") and value[1:].isdigit() and 7 < len(value) < 17):
            raise ValueError("must be an E.164 number such as +14155550123")
        return value

    def to_body(self) -> dict[str, Any]:
        """The JSON body, without the fields left unset."""
        return self.model_dump(exclude_none=True)

    def __repr__(self) -> str:
        return "PhoneCallRequest(<redacted>)"
