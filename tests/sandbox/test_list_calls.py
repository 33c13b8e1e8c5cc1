"""POST /v3/list-calls: filters, paging and item shape."""

from __future__ import annotations

import httpx

from prefect_retell.sandbox import Outcome, Sandbox

from .support import TELNYX, create, wait_for_status


async def _place(client: httpx.AsyncClient, count: int, **fields) -> list[str]:
    ids = []
    for index in range(count):
        response = await create(client, f"+1415555020{index}", **fields)
        ids.append(response.json()["call_id"])
    return ids


async def test_call_id_enum_filter(client: httpx.AsyncClient, sandbox: Sandbox):
    """call_id with an enum filter returns exactly the calls named."""
    ids = await _place(client, 4)
    wanted = [ids[0], ids[2]]

    response = await client.post(
        "/v3/list-calls",
        json={
            "filter_criteria": {
                "call_id": {"type": "enum", "op": "in", "value": wanted}
            }
        },
    )

    assert sorted(item["call_id"] for item in response.json()["items"]) == sorted(
        wanted
    )


async def test_call_id_string_filter(client: httpx.AsyncClient, sandbox: Sandbox):
    """call_id with a string eq filter returns that call."""
    ids = await _place(client, 2)

    response = await client.post(
        "/v3/list-calls",
        json={
            "filter_criteria": {
                "call_id": {"type": "string", "op": "eq", "value": ids[1]}
            }
        },
    )

    assert [item["call_id"] for item in response.json()["items"]] == [ids[1]]


async def test_metadata_key_filters(client: httpx.AsyncClient, sandbox: Sandbox):
    """metadata filters match on a top-level key: eq, enum and presence."""
    await create(client, "+14155550201", metadata={"campaign": "spring", "row": "1"})
    await create(client, "+14155550202", metadata={"campaign": "fall", "row": "2"})
    await create(client, "+14155550203")

    async def matching(*filters):
        body = {"filter_criteria": {"metadata": list(filters)}}
        items = (await client.post("/v3/list-calls", json=body)).json()["items"]
        return sorted(item["to_number"][-3:] for item in items)

    eq = {"key": "campaign", "type": "string", "op": "eq", "value": "spring"}
    enum = {"key": "row", "type": "enum", "op": "in", "value": ["1", "2"]}
    absent = {"key": "campaign", "type": "present", "op": "np"}
    assert await matching(eq) == ["201"]
    assert await matching(enum) == ["201", "202"]
    assert await matching(absent) == ["203"]


async def test_status_filter(client: httpx.AsyncClient, sandbox: Sandbox):
    """call_status in [not_connected] returns only calls that never connected."""
    sandbox.set_outcome("+14155550201", Outcome(kind="busy", ring_seconds=0))
    sandbox.set_outcome("+14155550202", Outcome(kind="stuck_ongoing", ring_seconds=0))
    busy = (await create(client, "+14155550201")).json()["call_id"]
    ongoing = (await create(client, "+14155550202")).json()["call_id"]
    await wait_for_status(client, busy, {"not_connected"})
    await wait_for_status(client, ongoing, {"ongoing"})

    status = {"type": "enum", "op": "in", "value": ["not_connected"]}
    response = await client.post(
        "/v3/list-calls", json={"filter_criteria": {"call_status": status}}
    )

    assert [item["call_id"] for item in response.json()["items"]] == [busy]


async def test_registered_is_not_filterable(client: httpx.AsyncClient, sandbox):
    """Filtering call_status on "registered" is refused, as Retell does."""
    status = {"type": "enum", "op": "in", "value": ["registered"]}

    response = await client.post(
        "/v3/list-calls", json={"filter_criteria": {"call_status": status}}
    )

    assert response.status_code == 400
    assert "cannot filter on 'registered'" in response.json()["message"]


async def test_from_number_and_agent_filters(client: httpx.AsyncClient, sandbox):
    """from_number string ops and the agent list narrow the results."""
    await create(client, "+14155550201")
    await create(client, "+14155550202", from_number=TELNYX)
    await create(
        client,
        "+14155550203",
        override_agent_id="agent_sandbox_survey",
        override_agent_version=0,
    )

    async def numbers(criteria):
        body = {"filter_criteria": criteria}
        items = (await client.post("/v3/list-calls", json=body)).json()["items"]
        return sorted(item["to_number"][-3:] for item in items)

    ends_101 = {"from_number": {"type": "string", "op": "ew", "value": "0101"}}
    survey_v0 = {"agent": [{"agent_id": "agent_sandbox_survey", "version": [0]}]}
    survey_v1 = {"agent": [{"agent_id": "agent_sandbox_survey", "version": [1]}]}
    assert await numbers(ends_101) == ["202"]
    assert await numbers(survey_v0) == ["203"]
    assert await numbers(survey_v1) == []


async def test_pagination_walks_every_call_once(client: httpx.AsyncClient, sandbox):
    """Following pagination_key while has_more visits each call exactly once."""
    ids = await _place(client, 5)
    seen, key, pages = [], None, 0

    while True:
        body = {"limit": 2, **({"pagination_key": key} if key else {})}
        page = (await client.post("/v3/list-calls", json=body)).json()
        seen += [item["call_id"] for item in page["items"]]
        pages += 1
        if not page["has_more"]:
            assert page["pagination_key"] is None
            break
        key = page["pagination_key"]

    assert pages == 3
    assert seen == list(reversed(ids))


async def test_ascending_order_and_total(client: httpx.AsyncClient, sandbox):
    """sort_order ascending lists oldest first; include_total counts all matches."""
    ids = await _place(client, 3)

    page = (
        await client.post(
            "/v3/list-calls",
            json={"sort_order": "ascending", "limit": 2, "include_total": True},
        )
    ).json()

    assert [item["call_id"] for item in page["items"]] == ids[:2]
    assert page["total"] == 3


async def test_limit_above_1000_is_400(client: httpx.AsyncClient, sandbox):
    """limit is capped at 1000."""
    response = await client.post("/v3/list-calls", json={"limit": 1001})

    assert response.status_code == 400
    assert response.json()["message"] == "limit must be between 1 and 1000."


async def test_unknown_filter_key_is_400(client: httpx.AsyncClient, sandbox):
    """A filter the sandbox does not implement is refused, not silently ignored."""
    response = await client.post(
        "/v3/list-calls", json={"filter_criteria": {"tool_calls": []}}
    )

    assert response.status_code == 400
    assert response.json()["message"] == (
        "filter_criteria.tool_calls is not supported by the sandbox."
    )


async def test_items_omit_transcripts(client: httpx.AsyncClient, sandbox):
    """List items leave out transcript fields even for ended calls."""
    sandbox.set_outcome(
        "+14155550201", Outcome(kind="answered", ring_seconds=0, talk_seconds=1)
    )
    call_id = (await create(client, "+14155550201")).json()["call_id"]
    await wait_for_status(client, call_id, {"ended"})

    item = (await client.post("/v3/list-calls", json={})).json()["items"][0]

    assert item["call_status"] == "ended"
    for field in ("transcript", "transcript_object", "transcript_with_tool_calls"):
        assert field not in item
    assert item["call_cost"]["combined_cost"] > 0


async def test_empty_body_lists_everything(client: httpx.AsyncClient, sandbox):
    """A list-calls without a body uses the defaults."""
    await _place(client, 2)

    page = (await client.post("/v3/list-calls")).json()

    assert len(page["items"]) == 2
    assert page["has_more"] is False


async def test_cursor_survives_a_call_leaving_the_filter(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A page's last call may stop matching; the next page still follows it."""
    for index in range(3):
        sandbox.set_outcome(
            f"+1415555020{index}", Outcome(kind="stuck_ongoing", ring_seconds=0)
        )
    ids = await _place(client, 3)
    ongoing = {"call_status": {"type": "enum", "op": "in", "value": ["ongoing"]}}
    first = (
        await client.post(
            "/v3/list-calls", json={"filter_criteria": ongoing, "limit": 1}
        )
    ).json()
    await client.post(f"/v2/stop-call/{first['pagination_key']}")

    second = (
        await client.post(
            "/v3/list-calls",
            json={
                "filter_criteria": ongoing,
                "limit": 5,
                "pagination_key": first["pagination_key"],
            },
        )
    ).json()

    assert [item["call_id"] for item in first["items"]] == [ids[2]]
    assert [item["call_id"] for item in second["items"]] == [ids[1], ids[0]]
