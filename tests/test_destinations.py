"""Destination rules: countries a from-number may call, checked before dialling."""

from __future__ import annotations

from flow_support import CUSTOM, REMINDER_AGENT, TELNYX, TWILIO, run_campaign
from prefect_retell import PhoneNumber
from prefect_retell.destinations import destination_rule

US = "+14155550190"
CANADA = "+14165550191"  # Toronto
UK = "+442079460192"
GERMANY = "+493012345193"
BRAZIL = "+5511987650194"


def _number(kind: str, countries: list[str] | None = None) -> PhoneNumber:
    return PhoneNumber(
        phone_number=TWILIO,
        phone_number_type=kind,
        allowed_outbound_country_list=countries,
    )


# --- the rule -----------------------------------------------------------------------


def test_telnyx_numbers_call_only_retells_telnyx_countries():
    """A Telnyx number may call the US, not the UK, and says what it may call."""
    rule = destination_rule(_number("retell-telnyx"))
    assert rule.problem(US) is None
    assert rule.problem(UK) == (
        "destination country GB is not allowed for this from-number "
        "(allowed: CA, IN, US)"
    )


def test_custom_telephony_calls_any_country():
    """A number on its own SIP trunk follows its carrier: nothing is refused here."""
    rule = destination_rule(_number("custom"))
    assert (rule.countries, rule.problem(BRAZIL)) == (None, None)


def test_the_numbers_own_list_wins_over_the_provider_list():
    """A Twilio number limited to US and CA refuses the UK, which Twilio could call."""
    rule = destination_rule(_number("retell-twilio", ["us", "CA"]))
    assert rule.problem(CANADA) is None
    assert rule.problem(UK) == (
        "destination country GB is not in this from-number's "
        "allowed_outbound_country_list (CA, US)"
    )


def test_own_list_beyond_the_provider_is_allowed_with_a_warning():
    """A country the number allows but Retell does not list is warned about."""
    number = _number("retell-telnyx", ["US", "BR"])
    rule = destination_rule(number)
    assert rule.problem(BRAZIL) is None
    assert rule.warnings(number) == [
        "The from-number's allowed_outbound_country_list names BR, which Retell "
        "does not list for retell-telnyx numbers; calls there may be refused."
    ]


def test_own_list_narrows_custom_telephony():
    """A custom number with its own list refuses the countries outside it."""
    rule = destination_rule(_number("custom", ["DE"]))
    assert rule.problem(GERMANY) is None
    assert rule.problem(US).startswith("destination country US is not in this")


def test_number_of_no_country_is_named_as_such():
    """+800 freephone numbers belong to no country; the reason says so."""
    rule = destination_rule(_number("retell-telnyx"))
    assert rule.problem("+80012345678") == (
        "destination country none (a number of no country) is not allowed for this "
        "from-number (allowed: CA, IN, US)"
    )


# --- campaigns ----------------------------------------------------------------------


async def test_sandbox_keeps_the_numbers_outbound_country_list(credentials, sandbox):
    """update-phone-number sets the list, and get-phone-number returns it."""
    async with credentials.get_client() as client:
        await client.update_phone_number(
            TWILIO, allowed_outbound_country_list=["US", "CA"]
        )
        number = await client.get_phone_number(TWILIO)

    assert number.allowed_outbound_country_list == ["US", "CA"]


async def test_campaign_rejects_countries_outside_the_numbers_own_list(
    prefect_server, sandbox, credentials
):
    """With US and CA set on the number, the UK and German rows are never dialled."""
    async with credentials.get_client() as client:
        await client.update_phone_number(
            TWILIO, allowed_outbound_country_list=["US", "CA"]
        )

    run = await run_campaign(
        sandbox,
        contacts=[{"phone": n} for n in (US, UK, CANADA, GERMANY)],
        from_number=TWILIO,
        cps=5,
    )

    assert [(row.outcome, row.reason) for row in run.result.rows] == [
        ("called", None),
        (
            "rejected",
            "destination country GB is not in this from-number's "
            "allowed_outbound_country_list (CA, US)",
        ),
        ("called", None),
        (
            "rejected",
            "destination country DE is not in this from-number's "
            "allowed_outbound_country_list (CA, US)",
        ),
    ]
    assert {call["to_number"] for call in run.stats["calls"]} == {US, CANADA}


async def test_campaign_rejects_what_telnyx_cannot_call(prefect_server, sandbox):
    """From a Telnyx number, Germany is rejected before dialling; the US is called."""
    run = await run_campaign(
        sandbox, contacts=[{"phone": GERMANY}, {"phone": US}], from_number=TELNYX
    )

    assert run.row(1).outcome == "rejected"
    assert run.calls_to(GERMANY) == []
    assert len(run.calls_to(US)) == 1


async def test_custom_telephony_campaign_dials_any_country(prefect_server, sandbox):
    """From a custom-telephony number, a Brazilian number is dialled."""
    run = await run_campaign(
        sandbox,
        contacts=[{"phone": BRAZIL}],
        from_number=CUSTOM,
        agent_id=REMINDER_AGENT,
    )

    assert run.row(1).outcome == "called"
    assert len(run.calls_to(BRAZIL)) == 1
