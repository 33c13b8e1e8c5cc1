"""POST /v3/list-calls: filters, paging and item shape."""

from __future__ import annotations

import asyncio

import httpx

from prefect_retell.sandbox import Fault, Outcome, Sandbox

from .support import TELNYX, client_for, create, wait_for_status


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


async def test_call_id_enum_filter_pages_through_the_named_calls(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """An enum `in` over five of seven calls, two a page, yields those five once."""
    ids = await _place(client, 7, from_number=TELNYX)
    wanted = [ids[0], ids[1], ids[3], ids[5], ids[6]]
    criteria = {"call_id": {"type": "enum", "op": "in", "value": wanted}}
    seen, key, pages = [], None, 0

    while True:
        body = {"filter_criteria": criteria, "limit": 2}
        if key:
            body["pagination_key"] = key
        page = (await client.post("/v3/list-calls", json=body)).json()
        seen += [item["call_id"] for item in page["items"]]
        pages += 1
        if not page["has_more"]:
            break
        key = page["pagination_key"]

    assert pages == 3
    assert seen == list(reversed(wanted))


async def test_call_id_string_ops(client: httpx.AsyncClient, sandbox: Sandbox):
    """call_id takes every string op: ne leaves one call out, sw and co find one."""
    ids = await _place(client, 3)

    async def listed(op: str, value: str) -> list[str]:
        spec = {"call_id": {"type": "string", "op": op, "value": value}}
        body = {"filter_criteria": spec, "sort_order": "ascending"}
        items = (await client.post("/v3/list-calls", json=body)).json()["items"]
        return [item["call_id"] for item in items]

    assert await listed("ne", ids[1]) == [ids[0], ids[2]]
    assert await listed("sw", ids[2][:20]) == [ids[2]]
    assert await listed("co", ids[0][5:30]) == [ids[0]]


async def test_call_id_enum_needs_a_list_of_strings(client: httpx.AsyncClient, sandbox):
    """An enum `in` whose value is not a list of strings is refused with 400."""
    spec = {"call_id": {"type": "enum", "op": "in", "value": "call_abc"}}

    response = await client.post("/v3/list-calls", json={"filter_criteria": spec})

    assert response.status_code == 400
    assert response.json()["message"] == (
        "filter_criteria.call_id.value must be a list of strings."
    )


async def test_list_lags_behind_get_call(own_server):
    """With list_lag_seconds, a new call is readable by get-call but not listed."""
    server = own_server(list_lag_seconds=60)
    async with client_for(server) as http:
        call_id = (await create(http, "+14155550201")).json()["call_id"]
        criteria = {"call_id": {"type": "string", "op": "eq", "value": call_id}}

        listed = await http.post("/v3/list-calls", json={"filter_criteria": criteria})
        read = await http.get(f"/v2/get-call/{call_id}")

    assert listed.json()["items"] == []
    assert read.status_code == 200


async def test_transient_status_shows_in_one_list_read(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A transient status is reported by the first list read after the ring only."""
    sandbox.set_outcome(
        "+14155550201",
        Outcome(kind="stuck_ongoing", ring_seconds=0, transient_status="transferring"),
    )
    call_id = (await create(client, "+14155550201")).json()["call_id"]
    criteria = {"call_id": {"type": "enum", "op": "in", "value": [call_id]}}
    await wait_for_status_in_list(client, criteria)

    second = (
        await client.post("/v3/list-calls", json={"filter_criteria": criteria})
    ).json()
    read = (await client.get(f"/v2/get-call/{call_id}")).json()

    assert second["items"][0]["call_status"] == "ongoing"
    assert read["call_status"] == "ongoing"


async def wait_for_status_in_list(client: httpx.AsyncClient, criteria) -> None:
    """List until the call reports 'transferring' once; fail if it never does."""
    for _ in range(100):
        body = {"filter_criteria": criteria}
        items = (await client.post("/v3/list-calls", json=body)).json()["items"]
        if items[0]["call_status"] == "transferring":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the transient status never showed in list-calls")


async def test_fault_scoped_to_a_call_hits_lists_naming_it(
    client: httpx.AsyncClient, sandbox: Sandbox
):
    """A list-calls fault for one destination fails only lists whose call_id
    filter names that destination's call."""
    ids = await _place(client, 2)
    sandbox.add_fault(
        Fault(
            endpoint="list-calls",
            action="error",
            status=400,
            to_number="+14155550200",
            times=0,
        )
    )

    async def status(named: list[str]) -> int:
        spec = {"call_id": {"type": "enum", "op": "in", "value": named}}
        body = {"filter_criteria": spec}
        return (await client.post("/v3/list-calls", json=body)).status_code

    assert await status([ids[1]]) == 200
    assert await status([ids[0], ids[1]]) == 400
    assert (await client.post("/v3/list-calls", json={})).status_code == 200
