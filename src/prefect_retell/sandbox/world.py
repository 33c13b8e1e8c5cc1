"""The seeded account: its phone numbers, agents and Retell LLMs.

Every sandbox starts with the same three numbers, one per telephony type, each
allowed the highest calls per second its provider permits (Twilio 5, Telnyx 16,
custom telephony concurrency / 20), so a campaign may pace itself at any CPS up to
that. Two agents exist, each backed by a Retell LLM whose prompt uses dynamic
variables.
"""

from __future__ import annotations

from typing import Any

REMINDER_AGENT_ID = "agent_sandbox_reminder"
SURVEY_AGENT_ID = "agent_sandbox_survey"
REMINDER_LLM_ID = "llm_sandbox_reminder"
SURVEY_LLM_ID = "llm_sandbox_survey"

TWILIO_NUMBER = "+16505550100"
TELNYX_NUMBER = "+16505550101"
CUSTOM_NUMBER = "+16505550102"

_VOICE_ID = "11labs-Adrian"

_LLM_TEXTS: dict[str, dict[str, str]] = {
    REMINDER_LLM_ID: {
        "general_prompt": (
            "You are the scheduling assistant of {{clinic}}. Call {{first_name}} "
            "to remind them of their appointment on {{appointment_date}}. Ask "
            "them to confirm, reschedule or cancel. Be brief and friendly and "
            "never discuss medical details."
        ),
        "begin_message": (
            "Hi {{first_name}}, this is the scheduling assistant of {{clinic}}, "
            "calling about your appointment on {{appointment_date}}."
        ),
    },
    SURVEY_LLM_ID: {
        "general_prompt": (
            "You run a two-minute customer survey. Greet {{first_name}}, ask "
            "three short questions about their last visit and thank them."
        ),
        "begin_message": (
            "Hi {{first_name}}, do you have two minutes for a short survey about "
            "your last visit?"
        ),
    },
}

# (agent id, name, llm id, published flag per version); the survey's newest
# version is a draft so that "latest" and "latest_published" differ.
_AGENTS = (
    (REMINDER_AGENT_ID, "Appointment reminder", REMINDER_LLM_ID, (True, True, True)),
    (SURVEY_AGENT_ID, "Customer survey", SURVEY_LLM_ID, (True, False)),
)


def seed_llms(now_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Return the seeded Retell LLMs, each as a list of versions (index = version).

    Args:
        now_ms: Epoch milliseconds to stamp as the last modification.
    """
    llms: dict[str, list[dict[str, Any]]] = {}
    for _, _, llm_id, published in _AGENTS:
        llms[llm_id] = [
            {
                "llm_id": llm_id,
                "version": version,
                **_LLM_TEXTS[llm_id],
                "model": "gpt-4.1",
                "last_modification_timestamp": now_ms,
                "is_published": is_published,
            }
            for version, is_published in enumerate(published)
        ]
    return llms


def seed_agents(now_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Return the seeded agents, each as a list of versions (index = version).

    Args:
        now_ms: Epoch milliseconds to stamp as the last modification.
    """
    agents: dict[str, list[dict[str, Any]]] = {}
    for agent_id, name, llm_id, published in _AGENTS:
        agents[agent_id] = [
            _agent_version(agent_id, name, llm_id, version, is_published, now_ms)
            for version, is_published in enumerate(published)
        ]
    return agents


def seed_phone_numbers(now_ms: int) -> dict[str, dict[str, Any]]:
    """Return the seeded phone number objects keyed by E.164 number.

    Args:
        now_ms: Epoch milliseconds to stamp as the last modification.
    """
    bound = [{"agent_id": REMINDER_AGENT_ID, "weight": 1}]
    numbers = {
        TWILIO_NUMBER: _number(TWILIO_NUMBER, "retell-twilio", bound, now_ms),
        TELNYX_NUMBER: _number(TELNYX_NUMBER, "retell-telnyx", bound, now_ms),
        CUSTOM_NUMBER: _number(CUSTOM_NUMBER, "custom", None, now_ms),
    }
    numbers[CUSTOM_NUMBER]["sip_outbound_trunk_config"] = {
        "termination_uri": "sandbox-trunk.pstn.invalid",
        "auth_username": None,
        "transport": "TCP",
        "codecs": None,
    }
    return numbers


def seed_cps(concurrency_limit: int) -> dict[str, int]:
    """Return each seeded number's calls-per-second limit.

    Args:
        concurrency_limit: The account's concurrency limit; custom telephony may
            dial at most a twentieth of it per second.
    """
    return {
        TWILIO_NUMBER: 5,
        TELNYX_NUMBER: 16,
        CUSTOM_NUMBER: max(1, concurrency_limit // 20),
    }


def _agent_version(
    agent_id: str,
    name: str,
    llm_id: str,
    version: int,
    is_published: bool,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "version": version,
        "agent_name": name,
        "response_engine": {
            "type": "retell-llm",
            "llm_id": llm_id,
            "version": version,
        },
        "voice_id": _VOICE_ID,
        "language": "en-US",
        "webhook_url": None,
        "is_published": is_published,
        "channel": "voice",
        "last_modification_timestamp": now_ms,
    }


def _number(
    number: str,
    number_type: str,
    agents: list[dict[str, Any]] | None,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "phone_number": number,
        "phone_number_type": number_type,
        "phone_number_pretty": f"+1 ({number[2:5]}) {number[5:8]}-{number[8:]}",
        "area_code": int(number[2:5]),
        "nickname": f"Sandbox {number_type} line",
        "inbound_agents": [dict(agent) for agent in agents] if agents else None,
        "outbound_agents": [dict(agent) for agent in agents] if agents else None,
        "inbound_sms_agents": None,
        "outbound_sms_agents": None,
        "inbound_webhook_url": None,
        "inbound_sms_webhook_url": None,
        "allowed_inbound_country_list": None,
        "allowed_outbound_country_list": None,
        "fallback_number": None,
        "last_modification_timestamp": now_ms,
    }
