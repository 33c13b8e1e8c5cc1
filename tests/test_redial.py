"""Redials (F15): which calls are placed again, how often, how long after.

Campaigns run against the sandbox on a `ScaledClock` with the sandbox's own time
scale, so a redial delay of 10 campaign seconds is 50 real milliseconds; the
assertions read the sandbox's record of every call it created.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import TIME_SCALE
from flow_support import TWILIO, run_campaign
from prefect_retell import CallingWindow, RetellConfigurationError
from prefect_retell.clock import ScaledClock, use_clock
from prefect_retell.redial import RedialPolicy
from prefect_retell.sandbox import Outcome

BUSY = "+14155550160"
NO_ANSWER = "+14155550161"
INVALID = "+14155550162"
DECLINED = "+14155550163"
LATE_ANSWER = "+14155550164"
VOICEMAIL = "+14155550165"
NEW_YORK = "+12125550166"


def _clock(start: datetime | None = None, scale: float = TIME_SCALE) -> ScaledClock:
    return ScaledClock(start or datetime.now(timezone.utc), time_scale=scale)


def _created(run, clock: ScaledClock, number: str) -> list[datetime]:
    return [clock.at(call["created_at"]) for call in run.calls_to(number)]


# --- the policy's settings -----------------------------------------------------------


def test_default_policy_redials_no_answer_busy_and_voicemail():
    """Without redial_on, the three reasons a person may answer later redial."""
    policy = RedialPolicy.from_parameters(None, 3, 600)
    assert policy.redial_on == {"dial_no_answer", "dial_busy", "voicemail_reached"}


def test_redial_on_a_dnc_request_is_refused():
    """A person who asked for no more calls is never redialled, whatever is asked."""
    with pytest.raises(RetellConfigurationError) as caught:
        RedialPolicy.from_parameters(["user_requested_dnc"], 2, 600)
    assert str(caught.value) == (
        "redial_on may not include user_requested_dnc: the person asked not to be "
        "called again; nothing was dialled."
    )


def test_back_to_back_redials_are_refused():
    """F15: a redial delay under 10 seconds is refused."""
    with pytest.raises(RetellConfigurationError) as caught:
        RedialPolicy.from_parameters(None, 2, 0)
    assert str(caught.value) == (
        "redial_delay_seconds must be at least 10, not 0; nothing was dialled."
    )


def test_max_attempts_out_of_range_is_refused():
    """max_attempts is between 1 and 10."""
    with pytest.raises(RetellConfigurationError, match="between 1 and 10, not 0"):
        RedialPolicy.from_parameters(None, 0, 600)


def test_misspelt_reason_is_warned_about_with_a_suggestion():
    """An unknown reason is kept (Retell adds reasons) with a did-you-mean warning."""
    policy = RedialPolicy.from_parameters(["dial_noanswer"], 2, 600)
    assert policy.warnings == (
        "redial_on names 'dial_noanswer', which is not a disconnection reason "
        "Retell documents; did you mean dial_no_answer?",
    )


# --- F15: busy and no-answer redialled once, 10 s later; the rest never -------------


@pytest.fixture(scope="module")
async def f15(prefect_server, sandbox_server):
    """F15's four numbers, 2 attempts 10 s apart (campaign seconds)."""
    sandbox = sandbox_server.sandbox
    sandbox.reset()
    sandbox.set_outcome(BUSY, Outcome(kind="busy", ring_seconds=2))
    sandbox.set_outcome(NO_ANSWER, Outcome(kind="no_answer", ring_seconds=5))
    sandbox.set_outcome(
        INVALID,
        Outcome(
            kind="failed", ring_seconds=1, disconnection_reason="invalid_destination"
        ),
    )
    sandbox.set_outcome(
        DECLINED,
        Outcome(kind="failed", ring_seconds=1, disconnection_reason="user_declined"),
    )
    clock = _clock()
    with use_clock(clock):
        run = await run_campaign(
            sandbox_server,
            contacts=[{"phone": n} for n in (BUSY, NO_ANSWER, INVALID, DECLINED)],
            from_number=TWILIO,
            cps=5,
            max_attempts=2,
            redial_delay_seconds=10,
        )
    return run, clock


@pytest.mark.parametrize("number", [BUSY, NO_ANSWER])
def test_busy_and_no_answer_are_called_twice(f15, number):
    """F15: busy and no-answer numbers get exactly two calls."""
    run, _ = f15
    assert len(run.calls_to(number)) == 2


@pytest.mark.parametrize("number", [BUSY, NO_ANSWER])
def test_redial_comes_at_least_the_delay_after_the_first_call_ended(f15, number):
    """F15: the second call is created 10 s or more after the first one ended."""
    run, clock = f15
    first, second = run.calls_to(number)
    ended = datetime.fromtimestamp(
        run.calls[first["call_id"]]["end_timestamp"] / 1000, timezone.utc
    )
    assert clock.at(second["created_at"]) >= clock.at(ended.timestamp()) + timedelta(
        seconds=10
    )


@pytest.mark.parametrize("number", [INVALID, DECLINED])
def test_invalid_destination_and_declined_are_never_redialled(f15, number):
    """F15: invalid_destination and user_declined get one call only."""
    run, _ = f15
    assert len(run.calls_to(number)) == 1


def test_each_attempt_is_its_own_call_with_its_own_key(f15):
    """Both calls to the busy number have their own id, key and attempt number."""
    run, _ = f15
    calls = run.calls_to(BUSY)
    assert [call["metadata"]["prefect_retell_attempt"] for call in calls] == ["1", "2"]
    assert len({call["call_id"] for call in calls}) == 2
    assert len({call["idempotency_key"] for call in calls}) == 2


def test_result_lists_every_attempt(f15):
    """F15: the busy row lists both attempts, in order, with their reasons."""
    run, _ = f15
    row = run.row(1)
    assert [
        (attempt.attempt, attempt.call_id, attempt.disconnection_reason)
        for attempt in row.attempts
    ] == [
        (1, run.calls_to(BUSY)[0]["call_id"], "dial_busy"),
        (2, run.calls_to(BUSY)[1]["call_id"], "dial_busy"),
    ]
    assert (row.outcome, row.call_id) == ("called", row.attempts[-1].call_id)


def test_declined_row_has_one_attempt(f15):
    """F15: the declined row shows its single attempt."""
    run, _ = f15
    assert [a.disconnection_reason for a in run.row(4).attempts] == ["user_declined"]


# --- more attempts, and the policy's other reasons ----------------------------------


async def test_redials_stop_once_someone_answers(prefect_server, sandbox):
    """No answer, no answer, then answered: three calls, the last one connected."""
    sandbox.sandbox.set_outcome(
        LATE_ANSWER,
        [
            Outcome(kind="no_answer", ring_seconds=2),
            Outcome(kind="no_answer", ring_seconds=2),
            Outcome(kind="answered", ring_seconds=1, talk_seconds=5),
        ],
    )
    with use_clock(_clock()):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": LATE_ANSWER}],
            from_number=TWILIO,
            max_attempts=5,
            redial_delay_seconds=10,
        )

    row = run.row(1)
    assert len(run.calls_to(LATE_ANSWER)) == 3
    assert [a.disconnection_reason for a in row.attempts][:2] == [
        "dial_no_answer",
        "dial_no_answer",
    ]
    assert (row.call_status, len(row.attempts)) == ("ended", 3)


async def test_never_more_calls_than_max_attempts(prefect_server, sandbox):
    """A number that never answers gets max_attempts calls and no more."""
    sandbox.sandbox.set_outcome(NO_ANSWER, Outcome(kind="no_answer", ring_seconds=2))
    with use_clock(_clock()):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": NO_ANSWER}],
            from_number=TWILIO,
            max_attempts=3,
            redial_delay_seconds=10,
        )

    assert len(run.calls_to(NO_ANSWER)) == 3
    assert run.row(1).disconnection_reason == "dial_no_answer"


async def test_only_the_chosen_reasons_are_redialled(prefect_server, sandbox):
    """With redial_on=[dial_busy], voicemail is not redialled."""
    sandbox.sandbox.set_outcome(
        VOICEMAIL, Outcome(kind="voicemail", ring_seconds=1, talk_seconds=5)
    )
    with use_clock(_clock()):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": VOICEMAIL}],
            from_number=TWILIO,
            max_attempts=3,
            redial_on=["dial_busy"],
            redial_delay_seconds=10,
        )

    assert len(run.calls_to(VOICEMAIL)) == 1
    assert run.row(1).disconnection_reason == "voicemail_reached"


async def test_redial_waits_for_the_calling_window(prefect_server, sandbox):
    """A redial due in the window's closed hour waits for it to open again.

    The window is 00:00–23:00 New York time; the first call goes out after 22:00
    EDT, and its redial, an hour later, falls in the closed hour before midnight.
    """
    sandbox.sandbox.set_outcome(NEW_YORK, Outcome(kind="no_answer", ring_seconds=2))
    clock = _clock(datetime(2026, 7, 15, 2, 0, tzinfo=timezone.utc), 1 / 1800)
    with use_clock(clock):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": NEW_YORK}],
            from_number=TWILIO,
            calling_window=CallingWindow(start="00:00", end="23:00").model_dump(),
            max_attempts=2,
            redial_delay_seconds=3600,
        )

    first, second = _created(run, clock, NEW_YORK)
    assert first < datetime(2026, 7, 15, 3, 0, tzinfo=timezone.utc)
    assert second >= datetime(2026, 7, 15, 4, 0, tzinfo=timezone.utc)


# --- resume: earlier attempts are counted, none is placed twice ---------------------


async def test_resumed_campaign_counts_earlier_attempts(prefect_server, sandbox):
    """A redial left at the deadline is placed by the next run, as attempt 2 and 3.

    The first run places attempt 1 and reports the redial due after its deadline;
    the second, same campaign id and no deadline, finds attempt 1 in Retell by its
    metadata, places attempts 2 and 3 only, and stops at max_attempts.
    """
    sandbox.sandbox.set_outcome(NO_ANSWER, Outcome(kind="no_answer", ring_seconds=2))
    start = datetime.now(timezone.utc)
    settings = {
        "contacts": [{"phone": NO_ANSWER}],
        "from_number": TWILIO,
        "campaign_id": f"redial-resume-{start.timestamp():.0f}",
        "max_attempts": 3,
        "redial_delay_seconds": 10 * 3600,
    }
    # First run: the deadline two hours on, the redial ten hours after the call.
    with use_clock(_clock(start, scale=1 / 3000)):
        first = await run_campaign(
            sandbox, **settings, deadline=start + timedelta(hours=2)
        )
    # Second run: ten hours pass in a fifth of a second.
    with use_clock(_clock(start, scale=0.2 / (10 * 3600))):
        second = await run_campaign(sandbox, **settings)

    row = first.row(1)
    assert (row.outcome, len(row.attempts)) == ("called", 1)
    assert row.next_call_at is not None and row.reason.startswith("call 2 was due at")
    calls = second.calls_to(NO_ANSWER)
    assert [call["metadata"]["prefect_retell_attempt"] for call in calls] == [
        "1",
        "2",
        "3",
    ]
    assert [a.attempt for a in second.row(1).attempts] == [1, 2, 3]
