"""How a campaign ends each call: final statuses, deadlines, odd statuses, retries.

Covers F13(d) (a call that ends `concurrency_limit_reached` is placed again) and
F20 (the wait for a call always ends).
"""

from __future__ import annotations

import logging

import pytest

from flow_support import STOP_CALL_ROUTE, TWILIO, run_campaign
from prefect_retell.sandbox import Fault, Outcome

# --- F20: the wait always ends ------------------------------------------------------

NO_ANSWER = "+14155550170"
STUCK_ONGOING = "+14155550171"
STUCK_REGISTERED = "+14155550172"
TRANSFERRING = "+14155550173"


@pytest.fixture(scope="module")
async def deadline_run(prefect_server, sandbox_server):
    """A call not answered, one stuck ongoing and one stuck ringing; 1 s deadline."""
    sandbox = sandbox_server.sandbox
    sandbox.reset()
    sandbox.set_outcome(NO_ANSWER, Outcome(kind="no_answer", ring_seconds=10))
    sandbox.set_outcome(STUCK_ONGOING, Outcome(kind="stuck_ongoing", ring_seconds=10))
    sandbox.set_outcome(STUCK_REGISTERED, Outcome(kind="stuck_registered"))
    contacts = [{"phone": n} for n in (NO_ANSWER, STUCK_ONGOING, STUCK_REGISTERED)]
    return await run_campaign(
        sandbox_server,
        contacts=contacts,
        from_number=TWILIO,
        cps=5,
        call_timeout_seconds=1.0,
    )


def test_unanswered_call_ends_not_connected(deadline_run):
    """A call nobody answers is reported called, not_connected, dial_no_answer."""
    row = deadline_run.row(1)
    assert (row.outcome, row.call_status, row.disconnection_reason) == (
        "called",
        "not_connected",
        "dial_no_answer",
    )


def test_call_stuck_ongoing_times_out_keeping_its_call_id(deadline_run):
    """A call live past the deadline is timed_out with its call id and a reason."""
    row = deadline_run.row(2)
    [call] = deadline_run.calls_to(STUCK_ONGOING)
    assert (row.outcome, row.call_id) == ("timed_out", call["call_id"])
    assert row.reason == (
        f"Call {call['call_id']} did not end in time (last status ongoing); "
        "it was stopped and is now ended"
    )


def test_timed_out_calls_are_stopped(deadline_run):
    """Both calls live at the deadline were stopped once each, manual_stopped."""
    stopped = {
        number: (
            deadline_run.calls[deadline_run.row(number).call_id]["call_status"],
            deadline_run.calls[deadline_run.row(number).call_id][
                "disconnection_reason"
            ],
        )
        for number in (2, 3)
    }
    assert stopped == {
        2: ("ended", "manual_stopped"),
        3: ("not_connected", "manual_stopped"),
    }
    assert deadline_run.requests[STOP_CALL_ROUTE] == 2


def test_call_stuck_registered_times_out(deadline_run):
    """A call still ringing at the deadline is timed_out, stopped, with a reason."""
    row = deadline_run.row(3)
    [call] = deadline_run.calls_to(STUCK_REGISTERED)
    assert (row.outcome, row.call_id) == ("timed_out", call["call_id"])
    assert row.reason == (
        f"Call {call['call_id']} did not end in time (last status registered); "
        "it was stopped and is now not_connected"
    )


def test_timed_out_calls_are_not_dialled_again(deadline_run):
    """Each number got exactly one call: a timeout never leads to a second dial."""
    placed = [call["to_number"] for call in deadline_run.stats["calls"]]
    assert sorted(placed) == [NO_ANSWER, STUCK_ONGOING, STUCK_REGISTERED]


async def test_unknown_status_is_waited_through(prefect_server, sandbox, caplog):
    """A read saying "transferring" is taken as live; the call ends called/ended."""
    sandbox.sandbox.set_outcome(
        TRANSFERRING,
        Outcome(
            kind="answered",
            ring_seconds=10,
            talk_seconds=40,
            transient_status="transferring",
        ),
    )
    caplog.set_level(logging.DEBUG, logger="prefect")

    run = await run_campaign(
        sandbox, contacts=[{"phone": TRANSFERRING}], from_number=TWILIO, cps=5
    )

    row = run.row(1)
    assert (row.outcome, row.call_status) == ("called", "ended")
    assert f"Call {row.call_id} is transferring" in caplog.messages


# --- F13(d): a call that ends concurrency_limit_reached is placed again ---------------

REQUEUED = "+14155550150"


@pytest.fixture(scope="module")
async def requeued_run(prefect_server, sandbox_server):
    """A contact whose first call ends error/concurrency_limit_reached, then answers."""
    sandbox = sandbox_server.sandbox
    sandbox.reset()
    sandbox.set_outcome(
        REQUEUED,
        [
            Outcome(kind="error", ring_seconds=10),
            Outcome(
                kind="answered",
                ring_seconds=10,
                talk_seconds=20,
                disconnection_reason="user_hangup",
            ),
        ],
    )
    return await run_campaign(
        sandbox_server, contacts=[{"phone": REQUEUED}], from_number=TWILIO, cps=5
    )


def test_concurrency_error_call_is_placed_again(requeued_run):
    """The row shows both attempts and ends called/ended on the second (F13d)."""
    row = requeued_run.row(1)
    attempts = [
        (a.attempt, a.call_status, a.disconnection_reason) for a in row.attempts
    ]
    assert attempts == [
        (1, "error", "concurrency_limit_reached"),
        (2, "ended", "user_hangup"),
    ]
    assert (row.outcome, row.call_status, row.duplicate_of) == ("called", "ended", None)


def test_concurrency_error_retry_is_the_same_contact(requeued_run):
    """The sandbox saw exactly two calls to the number, both for row 1 (F13d)."""
    calls = requeued_run.calls_to(REQUEUED)
    assert [
        (c["metadata"]["prefect_retell_row"], c["metadata"]["prefect_retell_attempt"])
        for c in calls
    ] == [("1", "1"), ("1", "2")]
    assert calls[0]["idempotency_key"] != calls[1]["idempotency_key"]
    assert len(requeued_run.stats["calls"]) == 2


# --- one call that cannot be followed does not end the campaign -------------------


async def test_call_that_cannot_be_read_is_unknown_and_the_rest_go_on(
    prefect_server, sandbox
):
    """Reads of one call answer 400: that row is unknown, the others are called."""
    unreadable = "+14155550191"
    # Calls are read one by one and in batches: both ways fail for this call.
    for endpoint in ("get-call", "list-calls"):
        sandbox.sandbox.add_fault(
            Fault(
                endpoint=endpoint,
                action="error",
                status=400,
                to_number=unreadable,
                times=0,
            )
        )
    contacts = [{"phone": f"+1415555019{n}"} for n in (1, 2, 3)]

    run = await run_campaign(sandbox, contacts=contacts, from_number=TWILIO, cps=5)

    [call] = run.calls_to(unreadable)
    call_id = call["call_id"]
    row = run.row(1)
    assert (row.outcome, row.call_id) == ("unknown", call_id)
    assert row.reason == (
        f"call {call_id} was placed but could not be followed to its end, and it "
        f"was not dialled again: GET /v2/get-call/{call_id} answered 400 (invalid "
        "request): Bad Request (sandbox fault)."
    )
    assert [r.outcome for r in run.result.rows] == ["unknown", "called", "called"]
    assert len(run.stats["calls"]) == 3


async def test_failed_stop_still_reports_the_timeout(prefect_server, sandbox):
    """A call live at the deadline whose stop fails is timed_out, not a crash."""
    sandbox.sandbox.set_outcome(
        STUCK_ONGOING, Outcome(kind="stuck_ongoing", ring_seconds=10)
    )
    sandbox.sandbox.add_fault(
        Fault(endpoint="stop-call", action="error", status=400, times=0)
    )

    run = await run_campaign(
        sandbox,
        contacts=[{"phone": STUCK_ONGOING}],
        from_number=TWILIO,
        cps=5,
        call_timeout_seconds=0.5,
    )

    [call] = run.calls_to(STUCK_ONGOING)
    call_id = call["call_id"]
    row = run.row(1)
    assert (row.outcome, row.call_id) == ("timed_out", call_id)
    assert row.reason == (
        f"Call {call_id} did not reach a final status in time; last status "
        "ongoing. It was not dialled again, and stopping it failed: POST "
        f"/v2/stop-call/{call_id} answered 400 (invalid request): Bad Request "
        "(sandbox fault)."
    )
