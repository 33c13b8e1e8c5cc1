"""No API key, full phone number or contact detail in what Prefect stores or logs (F25).

A campaign runs against a sandbox that accepts only SECRET_API_KEY, with credentials
given by block name and contacts by path, as F25 asks; then everything Prefect kept
of the run is searched: parameters, logs, artifacts, and the returned result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from conftest import SECRET_API_KEY
from flow_support import TELNYX, run_campaign
from prefect_retell import RetellCredentials, outbound_call, outbound_campaign

CONTACTS_CSV = (
    "Phone,First Name\n"
    "(415) 555-0181,Ottoline\n"
    "415.555.0182,Peregrine\n"
    "+1 415 555 0183,Wilhelmina\n"
)
# Every form in which a contact could leak: as written, E.164, bare digits; names.
CONTACT_DETAILS = [
    "(415) 555-0181",
    "415.555.0182",
    "+1 415 555 0183",
    *(f"+1415555018{n}" for n in (1, 2, 3)),
    *(f"415555018{n}" for n in (1, 2, 3)),
    "Ottoline",
    "Peregrine",
    "Wilhelmina",
]
SECRET_PART = "SECRET123"


def _leaks(text: str) -> list[str]:
    """The secrets and contact details found in `text`."""
    return [item for item in [SECRET_PART, *CONTACT_DETAILS] if item in text]


@pytest.fixture(scope="module")
def contacts_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "contacts.csv"
    path.write_text(CONTACTS_CSV)
    return path


@pytest.fixture(scope="module")
async def stored(prefect_server, keyed_sandbox_server, contacts_path):
    """A campaign by block name and path, then all Prefect stored about its run."""
    keyed_sandbox_server.sandbox.reset()
    await RetellCredentials(
        api_key=SECRET_API_KEY, base_url=keyed_sandbox_server.base_url
    ).asave("fx", overwrite=True)
    run = await run_campaign(
        keyed_sandbox_server,
        contacts=str(contacts_path),
        from_number=TELNYX,
        credentials="fx",
        cps=5,
        # The most a campaign logs: a line per call created and ended.
        log_each_call=True,
    )
    await APILogHandler.aflush()
    async with get_client() as client:
        flow_run = await client.read_flow_run(run.flow_run_id)
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.flow_run_id])),
            limit=200,
        )
        artifacts = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.flow_run_id]))
        )
    return {
        "run": run,
        "parameters": json.dumps(flow_run.parameters),
        "logs": [log.message for log in logs],
        "artifacts": [
            json.dumps([a.key, a.description, a.data], default=str) for a in artifacts
        ],
    }


def test_campaign_reached_the_keyed_sandbox(stored):
    """The run really used the key: all three contacts were called."""
    assert stored["run"].result.counts == {"called": 3}


def test_flow_run_parameters_hold_no_key_or_contact(stored):
    """Stored parameters name the block and the file, nothing more (F25)."""
    assert _leaks(stored["parameters"]) == []
    assert json.loads(stored["parameters"])["credentials"] == "fx"


def test_flow_run_logs_hold_no_key_or_contact(stored):
    """No stored log line holds the key, a full number or a contact's name (F25)."""
    assert any(message.startswith("Created call") for message in stored["logs"])
    assert [m for m in stored["logs"] if _leaks(m)] == []


def test_flow_run_logs_show_numbers_masked(stored):
    """Log lines name a contact by the last four digits of the number only."""
    created = sorted(m[-12:] for m in stored["logs"] if m.startswith("Created call"))
    assert created == ["+*******0181", "+*******0182", "+*******0183"]


def test_artifacts_hold_no_key_or_contact(stored):
    """The results, summary and progress artifacts leak nothing (F25)."""
    assert len(stored["artifacts"]) == 3
    assert [text for text in stored["artifacts"] if _leaks(text)] == []


def test_returned_result_holds_no_key(stored):
    """The result the user asked for keeps numbers, but never the key."""
    text = stored["run"].result.model_dump_json()
    assert "+14155550181" in text
    assert SECRET_PART not in text


async def test_block_given_as_object_is_stored_masked(
    prefect_server, keyed_sandbox, contacts_path
):
    """A block passed as the credentials object is stored with the key masked."""
    credentials = RetellCredentials(
        api_key=SECRET_API_KEY, base_url=keyed_sandbox.base_url
    )
    run = await run_campaign(
        keyed_sandbox,
        contacts=str(contacts_path),
        from_number=TELNYX,
        credentials=credentials,
        cps=5,
    )

    async with get_client() as client:
        flow_run = await client.read_flow_run(run.flow_run_id)
    assert flow_run.parameters["credentials"]["api_key"] == "**********"
    assert _leaks(json.dumps(flow_run.parameters)) == []


async def test_debug_logs_of_a_campaign_hold_no_key_or_contact(
    prefect_server, keyed_sandbox, contacts_path, caplog
):
    """Every log record of a campaign, DEBUG included, is free of secrets (F25)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="prefect")

    await run_campaign(
        keyed_sandbox,
        contacts=str(contacts_path),
        from_number=TELNYX,
        credentials="fx",
        cps=5,
    )

    messages = [record.getMessage() for record in caplog.records]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert any(m.startswith("Created call") for m in messages)
    assert [m for m in messages if _leaks(m)] == []


def test_flows_take_no_raw_key_parameter():
    """Neither flow has a parameter for a raw key: a block name or the env only."""
    for flow in (outbound_campaign, outbound_call):
        names = set(flow.parameters.properties)
        assert "credentials" in names
        assert [name for name in names if "key" in name] == []


def test_campaign_takes_its_contacts_as_a_path_only():
    """The contact list is a path parameter, never rows that Prefect would store
    and show in full (F25)."""
    schema = outbound_campaign.parameters.model_dump()["properties"]["contacts"]

    assert schema.get("type") == "string"


@pytest.mark.parametrize(
    "bad_key", ["key_fx_SECRET123\u00e9", "key_fx_SECRET123\u2028x"]
)
async def test_key_that_cannot_be_sent_is_refused_without_quoting_it(
    prefect_server, keyed_sandbox, caplog, bad_key
):
    """A non-ASCII key fails with its position named and never appears in logs."""
    caplog.set_level(logging.DEBUG)
    credentials = RetellCredentials(api_key=bad_key, base_url=keyed_sandbox.base_url)
    with pytest.raises(Exception) as raised:
        await outbound_call(TELNYX, "+14155550190", credentials=credentials)

    assert "at position 17" in str(raised.value)
    assert SECRET_PART not in str(raised.value)
    assert not any(SECRET_PART in record.getMessage() for record in caplog.records)
    assert not any(SECRET_PART in (record.exc_text or "") for record in caplog.records)


async def test_spaces_pasted_around_a_key_are_dropped(prefect_server, keyed_sandbox):
    """A key copied with a trailing no-break space still works."""
    credentials = RetellCredentials(
        api_key=f" {SECRET_API_KEY}\u00a0", base_url=keyed_sandbox.base_url
    )
    call = await outbound_call(
        TELNYX, "+14155550191", credentials=credentials, monitor="none"
    )
    assert call.call_status == "registered"
