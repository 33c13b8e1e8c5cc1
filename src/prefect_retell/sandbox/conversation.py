"""What sandbox calls "said": transcripts and post-call summaries.

Transcripts follow a short script per agent, with the call's dynamic variables
substituted the way Retell does: a `{{name}}` without a value stays in the text
literally, so a campaign that forgot a column shows it in the transcript.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .world import REMINDER_LLM_ID, SURVEY_LLM_ID

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

# Lines after the agent's begin message, per LLM and per call result.
_SCRIPTS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    REMINDER_LLM_ID: {
        "success": (
            ("user", "Oh, hi. Yes, that's me."),
            ("agent", "Can you still make it, or would you like another time?"),
            ("user", "I can make it, thanks."),
            ("agent", "Wonderful, you're confirmed. See you then, goodbye!"),
        ),
        "failure": (
            ("user", "Sorry, who is this?"),
            ("agent", "It's {{clinic}}, about your visit on {{appointment_date}}."),
            ("user", "I'm busy right now."),
            ("agent", "No problem, we'll try again later. Goodbye."),
        ),
        "voicemail": (
            (
                "agent",
                "Please call {{clinic}} back to confirm your appointment on "
                "{{appointment_date}}. Goodbye.",
            ),
        ),
    },
    SURVEY_LLM_ID: {
        "success": (
            ("user", "Sure, go ahead."),
            ("agent", "On a scale of one to five, how was your visit?"),
            ("user", "A four, I'd say."),
            ("agent", "Thank you, {{first_name}}, that's all. Goodbye!"),
        ),
        "failure": (
            ("user", "Not really, no."),
            ("agent", "Understood, thank you for your time. Goodbye."),
        ),
        "voicemail": (
            ("agent", "We'll try you again another day. Thank you, goodbye."),
        ),
    },
}


def fill_variables(text: str, variables: Mapping[str, str]) -> str:
    """Substitute `{{name}}` placeholders that have a value; leave the others.

    Args:
        text: Text with placeholders.
        variables: The call's dynamic variables.

    Returns:
        The text with known placeholders replaced.
    """

    def replace(match: re.Match[str]) -> str:
        return variables.get(match.group(1), match.group(0))

    return _VARIABLE.sub(replace, text)


def build_utterances(
    llm: Mapping[str, Any],
    *,
    voicemail: bool,
    successful: bool,
    variables: Mapping[str, str],
    talk_seconds: float,
) -> list[dict[str, Any]]:
    """Return the `transcript_object` of a connected call.

    Args:
        llm: The Retell LLM of the call's agent (its begin message opens the call).
        voicemail: Whether the agent spoke to a voicemail box.
        successful: Whether the conversation reached its goal.
        variables: The call's dynamic variables.
        talk_seconds: Simulated length; word timings are spread over it.

    Returns:
        Utterances `{role, content, words: [{word, start, end}]}`.
    """
    script = _SCRIPTS.get(llm["llm_id"], _SCRIPTS[REMINDER_LLM_ID])
    outcome = "voicemail" if voicemail else "success" if successful else "failure"
    lines = [("agent", llm["begin_message"]), *script[outcome]]
    texts = [(role, fill_variables(text, variables)) for role, text in lines]

    return _timed(texts, talk_seconds)


def transcript_text(utterances: list[dict[str, Any]]) -> str:
    """Return the plain-text transcript Retell shows for the utterances."""
    return "".join(
        f"{item['role'].capitalize()}: {item['content']}\n" for item in utterances
    )


def call_summary(kind: str, reason: str | None, successful: bool) -> str:
    """Return the post-call summary sentence of a final call.

    Args:
        kind: The outcome kind of the call.
        reason: Its disconnection reason.
        successful: Whether the conversation reached its goal.
    """
    if kind == "voicemail":
        return "The call reached voicemail; the agent left a short message."
    if kind in ("answered", "stuck_ongoing"):
        if successful:
            return "The agent reached the customer, who agreed to what was asked."
        return "The agent reached the customer, who did not agree this time."
    return f"The call did not connect ({reason})."


def _timed(texts: list[tuple[str, str]], talk_seconds: float) -> list[dict[str, Any]]:
    words_total = sum(len(text.split()) for _, text in texts) or 1
    step = max(talk_seconds, 1.0) / words_total
    clock = 0.0
    utterances = []
    for role, text in texts:
        words = []
        for word in text.split():
            words.append({"word": word, "start": round(clock, 3)})
            clock += step
            words[-1]["end"] = round(clock, 3)
        utterances.append({"role": role, "content": text, "words": words})
    return utterances
