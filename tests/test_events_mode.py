"""Campaigns in `events` mode, end to end over real HTTP.

The sandbox sends its signed webhooks to a receiver started here, which turns
them into events on the session's Prefect server; the campaign waits for those
events. Nothing is mocked.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flow_support import CREATE_ROUTE, TELNYX, TWILIO, run_campaign
from prefect_retell.receiver import WebhookReceiverServer, create_webhook_app
from prefect_retell.sandbox import Outcome, WebhookFault

LIST_CALLS_ROUTE = "POST /v3/list-calls"
CRM_EXPORT = Path(__file__).resolve().parents[1] / "tests" / "data" / "crm-export.csv"


@pytest.fixture
def receiver(prefect_server, sandbox) -> Iterator[WebhookReceiverServer]:
    """A receiver for the sandbox's webhooks, sending to the test Prefect API."""
    app = create_webhook_app(
        sandbox.sandbox.config.api_key, prefect_api_url=PREFECT_API_URL.value()
    )
    with WebhookReceiverServer(app, host="127.0.0.1") as server:
        sandbox.sandbox.set_webhook_url(server.url)
        yield server
    sandbox.sandbox.set_webhook_url(None)


def _outcomes(run) -> dict[int, tuple]:
    return {
        row.row: (
            row.outcome,
            row.call_status,
            row.disconnection_reason,
            row.duration_ms,
        )
        for row in run.result.rows
    }


def _polls(run) -> dict[str, int]:
    """get-call requests per call, as the sandbox counted them."""
    return {call["to_number"]: call["get_call_requests"] for call in run.stats["calls"]}


async def test_events_mode_matches_poll_mode_on_the_crm_export(
    sandbox, receiver, tmp_path
):
    """Same rows as poll mode; no call polled, because every event arrived."""
    contacts = tmp_path / "crm-export.csv"
    shutil.copy(CRM_EXPORT, contacts)
    common = dict(contacts=str(contacts), from_number=TELNYX, cps=16)

    by_events = await run_campaign(sandbox, monitor="events", **common)
    sandbox.sandbox.reset()
    by_polling = await run_campaign(sandbox, monitor="poll", **common)

    assert _outcomes(by_events) == _outcomes(by_polling)
    # Events mode waits for each analysis; polling takes what a final read shows,
    # which may come before the analysis. Where both have it, they agree.
    analysed = {row.row: row.call_successful for row in by_events.result.rows}
    assert all(
        analysed[row.row] is not None
        for row in by_events.result.rows
        if row.call_status in ("ended", "not_connected")
    )
    for row in by_polling.result.rows:
        if row.call_successful is not None:
            assert analysed[row.row] == row.call_successful, row.row
    assert by_events.result.counts == by_polling.result.counts
    assert by_events.requests[CREATE_ROUTE] == 35
    assert set(_polls(by_events).values()) == {0}
    # One list-calls at the start looks for calls of an earlier run; polling
    # reads the live calls in batches on top of that.
    assert by_events.requests.get(LIST_CALLS_ROUTE) == 1
    assert by_polling.requests.get(LIST_CALLS_ROUTE, 0) > 1
    webhooks = by_events.stats["webhooks"]
    assert webhooks["acknowledged"]["call_ended"] == 35


async def test_duplicate_late_and_reordered_events_give_one_result_each(
    sandbox, receiver
):
    """F21 through the whole path: every call counted once, none polled."""
    numbers = [f"+1415555{n:04d}" for n in range(400, 406)]
    for number in numbers:
        sandbox.sandbox.set_outcome(
            number, Outcome(kind="answered", ring_seconds=5, talk_seconds=40)
        )
    for fault in (
        WebhookFault(event="call_ended", action="duplicate", copies=3, times=3),
        WebhookFault(event="call_started", action="reorder", times=2),
        WebhookFault(event="call_ended", action="delay", seconds=0.5, times=2),
    ):
        sandbox.sandbox.add_fault(fault)
    run = await run_campaign(
        sandbox,
        contacts=[{"phone": number} for number in numbers],
        from_number=TWILIO,
        cps=5,
        monitor="events",
        call_timeout_seconds=60,
    )
    assert len(run.result.rows) == 6
    assert {row.call_status for row in run.result.rows} == {"ended"}
    assert run.requests[CREATE_ROUTE] == 6
    assert set(_polls(run).values()) == {0}


async def test_a_call_whose_events_never_come_is_read_once(sandbox, receiver):
    """Dropped webhooks for one number: that call alone is read at its deadline."""
    lost, heard = "+14155550410", "+14155550411"
    for number in (lost, heard):
        sandbox.sandbox.set_outcome(number, Outcome(kind="busy", ring_seconds=5))
    sandbox.sandbox.add_fault(
        WebhookFault(event="*", action="drop", to_number=lost, times=10)
    )
    run = await run_campaign(
        sandbox,
        contacts=[{"phone": lost}, {"phone": heard}],
        from_number=TWILIO,
        cps=5,
        monitor="events",
        call_timeout_seconds=3,
    )
    assert _polls(run) == {lost: 1, heard: 0}
    assert {row.to_number: row.disconnection_reason for row in run.result.rows} == {
        lost: "dial_busy",
        heard: "dial_busy",
    }
