"""The campaign's Prefect limits: created, repaired and honoured (F10, F11, F12).

Pacing is judged on the sandbox's own record of when it accepted each create, never
on sleeps in the test.
"""

from __future__ import annotations

import pytest

from flow_support import (
    CONCURRENCY_LIMIT,
    FINAL_STATUSES,
    TWILIO,
    create_limit,
    delete_limit,
    gaps,
    most_in_one_second,
    read_limit,
    run_campaign,
)
from prefect_retell.sandbox import Outcome

TWILIO_LIMIT = "retell-cps-16505550100"
# Creations leave the pacer one second apart; the HTTP round trip to the sandbox
# can move one of them a few milliseconds closer to the one before.
ONE_SECOND_WITH_JITTER = 0.95


def _contacts(first: int, last: int) -> list[dict[str, str]]:
    return [{"phone": f"+1415555{n:04d}"} for n in range(first, last + 1)]


# --- F10: a missing limit is created, an inactive one activated ------------------


@pytest.fixture(scope="module")
async def fresh_limits_run(prefect_server, sandbox_server):
    """Three contacts at CPS 1 from the Twilio number, with no Prefect limits."""
    await delete_limit(TWILIO_LIMIT)
    await delete_limit(CONCURRENCY_LIMIT)
    sandbox_server.sandbox.reset()
    run = await run_campaign(
        sandbox_server, contacts=_contacts(123, 125), from_number=TWILIO, cps=1
    )
    return run, await read_limit(TWILIO_LIMIT)


def test_missing_limit_still_paces_creations_a_second_apart(fresh_limits_run):
    """With no limit beforehand, the sandbox sees the 3 creates >= ~1 s apart (F10)."""
    run, _ = fresh_limits_run
    times = run.creation_times(TWILIO)
    assert len(times) == 3
    assert min(gaps(times)) >= ONE_SECOND_WITH_JITTER


def test_missing_limit_run_gets_no_429(fresh_limits_run):
    """No create was refused while the fresh limit was in use (F10)."""
    run, _ = fresh_limits_run
    assert run.rate_limited == 0


def test_missing_limit_is_created_active_with_decay(fresh_limits_run):
    """Afterwards the CPS limit exists, active, limit 1 and decay 1 per second (F10)."""
    _, limit = fresh_limits_run
    assert (limit.active, limit.limit, limit.slot_decay_per_second) == (True, 1, 1.0)


@pytest.fixture(scope="module")
async def inactive_limit_run(prefect_server, sandbox_server):
    """Three contacts at CPS 1, the CPS limit pre-created but inactive."""
    await create_limit(TWILIO_LIMIT, limit=1, slot_decay_per_second=1.0, active=False)
    sandbox_server.sandbox.reset()
    run = await run_campaign(
        sandbox_server, contacts=_contacts(126, 128), from_number=TWILIO, cps=1
    )
    return run, await read_limit(TWILIO_LIMIT)


def test_inactive_limit_is_activated(inactive_limit_run):
    """An inactive CPS limit (which would throttle nothing) is activated (F10)."""
    _, limit = inactive_limit_run
    assert (limit.active, limit.limit, limit.slot_decay_per_second) == (True, 1, 1.0)


def test_inactive_limit_run_paces_creations_a_second_apart(inactive_limit_run):
    """With the limit found inactive, creates are still >= ~1 s apart (F10)."""
    run, _ = inactive_limit_run
    times = run.creation_times(TWILIO)
    assert len(times) == 3
    assert min(gaps(times)) >= ONE_SECOND_WITH_JITTER
    assert run.rate_limited == 0


# --- F11: a limit without decay is repaired before dialling ----------------------


@pytest.fixture(scope="module")
async def decayless_limit_run(prefect_server, sandbox_server):
    """Six contacts at CPS 2, the CPS limit pre-created without decay."""
    await create_limit(TWILIO_LIMIT, limit=2, slot_decay_per_second=0.0)
    sandbox_server.sandbox.reset()
    run = await run_campaign(
        sandbox_server, contacts=_contacts(130, 135), from_number=TWILIO, cps=2
    )
    return run, await read_limit(TWILIO_LIMIT)


def test_limit_without_decay_is_given_decay_before_dialling(decayless_limit_run):
    """The decay-less limit is set to decay 2 per second, and all six are called."""
    run, limit = decayless_limit_run
    assert (limit.active, limit.limit, limit.slot_decay_per_second) == (True, 2, 2.0)
    assert run.result.counts == {"called": 6}


def test_cps_2_never_starts_more_than_2_calls_in_one_second(decayless_limit_run):
    """In any one-second window the sandbox accepted at most 2 creates (F11)."""
    run, _ = decayless_limit_run
    times = run.creation_times(TWILIO)
    assert len(times) == 6
    assert most_in_one_second(times) <= 2
    assert run.rate_limited == 0


# --- F12: concurrency slots come back whatever the outcome ------------------------

# At TIME_SCALE 0.005, 200 simulated seconds last one real second.
F12_OUTCOMES = {
    "+14155550140": Outcome(kind="no_answer", ring_seconds=200),
    "+14155550141": Outcome(kind="no_answer", ring_seconds=200),
    "+14155550142": Outcome(kind="answered", ring_seconds=20, talk_seconds=380),
    "+14155550143": Outcome(kind="answered", ring_seconds=20, talk_seconds=380),
    "+14155550144": Outcome(kind="answered", ring_seconds=20, talk_seconds=380),
    # A reason other than concurrency_limit_reached, which would be dialled again.
    "+14155550145": Outcome(
        kind="error", ring_seconds=20, disconnection_reason="error_unknown"
    ),
}


@pytest.fixture(scope="module")
async def concurrency_2_run(prefect_server, sandbox_server):
    """Six contacts, two unanswered, three answered, one error; 2 live at most."""
    sandbox_server.sandbox.reset()
    for number, outcome in F12_OUTCOMES.items():
        sandbox_server.sandbox.set_outcome(number, outcome)
    before = await read_limit(CONCURRENCY_LIMIT)
    run = await run_campaign(
        sandbox_server,
        contacts=_contacts(140, 145),
        from_number=TWILIO,
        cps=5,
        max_concurrency=2,
    )
    return run, before, await read_limit(CONCURRENCY_LIMIT)


def test_every_outcome_gets_a_final_status(concurrency_2_run):
    """Unanswered, answered and failed calls all end with a final status (F12)."""
    run, _, _ = concurrency_2_run
    statuses = {row.to_number: row.call_status for row in run.result.rows}
    assert statuses == {
        "+14155550140": "not_connected",
        "+14155550141": "not_connected",
        "+14155550142": "ended",
        "+14155550143": "ended",
        "+14155550144": "ended",
        "+14155550145": "error",
    }
    assert set(statuses.values()) <= FINAL_STATUSES


def test_never_more_than_2_calls_live(concurrency_2_run):
    """The sandbox never had more than 2 live calls at once (F12)."""
    run, _, _ = concurrency_2_run
    assert run.stats["max_live_calls"] <= 2


def test_concurrency_slots_all_released_after_the_flow(concurrency_2_run):
    """The campaign gives back every concurrency slot it took (F12).

    max_concurrency caps the campaign, not the account-wide limit, which keeps
    the account's concurrency (20 in the sandbox). The slots are compared with
    those held before the run: this session's Prefect server is shared, and on a
    test server Prefect never reclaims the slots of an expired lease (its
    repossessor does not run on ephemeral servers), so a slot orphaned by an
    earlier test would otherwise be blamed on this campaign.
    """
    _, before, after = concurrency_2_run
    assert after.limit == 20
    assert after.active_slots == before.active_slots
