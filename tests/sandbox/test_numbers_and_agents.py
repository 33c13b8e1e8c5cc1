"""Phone numbers, agents, Retell LLMs and concurrency."""

from __future__ import annotations

import httpx

from prefect_retell.sandbox import SandboxServer

from .support import CUSTOM, TELNYX, TWILIO, client_for, create


async def test_seeded_numbers(client: httpx.AsyncClient):
    """The three seeded numbers have their types and agent bindings."""
    page = (await client.get("/v2/list-phone-numbers")).json()
    by_number = {item["phone_number"]: item for item in page["items"]}

    assert by_number[TWILIO]["phone_number_type"] == "retell-twilio"
    assert by_number[TELNYX]["phone_number_type"] == "retell-telnyx"
    assert by_number[CUSTOM]["phone_number_type"] == "custom"
    bound = [{"agent_id": "agent_sandbox_reminder", "weight": 1}]
    assert by_number[TWILIO]["outbound_agents"] == bound
    assert by_number[TWILIO]["inbound_agents"] == bound
    assert by_number[CUSTOM]["outbound_agents"] is None
    assert page["has_more"] is False


async def test_list_phone_numbers_pages(client: httpx.AsyncClient):
    """list-phone-numbers pages with limit and pagination_key in the query."""
    first = (await client.get("/v2/list-phone-numbers", params={"limit": 2})).json()
    second = (
        await client.get(
            "/v2/list-phone-numbers",
            params={"limit": 2, "pagination_key": first["pagination_key"]},
        )
    ).json()

    assert first["has_more"] is True
    assert len(first["items"]) + len(second["items"]) == 3


async def test_update_with_weights_not_summing_to_one_is_400(own_server):
    """Weighted agents must total 1."""
    server = own_server()
    agents = [
        {"agent_id": "agent_sandbox_reminder", "weight": 0.5},
        {"agent_id": "agent_sandbox_survey", "weight": 0.4},
    ]
    async with client_for(server) as http:
        response = await http.patch(
            f"/update-phone-number/{TWILIO}", json={"outbound_agents": agents}
        )

    assert response.status_code == 400
    assert response.json()["message"] == (
        "outbound_agents weights must add up to 1; they add up to 0.9."
    )


async def test_removed_agent_id_fields_are_400(own_server):
    """inbound_agent_id and friends were removed; the answer names the new field."""
    server = own_server()
    async with client_for(server) as http:
        response = await http.patch(
            f"/update-phone-number/{TWILIO}",
            json={"outbound_agent_id": "agent_sandbox_survey"},
        )

    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "outbound_agent_id was removed from update-phone-number; set "
        "outbound_agents to a list"
    )


async def test_update_with_unknown_agent_is_422(own_server):
    """Binding an agent that does not exist answers 422."""
    server = own_server()
    async with client_for(server) as http:
        response = await http.patch(
            f"/update-phone-number/{TWILIO}",
            json={"outbound_agents": [{"agent_id": "agent_nope", "weight": 1}]},
        )

    assert response.status_code == 422


async def test_update_binds_agents_and_calls_use_them(own_server):
    """A valid update is stored, and new calls pick from the weighted agents."""
    server = own_server()
    server.sandbox.set_cps(CUSTOM, 10)
    agents = [
        {"agent_id": "agent_sandbox_reminder", "weight": 0.5},
        {"agent_id": "agent_sandbox_survey", "weight": 0.5, "agent_version": 0},
    ]
    async with client_for(server) as http:
        updated = await http.patch(
            f"/update-phone-number/{CUSTOM}",
            json={"outbound_agents": agents, "nickname": "Weighted line"},
        )
        fetched = (await http.get(f"/get-phone-number/{CUSTOM}")).json()
        calls = [
            (await create(http, f"+1415555030{i}", from_number=CUSTOM)).json()
            for i in range(8)
        ]

    assert updated.status_code == 200
    assert fetched["outbound_agents"] == agents
    assert fetched["nickname"] == "Weighted line"
    used = {(call["agent_id"], call["agent_version"]) for call in calls}
    assert used == {("agent_sandbox_reminder", 2), ("agent_sandbox_survey", 0)}


async def test_trunk_password_is_never_shown(own_server):
    """auth_password is accepted but not returned."""
    server = own_server()
    async with client_for(server) as http:
        response = await http.patch(
            f"/update-phone-number/{CUSTOM}",
            json={"auth_username": "trunk", "auth_password": "pw_SECRET"},
        )

    assert response.json()["sip_outbound_trunk_config"]["auth_username"] == "trunk"
    assert "pw_SECRET" not in response.text


async def test_get_agent_versions(client: httpx.AsyncClient):
    """get-agent answers the latest version, or the one asked for."""
    latest = (await client.get("/get-agent/agent_sandbox_reminder")).json()
    first = (
        await client.get("/get-agent/agent_sandbox_reminder", params={"version": 0})
    ).json()
    missing = await client.get(
        "/get-agent/agent_sandbox_reminder", params={"version": 7}
    )

    assert latest["version"] == 2
    assert latest["response_engine"] == {
        "type": "retell-llm",
        "llm_id": "llm_sandbox_reminder",
        "version": 2,
    }
    assert latest["voice_id"] and latest["last_modification_timestamp"] > 0
    assert first["version"] == 0
    assert missing.status_code == 422


async def test_list_agents_with_query(client: httpx.AsyncClient):
    """list-agents returns summaries and filters by a name substring."""
    everyone = (await client.post("/v2/list-agents", json={})).json()
    surveys = (
        await client.post(
            "/v2/list-agents", json={"filter_criteria": {"query": "survey"}}
        )
    ).json()

    assert {item["agent_id"] for item in everyone["items"]} == {
        "agent_sandbox_reminder",
        "agent_sandbox_survey",
    }
    assert [item["agent_name"] for item in surveys["items"]] == ["Customer survey"]


async def test_get_retell_llm(client: httpx.AsyncClient):
    """The reminder LLM's prompt uses first_name, appointment_date and clinic."""
    llm = (await client.get("/get-retell-llm/llm_sandbox_reminder")).json()

    for variable in ("{{first_name}}", "{{appointment_date}}", "{{clinic}}"):
        assert variable in llm["general_prompt"]
    assert llm["model"] == "gpt-4.1"


async def test_get_concurrency_shape(client: httpx.AsyncClient, server: SandboxServer):
    """get-concurrency reports the configured limit and no purchases or burst."""
    answer = (await client.get("/get-concurrency")).json()

    assert answer == {
        "current_concurrency": 0,
        "concurrency_limit": 20,
        "base_concurrency": 20,
        "purchased_concurrency": 0,
        "concurrency_purchase_limit": 100,
        "remaining_purchase_limit": 100,
        "concurrency_burst_enabled": False,
        "concurrency_burst_limit": 0,
        "reserved_inbound_concurrency": 0,
    }
