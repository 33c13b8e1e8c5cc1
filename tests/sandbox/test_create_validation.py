"""Checks create-phone-call makes before it places a call."""

from __future__ import annotations

import httpx

from prefect_retell.sandbox import Sandbox

from .support import CUSTOM, TWILIO, client_for, create


async def test_to_number_must_be_e164_and_is_not_echoed(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A to_number with punctuation is refused with 400 that does not repeat it."""
    response = await create(client, "(415) 555-0123")

    assert response.status_code == 400
    assert response.json()["message"] == (
        "to_number must be in E.164 format: '+', the country code and the number, "
        "7 to 15 digits in all, without spaces or punctuation."
    )
    assert "555-0123" not in response.text
    assert sandbox.stats()["calls"] == []


async def test_missing_from_number_is_400(client: httpx.AsyncClient):
    """from_number is required."""
    response = await client.post(
        "/v2/create-phone-call", json={"to_number": "+14155550123"}
    )

    assert response.status_code == 400
    assert response.json()["message"] == "from_number is required."


async def test_from_number_not_of_the_account_is_422(client: httpx.AsyncClient):
    """A from_number the account does not own is an unknown asset (422)."""
    response = await client.post(
        "/v2/create-phone-call",
        json={"from_number": "+19995550100", "to_number": "+14155550123"},
    )

    assert response.status_code == 422
    assert "9995550100" not in response.text


async def test_numeric_dynamic_variable_is_400_naming_the_key(
    client: httpx.AsyncClient,
):
    """A non-string dynamic variable is refused, naming the key but not the value."""
    variables = {"first_name": "Ada", "balance_due": 42}
    response = await create(
        client, "+14155550123", retell_llm_dynamic_variables=variables
    )

    assert response.status_code == 400
    assert response.json()["message"] == (
        "retell_llm_dynamic_variables.balance_due must be a string, not int; send "
        'every value as text (e.g. "42").'
    )


async def test_dynamic_variables_must_be_an_object(client: httpx.AsyncClient):
    """retell_llm_dynamic_variables must be an object."""
    response = await create(
        client, "+14155550123", retell_llm_dynamic_variables=["Ada"]
    )

    assert response.status_code == 400


async def test_custom_sip_headers_must_be_strings(client: httpx.AsyncClient):
    """custom_sip_headers values must be strings."""
    response = await create(client, "+14155550123", custom_sip_headers={"X-A": 1})

    assert response.status_code == 400
    assert "custom_sip_headers.X-A" in response.json()["message"]


async def test_metadata_over_50_kb_is_400(client: httpx.AsyncClient):
    """Metadata larger than 50 kB once serialised is refused."""
    response = await create(client, "+14155550123", metadata={"blob": "x" * 50_001})

    assert response.status_code == 400
    assert response.json()["message"].startswith("metadata is 50")


async def test_metadata_must_be_an_object(client: httpx.AsyncClient):
    """Metadata that is not an object is refused."""
    response = await create(client, "+14155550123", metadata="campaign-1")

    assert response.status_code == 400
    assert response.json()["message"] == "metadata must be a JSON object."


async def test_number_without_agent_needs_an_override(client: httpx.AsyncClient):
    """The custom number has no agent bound: 400 unless override_agent_id is sent."""
    refused = await create(client, "+14155550123", from_number=CUSTOM)
    placed = await create(
        client,
        "+14155550124",
        from_number=CUSTOM,
        override_agent_id="agent_sandbox_survey",
    )

    assert refused.status_code == 400
    assert "override_agent_id" in refused.json()["message"]
    assert placed.status_code == 201
    assert placed.json()["agent_id"] == "agent_sandbox_survey"


async def test_unknown_override_agent_is_422(client: httpx.AsyncClient):
    """An override_agent_id that does not exist answers 422."""
    response = await create(client, "+14155550123", override_agent_id="agent_nope")

    assert response.status_code == 422


async def test_override_agent_version_forms(client: httpx.AsyncClient):
    """override_agent_version takes an integer, "latest" or "latest_published"."""
    survey = {"override_agent_id": "agent_sandbox_survey"}
    as_int = await create(client, "+14155550130", override_agent_version=0, **survey)
    latest = await create(
        client, "+14155550131", override_agent_version="latest", **survey
    )
    published = await create(
        client, "+14155550132", override_agent_version="latest_published", **survey
    )
    missing = await create(client, "+14155550133", override_agent_version=9, **survey)

    assert as_int.json()["agent_version"] == 0
    assert latest.json()["agent_version"] == 1
    assert published.json()["agent_version"] == 0
    assert missing.status_code == 422


async def test_dnc_number_is_400_only_when_honoured(own_server):
    """A DNC destination is refused only if honor_internal_dnc is true."""
    server = own_server(dnc_numbers=["+14155550199"])
    async with client_for(server) as http:
        refused = await create(http, "+14155550199", honor_internal_dnc=True)
        placed = await create(http, "+14155550199")

    assert refused.status_code == 400
    assert "do-not-call" in refused.json()["message"]
    assert placed.status_code == 201


async def test_unknown_fields_are_ignored_and_inputs_echoed(
    client: httpx.AsyncClient,
):
    """Extra fields are ignored; metadata, variables and SIP headers are echoed."""
    response = await create(
        client,
        "+14155550123",
        metadata={"campaign": "spring", "contact": {"row": 3}},
        retell_llm_dynamic_variables={"first_name": "Ada", "extra": "kept"},
        custom_sip_headers={"X-Campaign": "spring"},
        agent_override={"agent": {"max_call_duration_ms": 60000}},
        some_future_field=True,
    )

    assert response.status_code == 201
    call = response.json()
    assert call["metadata"] == {"campaign": "spring", "contact": {"row": 3}}
    assert call["retell_llm_dynamic_variables"]["extra"] == "kept"
    assert call["custom_sip_headers"] == {"X-Campaign": "spring"}


async def test_ignore_e164_only_exempts_custom_numbers(client: httpx.AsyncClient):
    """ignore_e164_validation does not excuse a malformed to_number or Twilio line."""
    response = await create(
        client,
        "+14155550123",
        from_number="16505550100",
        ignore_e164_validation=True,
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("from_number must be in E.164")


async def test_created_call_has_retell_shape(client: httpx.AsyncClient):
    """A create answers 201 with every required field of a phone call object."""
    response = await create(client, "+14155550123")

    assert response.status_code == 201
    call = response.json()
    assert call["call_id"].startswith("call_") and len(call["call_id"]) == 37
    assert call["call_type"] == "phone_call"
    assert call["call_status"] == "registered"
    assert call["direction"] == "outbound"
    assert call["from_number"] == TWILIO
    assert call["agent_id"] == "agent_sandbox_reminder"
    assert call["agent_version"] == 2
    assert call["agent_name"] == "Appointment reminder"
    assert call["telephony_identifier"]["twilio_call_sid"].startswith("CA")
    assert call["start_timestamp"] is None
