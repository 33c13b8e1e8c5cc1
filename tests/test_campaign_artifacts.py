"""The campaign's results table artifact stays within what Prefect publishes.

Prefect's server refuses an event larger than its maximum size (1,500,000 bytes
by default), and a table of 10,000 rows went past it. The cap is lowered here so
that a list of a dozen contacts goes past it through the real flow.
"""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flow_support import TELNYX, run_campaign
from prefect_retell import results

CONTACTS = [{"phone": f"+1415555{n:04d}", "name": f"Contact {n}"} for n in range(12)]
SMALL_CAP_BYTES = 3_000


async def _artifacts(flow_run_id) -> dict:
    async with get_client() as client:
        found = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


@pytest.fixture(scope="module")
async def capped_run(prefect_server, sandbox_server):
    """Twelve contacts dialled with the table artifact capped at 3,000 bytes."""
    sandbox_server.sandbox.reset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results, "ARTIFACT_TABLE_MAX_BYTES", SMALL_CAP_BYTES)
        run = await run_campaign(
            sandbox_server, contacts=CONTACTS, from_number=TELNYX, cps=16
        )
    return run, await _artifacts(run.flow_run_id)


def _stored_table(artifact) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_capped_table_holds_the_first_rows_within_the_cap(capped_run):
    """The table is the result's first rows, as many as fit in the cap."""
    run, artifacts = capped_run
    table = _stored_table(artifacts["retell-campaign-results"])
    full = run.result.table(mask_numbers=True)

    assert 0 < len(table) < len(full) == len(CONTACTS)
    assert table == full[: len(table)]
    assert len(json.dumps(json.dumps(table))) <= SMALL_CAP_BYTES
    assert len(json.dumps(json.dumps(full[: len(table) + 1]))) > SMALL_CAP_BYTES


def test_capped_table_says_how_many_rows_are_left_out_and_where(capped_run):
    """The table's description names the rows left out and where every row is."""
    _, artifacts = capped_run
    artifact = artifacts["retell-campaign-results"]
    shown = len(_stored_table(artifact))
    note = (
        f"The results table shows the first {shown} of 12 rows; {12 - shown} are "
        "left out to keep the artifact within the size Prefect publishes. Every "
        "row is in the flow run's return value (the CampaignResult's rows) and in "
        "the file `prefect-retell campaign --results` writes."
    )

    assert artifact.description.endswith(note)
    assert note in artifacts["retell-campaign-summary"].data


def test_capped_run_still_returns_every_row(capped_run):
    """The flow's return value keeps all twelve rows, dialled to the end."""
    run, _ = capped_run
    assert [row.row for row in run.result.rows] == list(range(1, 13))
    assert {row.outcome for row in run.result.rows} == {"called"}
