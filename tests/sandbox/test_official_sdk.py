"""The official retell-sdk client works against the sandbox unchanged.

The clients validate responses strictly, so a field of the wrong type or a
missing required field fails here even where the SDK would normally let it pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import retell

from prefect_retell.sandbox import (
    DEFAULT_SANDBOX_API_KEY,
    Fault,
    Outcome,
    Sandbox,
    SandboxServer,
)

from .support import TWILIO


@pytest.fixture
async def sdk(
    server: SandboxServer, sandbox: Sandbox
) -> AsyncIterator[retell.AsyncRetell]:
    """An AsyncRetell client on the session sandbox, without retries."""
    client = retell.AsyncRetell(
        api_key=DEFAULT_SANDBOX_API_KEY,
        base_url=server.base_url,
        max_retries=0,
        _strict_response_validation=True,
    )
    async with client:
        yield client


async def test_sdk_create_retrieve_list_stop(sdk: retell.AsyncRetell, sandbox: Sandbox):
    """create_phone_call, retrieve, list and stop parse without error."""
    sandbox.set_outcome("+14155550171", Outcome(kind="stuck_ongoing", ring_seconds=0))

    created = await sdk.call.create_phone_call(
        from_number=TWILIO,
        to_number="+14155550171",
        metadata={"campaign": "sdk"},
        retell_llm_dynamic_variables={"first_name": "Ada"},
        idempotency_key="sdk-1",
    )
    fetched = await sdk.call.retrieve(created.call_id)
    listed = await sdk.call.list(
        filter_criteria={
            "call_id": {"type": "enum", "op": "in", "value": [created.call_id]}
        },
        limit=10,
    )
    await sdk.call.stop(created.call_id)
    stopped = await sdk.call.retrieve(created.call_id)

    assert created.call_status == "registered"
    assert fetched.call_status == "ongoing"
    assert [item.call_id for item in listed.items] == [created.call_id]
    assert listed.has_more is False
    assert stopped.call_status == "ended"
    assert stopped.disconnection_reason == "manual_stopped"
    assert stopped.call_cost is not None and stopped.call_cost.combined_cost >= 0


async def test_sdk_reads_a_finished_call(sdk: retell.AsyncRetell, sandbox: Sandbox):
    """A finished call with transcript, cost and analysis parses strictly."""
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=0, talk_seconds=1)
    )
    created = await sdk.call.create_phone_call(
        from_number=TWILIO, to_number="+14155550123"
    )
    await asyncio.sleep(0.1)
    call = await sdk.call.retrieve(created.call_id)

    assert call.call_status == "ended"
    assert call.transcript_object[0].role == "agent"
    assert (
        call.call_analysis is not None
        and call.call_analysis.call_successful is not None
    )


async def test_sdk_phone_numbers(own_server):
    """phone_number.retrieve, list and update parse; weights are sent as given."""
    server = own_server()
    async with retell.AsyncRetell(
        api_key=DEFAULT_SANDBOX_API_KEY,
        base_url=server.base_url,
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        number = await client.phone_number.retrieve(TWILIO)
        numbers = await client.phone_number.list()
        updated = await client.phone_number.update(
            TWILIO,
            outbound_agents=[{"agent_id": "agent_sandbox_survey", "weight": 1}],
        )

    assert number.phone_number_type == "retell-twilio"
    assert len(numbers.items) == 3
    assert updated.outbound_agents[0].agent_id == "agent_sandbox_survey"


async def test_sdk_agents_llms_and_concurrency(sdk: retell.AsyncRetell):
    """agent.retrieve (with version), agent.list, llm.retrieve, concurrency."""
    agent = await sdk.agent.retrieve("agent_sandbox_reminder")
    first = await sdk.agent.retrieve("agent_sandbox_reminder", version=0)
    agents = await sdk.agent.list(limit=10)
    llm = await sdk.llm.retrieve("llm_sandbox_survey")
    concurrency = await sdk.concurrency.retrieve()

    assert agent.version == 2 and first.version == 0
    assert agent.response_engine.type == "retell-llm"
    assert len(agents.items) == 2
    assert "{{first_name}}" in llm.general_prompt
    assert concurrency.concurrency_limit == 20


async def test_sdk_maps_sandbox_errors(sdk: retell.AsyncRetell, sandbox: Sandbox):
    """422, 401, 429 and a dropped connection surface as the SDK's own errors."""
    with pytest.raises(retell.UnprocessableEntityError):
        await sdk.call.retrieve("call_missing")
    with pytest.raises(retell.AuthenticationError):
        await sdk.with_options(api_key="key_wrong").concurrency.retrieve()

    sandbox.add_fault(Fault(endpoint="create-phone-call", action="error", status=429))
    with pytest.raises(retell.RateLimitError):
        await sdk.call.create_phone_call(from_number=TWILIO, to_number="+14155550124")

    sandbox.add_fault(Fault(endpoint="create-phone-call", action="drop"))
    with pytest.raises(retell.APIConnectionError):
        await sdk.call.create_phone_call(from_number=TWILIO, to_number="+14155550125")
    assert [c["to_number"] for c in sandbox.stats()["calls"]] == ["+14155550125"]


def test_sync_sdk_client(server: SandboxServer, sandbox: Sandbox):
    """The synchronous Retell client works as well."""
    with retell.Retell(
        api_key=DEFAULT_SANDBOX_API_KEY,
        base_url=server.base_url,
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        created = client.call.create_phone_call(
            from_number=TWILIO, to_number="+14155550126"
        )
        fetched = client.call.retrieve(created.call_id)
        client.call.stop(created.call_id)

    assert fetched.call_id == created.call_id
