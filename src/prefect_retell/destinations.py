"""Which destinations and rates a from-number's telephony provider allows.

Retell documents, per provider, the countries its numbers can call and the most
calls per second a number can be set to. Checking both before dialling turns a
campaign-long stream of refused calls into one clear message up front.

The countries a number may call, in order of authority:

1. the number's own `allowed_outbound_country_list`, when it is set: the account
   chose it, and Retell enforces it;
2. otherwise Retell's documented list for the number's provider (Twilio, Telnyx);
3. otherwise (custom telephony, which follows its own carrier) any country.

Retell's sources disagree about what Retell-bought numbers reach (the SDK says the
US only, the docs list 15 countries for Twilio), so the number's own list is taken
as it is, with a warning for countries the provider list does not name.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from prefect_retell.models import PhoneNumber

__all__ = ["DestinationRule", "destination_rule", "max_cps"]

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

# phonenumbers' region for numbers of no country (+800 freephone, +882 networks).
_NON_GEOGRAPHIC = "001"


@dataclass(frozen=True)
class DestinationRule:
    """The countries a from-number may call, and whose rule that is.

    Attributes:
        countries: ISO 3166-1 alpha-2 codes, or None when any country may be
            called.
        own_list: True when the number's `allowed_outbound_country_list` decides.
        beyond_provider: Countries of the number's own list that Retell's list for
            its provider does not name; calls there may be refused.
    """

    countries: frozenset[str] | None
    own_list: bool = False
    beyond_provider: frozenset[str] = frozenset()

    def problem(self, to_number: str) -> str | None:
        """Why `to_number` may not be called from this number, or None."""
        if self.countries is None:
            return None
        region = phonenumbers.region_code_for_number(phonenumbers.parse(to_number))
        if region in self.countries:
            return None
        shown = _region_text(region)
        allowed = ", ".join(sorted(self.countries))
        if self.own_list:
            return (
                f"destination country {shown} is not in this from-number's "
                f"allowed_outbound_country_list ({allowed})"
            )
        return (
            f"destination country {shown} is not allowed for this from-number "
            f"(allowed: {allowed})"
        )

    def warnings(self, number: PhoneNumber) -> list[str]:
        """Notes for the campaign, such as own-list countries beyond the provider's."""
        if not self.beyond_provider:
            return []
        return [
            f"The from-number's allowed_outbound_country_list names "
            f"{', '.join(sorted(self.beyond_provider))}, which Retell does not list "
            f"for {number.phone_number_type} numbers; calls there may be refused."
        ]


def destination_rule(number: PhoneNumber) -> DestinationRule:
    """The countries `number` may call: its own list, else its provider's, else any."""
    provider = _PROVIDER_COUNTRIES.get(number.phone_number_type or "")
    own = frozenset(
        code.strip().upper() for code in number.allowed_outbound_country_list or []
    )
    if not own:
        return DestinationRule(provider)
    beyond = own - provider if provider is not None else frozenset()
    return DestinationRule(own, own_list=True, beyond_provider=beyond)


def max_cps(number: PhoneNumber, concurrency_limit: int | None) -> int | None:
    """The most calls per second the number's provider allows, if known.

    Custom telephony allows up to a twentieth of the account's concurrency.
    """
    if number.phone_number_type in _PROVIDER_MAX_CPS:
        return _PROVIDER_MAX_CPS[number.phone_number_type]
    if number.phone_number_type == "custom" and concurrency_limit:
        return max(1, concurrency_limit // 20)
    return None


def _region_text(region: str | None) -> str:
    if region == _NON_GEOGRAPHIC:
        return "none (a number of no country)"
    return region or "unknown"
