"""The campaign flow end to end: real flow runs, real HTTP to the sandbox.

The acceptance campaign runs once per module (it takes about 8 s at 5 calls per
second); its tests read the result and the sandbox's record taken right after it.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from conftest import DATA
from flow_support import (
    CREATE_ROUTE,
    CUSTOM,
    FINAL_STATUSES,
    REMINDER_AGENT,
    TELNYX,
    TWILIO,
    contacts_file,
    credentials_for,
    most_in_one_second,
    run_campaign,
)
from prefect_retell import RetellConfigurationError, outbound_campaign

CRM_EXPORT = DATA / "crm-export.csv"

# The 34 plain US numbers of crm-export.csv, and row 8's number without its extension.
CRM_US_NUMBERS = [
    *(f"+1415555010{n}" for n in range(1, 8)),
    "+12125550111",
    "+12125550112",
    "+12125550113",
    *(f"+1312555{n:04d}" for n in range(117, 123)),
    *(f"+1206555{n:04d}" for n in range(123, 131)),
    *(f"+1617555{n:04d}" for n in range(131, 141)),
]
CRM_DIALLABLE = [*CRM_US_NUMBERS, "+14155550108"]
UK_NUMBER = "+442079460116"


@pytest.fixture(scope="module")
async def crm_from_telnyx(prefect_server, sandbox_server):
    """crm-export.csv dialled from the Telnyx number at 5 calls per second."""
    sandbox_server.sandbox.reset()
    return await run_campaign(
        sandbox_server, contacts=str(CRM_EXPORT), from_number=TELNYX, cps=5
    )


# --- acceptance: crm-export.csv from the Telnyx number -----------------------------


def test_crm_campaign_reports_every_row_in_input_order(crm_from_telnyx):
    """All 41 data rows come back, one result each, in the file's order."""
    assert [row.row for row in crm_from_telnyx.result.rows] == list(range(1, 42))


def test_crm_campaign_calls_each_diallable_number_exactly_once(crm_from_telnyx):
    """The sandbox saw one call to each of the 35 diallable numbers and no other."""
    placed = Counter(call["to_number"] for call in crm_from_telnyx.stats["calls"])
    assert placed == Counter(CRM_DIALLABLE)
    assert crm_from_telnyx.requests[CREATE_ROUTE] == 35


def test_crm_campaign_follows_every_call_to_a_final_status(crm_from_telnyx):
    """Every dialled row is `called` with its sandbox call, which is final."""
    dialled = [row for row in crm_from_telnyx.result.rows if row.call_id]
    assert sorted(row.to_number for row in dialled) == sorted(CRM_DIALLABLE)
    for row in dialled:
        assert row.outcome == "called"
        assert row.call_status in FINAL_STATUSES
        assert crm_from_telnyx.calls[row.call_id]["call_status"] == row.call_status
        assert crm_from_telnyx.calls[row.call_id]["to_number"] == row.to_number


def test_crm_campaign_reports_row_11_as_duplicate_of_row_1(crm_from_telnyx):
    """Row 11 repeats row 1's number: reported as its duplicate, never dialled."""
    row = crm_from_telnyx.row(11)
    assert (row.outcome, row.duplicate_of, row.call_id) == ("duplicate", 1, None)
    assert row.reason == (
        "same number as row 1, which is dialled instead; "
        "differing columns: appointment_date"
    )


def test_crm_campaign_rejects_unusable_numbers_with_their_reasons(crm_from_telnyx):
    """Rows 9, 10, 15 and 16 are rejected, each with the reason it cannot be dialled."""
    rejected = {
        number: (
            crm_from_telnyx.row(number).outcome,
            crm_from_telnyx.row(number).reason,
        )
        for number in (9, 10, 15, 16)
    }
    assert rejected == {
        9: ("rejected", "no phone number"),
        10: ("rejected", "no phone number"),
        15: (
            "rejected",
            "contains letters 'I' (letters are never read as keypad digits)",
        ),
        16: ("rejected", "not a valid number for region US (missing area code?)"),
    }


def test_crm_campaign_rejects_uk_row_from_telnyx_naming_the_country(crm_from_telnyx):
    """Row 17 (+44) is rejected: Telnyx numbers may not call GB; nothing dialled."""
    row = crm_from_telnyx.row(17)
    assert (row.outcome, row.to_number) == ("rejected", UK_NUMBER)
    assert row.reason == (
        "destination country GB is not allowed for this from-number "
        "(allowed: CA, IN, US)"
    )
    assert crm_from_telnyx.calls_to(UK_NUMBER) == []


def test_crm_campaign_dials_row_8_without_its_extension(crm_from_telnyx):
    """Row 8 is dialled as the bare number; extension 12 goes as a variable."""
    row = crm_from_telnyx.row(8)
    call = crm_from_telnyx.calls[row.call_id]
    assert call["to_number"] == "+14155550108"
    assert call["retell_llm_dynamic_variables"]["extension"] == "12"
    assert row.warnings == ["extension 12 is not dialled; kept as variable 'extension'"]


def test_crm_campaign_never_starts_more_than_5_calls_in_one_second(crm_from_telnyx):
    """The sandbox's creation times hold at most 5 in any one-second window."""
    assert most_in_one_second(crm_from_telnyx.creation_times(TELNYX)) <= 5


def test_crm_campaign_gets_no_429(crm_from_telnyx):
    """No create or read was refused for rate or concurrency."""
    assert crm_from_telnyx.rate_limited == 0
    assert "429" not in crm_from_telnyx.stats["responses"]


async def test_crm_campaign_from_twilio_dials_the_uk_row(prefect_server, sandbox):
    """From the Twilio number, which may call GB, row 17 is dialled."""
    run = await run_campaign(
        sandbox, contacts=str(CRM_EXPORT), from_number=TWILIO, cps=5
    )

    row = run.row(17)
    assert (row.outcome, row.to_number) == ("called", UK_NUMBER)
    assert [call["call_id"] for call in run.calls_to(UK_NUMBER)] == [row.call_id]


# --- artifacts ------------------------------------------------------------------


async def _artifacts(flow_run_id) -> dict:
    async with get_client() as client:
        found = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


async def test_campaign_publishes_masked_results_table(crm_from_telnyx):
    """The results table has a row per contact and shows the last 4 digits only."""
    artifact = (await _artifacts(crm_from_telnyx.flow_run_id))[
        "retell-campaign-results"
    ]
    table = (
        json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    )

    assert artifact.type == "table"
    assert [record["row"] for record in table] == list(range(1, 42))
    assert table[0]["to_number"] == "+*******0101"
    text = json.dumps(table)
    assert [number for number in CRM_DIALLABLE if number in text] == []


async def test_campaign_publishes_summary_with_counts(crm_from_telnyx):
    """The summary artifact is markdown with the rows counted by outcome."""
    artifact = (await _artifacts(crm_from_telnyx.flow_run_id))[
        "retell-campaign-summary"
    ]

    assert artifact.type == "markdown"
    assert (
        "| Outcome | Rows |\n|---|---:|\n| called | 35 |\n| duplicate | 1 |\n"
        "| rejected | 5 |\n"
    ) in artifact.data


async def test_campaign_progress_artifact_ends_at_100(crm_from_telnyx):
    """The progress artifact reads 100 once the campaign is over."""
    artifact = (await _artifacts(crm_from_telnyx.flow_run_id))[
        "retell-campaign-progress"
    ]

    assert artifact.type == "progress"
    assert float(artifact.data) == 100.0


async def test_campaign_log_has_progress_not_a_line_per_call(crm_from_telnyx):
    """By default the run's stored log says how far the campaign is, not each call.

    35 calls would be 70 lines; the log has the progress lines and the end.
    """
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[crm_from_telnyx.flow_run_id])
            ),
            limit=200,
        )
    messages = [log.message for log in logs]

    assert any(m.startswith("Placed 35 of 35 calls") for m in messages)
    assert any(m.startswith("Campaign ") and " done: " in m for m in messages)
    assert not [m for m in messages if m.startswith(("Created call", "Call "))]


# --- F09: dynamic variables and metadata -----------------------------------------


@pytest.fixture(scope="module")
async def f09_run(prefect_server, sandbox_server, tmp_path_factory):
    """One contact with `First Name,Balance Due,Phone` columns, reminder agent."""
    path = tmp_path_factory.mktemp("f09") / "balances.csv"
    path.write_text("First Name,Balance Due,Phone\nAda,42,+14155550123\n")
    sandbox_server.sandbox.reset()
    return await run_campaign(
        sandbox_server,
        contacts=str(path),
        from_number=TWILIO,
        agent_id=REMINDER_AGENT,
        metadata={"batch": "december"},
    )


def test_variables_are_named_for_prompts_and_sent_as_strings(f09_run):
    """The call carries {"first_name": "Ada", "balance_due": "42"} exactly (F09)."""
    [call] = f09_run.calls.values()
    assert call["retell_llm_dynamic_variables"] == {
        "first_name": "Ada",
        "balance_due": "42",
    }


def test_call_metadata_names_campaign_row_and_attempt(f09_run):
    """The call's metadata holds the campaign keys next to the user's own (F09)."""
    [call] = f09_run.calls.values()
    assert call["metadata"] == {
        "batch": "december",
        "prefect_retell_campaign": f09_run.result.campaign_id,
        "prefect_retell_row": "1",
        "prefect_retell_attempt": "1",
        "prefect_retell_idempotency_key": f09_run.stats["calls"][0]["idempotency_key"],
        "prefect_flow_run_id": str(f09_run.flow_run_id),
    }


def test_campaign_warns_of_prompt_variables_without_a_column(f09_run):
    """appointment_date and clinic have no column: the result says so (F09)."""
    assert f09_run.result.warnings == [
        "Agent 'agent_sandbox_reminder' uses prompt variables that no column "
        "provides: appointment_date, clinic; the agent would see them as written."
    ]


# --- F28: many concurrent calls under the SQLite-backed test server --------------


async def test_thirty_contacts_at_concurrency_10_all_resolve(prefect_server, sandbox):
    """30 contacts, 10 live at most: every row ends called with a final status."""
    contacts = [{"phone": f"+1415555{n:04d}"} for n in range(200, 230)]

    run = await run_campaign(
        sandbox, contacts=contacts, from_number=TELNYX, cps=16, max_concurrency=10
    )

    assert sum(run.result.counts.values()) == 30
    assert run.result.counts == {"called": 30}
    assert {row.call_status for row in run.result.rows} <= FINAL_STATUSES
    assert run.stats["max_live_calls"] <= 10


# --- configuration errors: raised before any call --------------------------------

ONE_CONTACT = [{"phone": "+14155550123"}]


async def _refused(sandbox, **parameters) -> str:
    """Run a campaign that must fail before dialling; return its error message."""
    parameters.setdefault("credentials", credentials_for(sandbox))
    with pytest.raises(RetellConfigurationError) as caught:
        await outbound_campaign(contacts=contacts_file(ONE_CONTACT), **parameters)
    assert sandbox.sandbox.stats()["calls"] == []
    assert CREATE_ROUTE not in sandbox.sandbox.stats()["requests"]
    return str(caught.value)


async def test_campaign_refuses_a_from_number_not_on_the_account(
    prefect_server, sandbox
):
    """A from-number the account does not own stops the flow; nothing is dialled."""
    message = await _refused(sandbox, from_number="+16505559999")

    assert message == (
        "from_number +*******9999 is not a phone number of this Retell account; "
        "nothing was dialled."
    )


async def test_campaign_refuses_an_unknown_agent(prefect_server, sandbox):
    """An agent_id the account does not have stops the flow; nothing is dialled."""
    message = await _refused(sandbox, from_number=TWILIO, agent_id="agent_fx_missing")

    assert message == (
        "Agent 'agent_fx_missing' does not exist on this account; nothing was dialled."
    )


async def test_campaign_refuses_cps_above_the_provider_limit(prefect_server, sandbox):
    """cps 6 on a Twilio number (at most 5) stops the flow; nothing is dialled."""
    message = await _refused(sandbox, from_number=TWILIO, cps=6)

    assert message == (
        "cps=6 is above the 5 calls per second that a retell-twilio number allows; "
        "nothing was dialled."
    )


async def test_campaign_refuses_a_number_without_agent(prefect_server, sandbox):
    """A custom number with no bound agent and no agent_id stops the flow."""
    message = await _refused(sandbox, from_number=CUSTOM)

    assert message == (
        "The from-number has no outbound agent and no agent_id was given; bind one "
        "with outbound_agents or pass agent_id. Nothing was dialled."
    )


async def test_campaign_reads_a_named_encoding_and_delimiter(prefect_server, sandbox):
    """encoding and delimiter given to the flow reach the loader: the European
    export loads with umlauts intact, one call per distinct valid number."""
    run = await run_campaign(
        sandbox,
        contacts=str(DATA / "excel-semicolon-cp1252.csv"),
        from_number=TWILIO,
        cps=5,
        default_region="DE",
        encoding="cp1252",
        delimiter=";",
    )

    assert run.result.counts == {"called": 5, "duplicate": 1, "rejected": 1}
    assert run.result.rows[0].variables["nachname"] == "Krüger"
