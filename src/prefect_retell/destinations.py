"""Which destinations and rates a from-number's telephony provider allows.

Retell documents, per provider, the countries its numbers can call and the most
calls per second a number can be set to. Checking both before dialling turns a
campaign-long stream of refused calls into one clear message up front.
"""

from __future__ import annotations

import phonenumbers

from prefect_retell.models import PhoneNumber

__all__ = ["allowed_countries", "destination_problem", "max_cps"]

# docs.retellai.com/deploy/international-call
_PROVIDER_COUNTRIES: dict[str, frozenset[str]] = {
    "retell-twilio": frozenset(
        {"US", "CA", "MX", "GB", "DE", "ES", "FR", "IT"}
        | {"IN", "AU", "JP", "ID", "PH", "MY", "TH"}
    ),
    "retell-telnyx": frozenset({"US", "CA", "IN"}),
}

# docs.retellai.com/deploy/outbound-call
_PROVIDER_MAX_CPS = {"retell-twilio": 5, "retell-telnyx": 16}


def allowed_countries(number: PhoneNumber) -> frozenset[str] | None:
    """The ISO country codes a number may call, or None when any is allowed.

    The provider's list, narrowed by the number's own `allowed_outbound_country_list`.
    Numbers on custom telephony follow their carrier, which Retell does not know.
    """
    allowed = _PROVIDER_COUNTRIES.get(number.phone_number_type or "")
    own = number.allowed_outbound_country_list
    if own:
        own_set = frozenset(code.upper() for code in own)
        allowed = own_set if allowed is None else allowed & own_set
    return allowed


def destination_problem(to_number: str, allowed: frozenset[str] | None) -> str | None:
    """Why a number may not be called from here, or None when it may."""
    if allowed is None:
        return None
    region = phonenumbers.region_code_for_number(phonenumbers.parse(to_number))
    if region in allowed:
        return None
    return (
        f"destination country {region or 'unknown'} is not allowed for this "
        f"from-number (allowed: {', '.join(sorted(allowed))})"
    )


def max_cps(number: PhoneNumber, concurrency_limit: int | None) -> int | None:
    """The most calls per second the number's provider allows, if known.

    Custom telephony allows up to a twentieth of the account's concurrency.
    """
    if number.phone_number_type in _PROVIDER_MAX_CPS:
        return _PROVIDER_MAX_CPS[number.phone_number_type]
    if number.phone_number_type == "custom" and concurrency_limit:
        return max(1, concurrency_limit // 20)
    return None
