"""Campaigns under injected faults: each contact dialled once, every row resolved.

The faults are the sandbox's: bursts of 5xx and 429, connections broken after a
call was created, answers slower than the client waits, slow answers, and the
account's concurrency limit reached.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from conftest import TIME_SCALE
from flow_support import TWILIO, create_limit, credentials_for, run_campaign
from prefect_retell import RetellAuthenticationError
from prefect_retell.sandbox import Fault, Outcome, SandboxConfig, serve_sandbox

NUMBERS = [f"+1415555{n:04d}" for n in range(180, 190)]


def calls_per_number(run) -> dict[str, int]:
    return dict(collections.Counter(call["to_number"] for call in run.stats["calls"]))


@pytest.fixture
async def faulty_run(prefect_server, sandbox):
    """Ten contacts through 503 and 429 bursts, broken and hung creates, and slow
    reads."""
    faults = [
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=429,
            headers={"Retry-After": "0.2"},
            times=3,
        ),
        Fault(endpoint="create-phone-call", action="drop", times=2),
        Fault(endpoint="create-phone-call", action="hang", seconds=2.0, times=1),
        Fault(endpoint="get-call", action="error", status=503, times=10),
        Fault(endpoint="get-call", action="delay", seconds=0.3, times=5),
        Fault(endpoint="list-calls", action="error", status=502, times=1),
    ]
    for fault in faults:
        sandbox.sandbox.add_fault(fault)
    credentials = credentials_for(sandbox, timeout_seconds=1.0)
    return await run_campaign(
        sandbox,
        contacts=[{"phone": number} for number in NUMBERS],
        from_number=TWILIO,
        credentials=credentials,
        cps=5,
    )


def test_every_contact_is_dialled_exactly_once_through_faults(faulty_run):
    """Broken and hung creates are retried with their key: one call per contact."""
    assert calls_per_number(faulty_run) == dict.fromkeys(NUMBERS, 1)
    assert faulty_run.stats["idempotent_replays"] >= 3


def test_every_row_ends_called_through_faults(faulty_run):
    """5xx and 429 bursts and slow reads cost time, not rows."""
    assert faulty_run.result.counts == {"called": 10}
    assert {row.call_status for row in faulty_run.result.rows} <= {
        "ended",
        "not_connected",
    }


async def test_account_concurrency_429s_are_waited_out(prefect_server):
    """When Retell refuses creates because the account's calls are all live, the
    campaign waits and places every call once."""
    config = SandboxConfig(time_scale=TIME_SCALE, concurrency_limit=2)
    answered = Outcome(kind="answered", ring_seconds=0, talk_seconds=0.6 / TIME_SCALE)
    with serve_sandbox(config) as server:
        for number in NUMBERS[:6]:
            server.sandbox.set_outcome(number, answered)
        # The user allows more live calls in Prefect than the account really has.
        await create_limit("retell-concurrency", limit=10, active=True)

        run = await run_campaign(
            server,
            contacts=[{"phone": number} for number in NUMBERS[:6]],
            from_number=TWILIO,
            cps=5,
        )

    assert run.result.counts == {"called": 6}
    assert calls_per_number(run) == dict.fromkeys(NUMBERS[:6], 1)
    assert run.stats["rate_limited"]["concurrency"] >= 1


async def test_key_refused_mid_campaign_stops_every_call(prefect_server, sandbox):
    """A 401 while dialling ends the campaign with an authentication error, and no
    further call is placed after it."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="create-phone-call", action="error", status=401, after=2, times=0
        )
    )

    with pytest.raises(RetellAuthenticationError):
        await run_campaign(
            sandbox,
            contacts=[{"phone": n} for n in NUMBERS],
            from_number=TWILIO,
            cps=5,
        )
    placed = len(sandbox.sandbox.stats()["calls"])
    await asyncio.sleep(1.0)

    assert placed == 2
    assert len(sandbox.sandbox.stats()["calls"]) == placed


@pytest.mark.parametrize(("refusals", "outcome"), [(4, "called"), (5, "failed")])
async def test_a_create_refused_with_429_takes_new_turns_up_to_five(
    prefect_server, sandbox, refusals, outcome
):
    """A create refused with 429 is sent again in a pacer turn of its own, five
    times in all; the fifth refusal ends the row failed, naming the refusals."""
    sandbox.sandbox.add_fault(
        Fault(
            endpoint="create-phone-call",
            action="error",
            status=429,
            headers={"Retry-After": "0.05"},
            times=refusals,
        )
    )

    run = await run_campaign(
        sandbox, contacts=[{"phone": NUMBERS[0]}], from_number=TWILIO, cps=5
    )

    [row] = run.result.rows
    assert row.outcome == outcome
    assert run.stats["requests"]["POST /v2/create-phone-call"] == 5
    if outcome == "failed":
        assert "refused 5 times, in as many turns" in row.reason
        assert run.stats["calls"] == []
