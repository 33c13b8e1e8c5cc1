"""Checks of request bodies, with Retell's 400 answers.

Messages name the offending field (and key) but never repeat a phone number, a
dynamic variable's value or metadata, because clients log them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
METADATA_LIMIT_BYTES = 50_000
"""Retell documents "50kB max" for metadata; the sandbox reads it as 50,000 bytes."""

AGENT_LIST_FIELDS = (
    "inbound_agents",
    "outbound_agents",
    "inbound_sms_agents",
    "outbound_sms_agents",
)
# Retired on 2026-03-31 in favour of the weighted lists above.
REMOVED_AGENT_FIELDS = {
    "inbound_agent_id": "inbound_agents",
    "inbound_agent_version": "inbound_agents",
    "outbound_agent_id": "outbound_agents",
    "outbound_agent_version": "outbound_agents",
    "inbound_sms_agent_id": "inbound_sms_agents",
    "inbound_sms_agent_version": "inbound_sms_agents",
    "outbound_sms_agent_id": "outbound_sms_agents",
    "outbound_sms_agent_version": "outbound_sms_agents",
}
_TEXT_FIELDS = ("nickname", "inbound_webhook_url", "inbound_sms_webhook_url")
_COUNTRY_FIELDS = ("allowed_inbound_country_list", "allowed_outbound_country_list")
_TRUNK_TEXT_FIELDS = ("termination_uri", "auth_username", "auth_password", "transport")
_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CreateRequest:
    """A checked create-phone-call body.

    Attributes:
        from_number: The dialling number (E.164 unless custom and exempted).
        to_number: The destination, E.164.
        idempotency_key: Key that makes a resend return the first call.
        honor_internal_dnc: Refuse destinations on the do-not-call list.
        ignore_e164_validation: Skip the from_number format check (custom only).
        override_agent_id: Agent to use instead of the number's.
        override_agent_version: Version, "latest", "latest_published" or a tag.
        metadata: Opaque object echoed on the call.
        dynamic_variables: Prompt variables, strings only.
        custom_sip_headers: SIP headers, strings only.
    """

    from_number: str
    to_number: str
    idempotency_key: str | None = None
    honor_internal_dnc: bool = False
    ignore_e164_validation: bool = False
    override_agent_id: str | None = None
    override_agent_version: int | str | None = None
    metadata: Any = None
    dynamic_variables: dict[str, str] | None = None
    custom_sip_headers: dict[str, str] | None = None


def parse_create_request(body: Any) -> CreateRequest:
    """Check a create-phone-call body; unknown fields are ignored, as Retell does.

    The from_number format is checked later, once its telephony type is known.

    Args:
        body: The decoded JSON body.

    Raises:
        ApiError: 400 naming the first problem.
    """
    body = _object(body, "The request body")
    from_number = _required_text(body, "from_number")
    to_number = _required_text(body, "to_number")
    require_e164(to_number, "to_number")
    metadata = body.get("metadata")
    if metadata is not None:
        _check_metadata(metadata)

    return CreateRequest(
        from_number=from_number,
        to_number=to_number,
        idempotency_key=_optional_key(body.get("idempotency_key")),
        honor_internal_dnc=_flag(body, "honor_internal_dnc"),
        ignore_e164_validation=_flag(body, "ignore_e164_validation"),
        override_agent_id=_optional_text(body, "override_agent_id"),
        override_agent_version=_agent_version(
            body.get("override_agent_version"), "override_agent_version"
        ),
        metadata=metadata,
        dynamic_variables=_string_map(body, "retell_llm_dynamic_variables"),
        custom_sip_headers=_string_map(body, "custom_sip_headers"),
    )


def require_e164(number: str, field: str) -> None:
    """Raise 400 unless `number` is E.164 (the number itself is not repeated)."""
    if not E164.match(number):
        raise bad_request(
            f"{field} must be in E.164 format: '+', the country code and the "
            "number, 7 to 15 digits in all, without spaces or punctuation."
        )


def parse_number_update(body: Any) -> dict[str, Any]:
    """Check an update-phone-number body and return the changes it asks for.

    Agent lists are checked for shape and weights here; whether their agents exist
    is checked by the caller (422).

    Args:
        body: The decoded JSON body.

    Returns:
        Field name to new value; `sip_outbound_trunk_config` gathers trunk fields.

    Raises:
        ApiError: 400 naming the first problem.
    """
    body = _object(body, "The request body")
    for name, replacement in REMOVED_AGENT_FIELDS.items():
        if name in body:
            raise bad_request(
                f"{name} was removed from update-phone-number; set {replacement} "
                'to a list such as [{"agent_id": "...", "weight": 1}] instead.'
            )

    changes: dict[str, Any] = {}
    for name in AGENT_LIST_FIELDS:
        if name in body:
            changes[name] = parse_weighted_agents(body[name], name)
    changes.update(_plain_changes(body))
    trunk = _trunk_changes(body)
    if trunk:
        changes["sip_outbound_trunk_config"] = trunk
    return changes


def parse_weighted_agents(value: Any, field: str) -> list[dict[str, Any]] | None:
    """Check a weighted agent list: null, or `{agent_id, weight, agent_version?}`.

    Args:
        value: The list from the body.
        field: Its name, for messages.

    Returns:
        The cleaned list, or None for null or an empty list (no agent bound).

    Raises:
        ApiError: 400 if an entry is malformed or the weights do not total 1.
    """
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise bad_request(f"{field} must be null or a list of agents.")
    entries = [_weighted_agent(entry, f"{field}[{i}]") for i, entry in enumerate(value)]

    total = math.fsum(entry["weight"] for entry in entries)
    if abs(total - 1) > _WEIGHT_TOLERANCE:
        raise bad_request(
            f"{field} weights must add up to 1; they add up to {total:g}."
        )
    return entries


def _weighted_agent(entry: Any, where: str) -> dict[str, Any]:
    entry = _object(entry, where)
    agent_id = entry.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise bad_request(f"{where}.agent_id is required and must be a string.")
    weight = entry.get("weight")
    if not _is_number(weight) or weight < 0:
        raise bad_request(f"{where}.weight is required and must be a number >= 0.")

    cleaned: dict[str, Any] = {"agent_id": agent_id, "weight": weight}
    version = _agent_version(entry.get("agent_version"), f"{where}.agent_version")
    if version is not None:
        cleaned["agent_version"] = version
    return cleaned


def _plain_changes(body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        if name in body:
            changes[name] = _optional_text(body, name)
    for name in _COUNTRY_FIELDS:
        if name in body:
            changes[name] = _country_list(body[name], name)
    if "fallback_number" in body:
        fallback = _optional_text(body, "fallback_number")
        if fallback is not None:
            require_e164(fallback, "fallback_number")
        changes["fallback_number"] = fallback
    return changes


def _trunk_changes(body: dict[str, Any]) -> dict[str, Any]:
    trunk = {name: _optional_text(body, name) for name in _TRUNK_TEXT_FIELDS}
    trunk = {name: value for name, value in trunk.items() if name in body}
    if "codecs" in body:
        codecs = body["codecs"]
        if codecs is not None and not _strings(codecs):
            raise bad_request("codecs must be null or a list of strings.")
        trunk["codecs"] = codecs
    return trunk


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be a JSON object.")
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > METADATA_LIMIT_BYTES:
        raise bad_request(
            f"metadata is {size} bytes once serialized; the limit is "
            f"{METADATA_LIMIT_BYTES} bytes."
        )


def _string_map(body: dict[str, Any], field: str) -> dict[str, str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"{field} must be an object whose values are strings.")
    for key, item in value.items():
        if not isinstance(item, str):
            kind = type(item).__name__
            raise bad_request(
                f"{field}.{key} must be a string, not {kind}; send every value "
                'as text (e.g. "42").'
            )
    return dict(value)


def _agent_version(value: Any, field: str) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad_request(f"{field} must be an integer or a string.")
    if isinstance(value, str) and not value:
        raise bad_request(f"{field} must not be empty.")
    return value


def _country_list(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not _strings(value) or not all(re.fullmatch("[A-Z]{2}", c) for c in value):
        raise bad_request(f"{field} must be a list of ISO 3166-1 alpha-2 codes.")
    return list(value)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object.")
    return value


def _required_text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None or value == "":
        raise bad_request(f"{field} is required.")
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string.")
    return value


def _optional_text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{field} must be a string.")
    return value


def _optional_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request("idempotency_key must be a non-empty string.")
    return value


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{field} must be true or false.")
    return value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
