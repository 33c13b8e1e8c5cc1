"""Campaigns run again, limits changed under a running campaign, retries used up."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from flow_support import TELNYX, TWILIO, read_limit, run_campaign
from prefect_retell import RetellConfigurationError
from prefect_retell.sandbox import Outcome


def dialled(run, number: str) -> int:
    return len(run.calls_to(number))


async def test_rerun_with_an_inserted_row_dials_only_the_new_contact(
    prefect_server, sandbox
):
    """A list run again under the same campaign id, with a row inserted on top,
    dials the new contact once and nobody else again."""
    first = [{"phone": "+14155550101"}, {"phone": "+14155550102"}]
    await run_campaign(
        sandbox, contacts=first, from_number=TWILIO, cps=5, campaign_id="fx-rerun"
    )
    second = [{"phone": "+14155550199"}, *first]

    run = await run_campaign(
        sandbox, contacts=second, from_number=TWILIO, cps=5, campaign_id="fx-rerun"
    )

    assert [
        dialled(run, n) for n in ("+14155550199", "+14155550101", "+14155550102")
    ] == [1, 1, 1]
    for row in run.result.rows:
        assert row.outcome == "called"
        assert run.calls[row.call_id]["to_number"] == row.to_number


async def test_reused_campaign_id_never_reports_another_numbers_call(
    prefect_server, sandbox
):
    """A different list under a reused id dials its own numbers; no row is
    reported with a call that went to someone else."""
    await run_campaign(
        sandbox,
        contacts=[{"phone": "+14155550101"}],
        from_number=TWILIO,
        cps=5,
        campaign_id="fx-reused",
    )

    run = await run_campaign(
        sandbox,
        contacts=[{"phone": "+14155550160"}],
        from_number=TWILIO,
        cps=5,
        campaign_id="fx-reused",
    )

    (row,) = run.result.rows
    assert row.outcome == "called"
    assert run.calls[row.call_id]["to_number"] == "+14155550160"


async def test_invalid_cps_changes_no_limit(prefect_server, sandbox):
    """cps=0 is refused before the number's Prefect limit is touched."""
    await run_campaign(
        sandbox, contacts=[{"phone": "+14155550101"}], from_number=TELNYX, cps=3
    )

    with pytest.raises(RetellConfigurationError) as caught:
        await run_campaign(
            sandbox, contacts=[{"phone": "+14155550102"}], from_number=TELNYX, cps=0
        )

    assert str(caught.value) == "cps must be at least 1, not 0; nothing was dialled."
    limit = await read_limit("retell-cps-16505550101")
    assert (limit.limit, limit.slot_decay_per_second) == (3, 3.0)


async def test_limit_lowered_during_a_campaign_slows_it_without_failing(
    prefect_server, sandbox
):
    """Lowering the number's limit in the UI mid-run is followed, not a crash."""
    contacts = [{"phone": f"+1415555{n:04d}"} for n in range(120, 132)]

    async def lower_the_limit() -> None:
        while len(sandbox.sandbox.stats()["calls"]) < 3:
            await asyncio.sleep(0.05)
        async with get_client() as client:
            await client.update_global_concurrency_limit(
                "retell-cps-16505550101",
                GlobalConcurrencyLimitUpdate(limit=2, slot_decay_per_second=2.0),
            )

    run, _ = await asyncio.gather(
        run_campaign(sandbox, contacts=contacts, from_number=TELNYX, cps=5),
        lower_the_limit(),
    )

    assert run.result.counts == {"called": 12}


async def test_attempts_used_up_on_concurrency_are_reported_failed(
    prefect_server, sandbox
):
    """A contact whose every attempt ends concurrency_limit_reached is failed,
    with every attempt listed, and progress counts the contact once."""
    busy = Outcome(kind="error", disconnection_reason="concurrency_limit_reached")
    sandbox.sandbox.set_outcome("+14155550150", [busy])

    run = await run_campaign(
        sandbox, contacts=[{"phone": "+14155550150"}], from_number=TWILIO, cps=5
    )

    (row,) = run.result.rows
    assert row.outcome == "failed"
    assert len(row.attempts) == 3
    assert row.reason.startswith(
        "every one of 3 attempts ended with concurrency_limit_reached"
    )


async def test_duplicate_rows_keep_their_columns_in_the_results(
    prefect_server, sandbox
):
    """A repeated number's row is reported with its own columns."""
    contacts = [
        {"phone": "+14155550101", "date": "Mon"},
        {"phone": "(415) 555-0101", "date": "Tue"},
    ]

    run = await run_campaign(sandbox, contacts=contacts, from_number=TWILIO, cps=5)

    duplicate = run.result.rows[1]
    assert (duplicate.outcome, duplicate.duplicate_of) == ("duplicate", 1)
    assert duplicate.variables == {"date": "Tue"}


async def test_same_list_run_again_without_an_id_dials_nobody_twice(
    prefect_server, sandbox, tmp_path
):
    """With no campaign_id, the id comes from the list and the caller: the same
    file run again resumes the same campaign instead of dialling everyone."""
    path = tmp_path / "same.csv"
    path.write_text("Phone\n+14155550101\n+14155550102\n")
    first = await run_campaign(
        sandbox, contacts=str(path), from_number=TWILIO, cps=5, campaign_id=None
    )

    again = await run_campaign(
        sandbox, contacts=str(path), from_number=TWILIO, cps=5, campaign_id=None
    )

    assert again.result.campaign_id == first.result.campaign_id
    assert again.result.campaign_id.startswith("campaign-")
    assert len(again.stats["calls"]) == 2
    assert again.result.counts == {"called": 2}


async def test_prefect_record_answers_a_resumed_run_without_asking_retell(
    prefect_server, sandbox
):
    """A contact whose call ended is committed to Prefect's result store; a resumed
    run reads it back even when Retell no longer lists the call."""
    contacts = [{"phone": "+14155550101"}, {"phone": "+14155550102"}]
    first = await run_campaign(
        sandbox, contacts=contacts, from_number=TWILIO, cps=5, campaign_id="fx-recorded"
    )
    sandbox.sandbox.reset()  # Retell forgets: no call, no idempotency key left

    again = await run_campaign(
        sandbox, contacts=contacts, from_number=TWILIO, cps=5, campaign_id="fx-recorded"
    )

    assert again.stats["calls"] == []
    assert [row.call_id for row in again.result.rows] == [
        row.call_id for row in first.result.rows
    ]


async def test_each_run_adds_its_rows_to_the_record_without_losing_earlier_ones(
    prefect_server, sandbox
):
    """Run 1 records A, run 2 adds B; with Retell's memory wiped before each later
    run, run 3 still answers both from Prefect's record and dials nobody."""
    first, second = {"phone": "+14155550111"}, {"phone": "+14155550112"}
    campaign = {"from_number": TWILIO, "cps": 5, "campaign_id": "fx-record-parts"}
    one = await run_campaign(sandbox, contacts=[first], **campaign)
    sandbox.sandbox.reset()
    two = await run_campaign(sandbox, contacts=[first, second], **campaign)
    sandbox.sandbox.reset()

    three = await run_campaign(sandbox, contacts=[first, second], **campaign)

    assert len(two.stats["calls"]) == 1  # only the new contact
    assert three.stats["calls"] == []
    assert [row.call_id for row in three.result.rows] == [
        one.result.rows[0].call_id,
        two.result.rows[1].call_id,
    ]


async def test_a_result_store_that_cannot_be_written_costs_no_row(
    prefect_server, sandbox, tmp_path, caplog
):
    """With Prefect's local result storage unwritable (a file where its folder
    should be), every contact is still called once and reported; a warning says
    the record was not kept."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    contacts = [{"phone": "+14155550121"}, {"phone": "+14155550122"}]
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: blocked}):
        run = await run_campaign(sandbox, contacts=contacts, from_number=TWILIO, cps=5)

    assert run.result.counts == {"called": 2}
    assert len(run.stats["calls"]) == 2
    assert any(
        "Could not write finished rows to Prefect's result store" in message
        for message in caplog.messages
    )
