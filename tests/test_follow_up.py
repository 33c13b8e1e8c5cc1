"""The follow-up deployment: a Prefect trigger on an unsuccessful call's event.

Runs the example in deployments/follow_up.py as a served deployment on the
session's Prefect server, whose trigger and action services start the flow run
when the event arrives, as they would in production.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from prefect import aserve
from prefect.events import emit_event
from prefect.events.schemas.events import Resource

from flow_support import TWILIO, credentials_for
from prefect_retell import outbound_call
from prefect_retell.sandbox import Outcome
from prefect_retell.webhooks import parse_webhook, prefect_events_for

ROOT = Path(__file__).resolve().parents[1]


def _load_example():
    spec = importlib.util.spec_from_file_location(
        "follow_up_example", ROOT / "deployments" / "follow_up.py"
    )
    module = importlib.util.module_from_spec(spec)
    # Prefect finds a flow's source file through its module in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _event_resource(**fields) -> Resource:
    call = {
        "call_id": "call_fx_001",
        "call_status": "ended",
        "from_number": TWILIO,
        "to_number": "+14155550123",
        "direction": "outbound",
        **fields,
    }
    body = json.dumps({"event": "call_analyzed", "call": call}).encode()
    [event] = prefect_events_for(parse_webhook(body))
    return Resource(event["resource"])


@pytest.mark.parametrize(
    ("fields", "matched"),
    [
        ({"call_analysis": {"call_successful": False}}, True),
        ({"call_analysis": {"call_successful": True}}, False),
        ({}, False),  # no analysis: nothing to act on yet
    ],
)
def test_trigger_matches_only_unsuccessful_calls(fields, matched):
    """The trigger expects retell.call.analyzed on calls analysed as failures."""
    trigger = _load_example().UNSUCCESSFUL_CALL
    assert trigger.expect == {"retell.call.analyzed"}
    assert trigger.match.matches(_event_resource(**fields)) is matched


async def _analysed_event(sandbox, number: str, outcome: Outcome) -> list[dict]:
    """Place a real call on the sandbox and build its call_analyzed events."""
    sandbox.sandbox.set_outcome(number, outcome)
    call = await outbound_call(
        TWILIO, number, credentials=credentials_for(sandbox), timeout_seconds=30
    )
    full = sandbox.sandbox.get_call(call.call_id)
    body = {"event": "call_analyzed", "call": full}
    return prefect_events_for(parse_webhook(json.dumps(body).encode()))


async def test_unsuccessful_call_event_runs_the_follow_up(
    prefect_server, sandbox, tmp_path, monkeypatch
):
    """An analysed, unsuccessful call lands in the callback list; a good one not."""
    example = _load_example()
    block_name = "retell-follow-up-test"
    await credentials_for(sandbox).save(block_name, overwrite=True)
    callbacks = tmp_path / "callbacks.csv"
    monkeypatch.chdir(ROOT)
    deployment = await example.follow_up_call.ato_deployment(
        name="retell-follow-up-test",
        triggers=[example.UNSUCCESSFUL_CALL],
        parameters={"credentials": block_name, "callback_list": str(callbacks)},
    )
    serving = asyncio.create_task(aserve(deployment))
    try:
        await asyncio.sleep(3)  # the runner registers the deployment and trigger
        failed = await _analysed_event(
            sandbox, "+14155550350", Outcome(kind="busy", ring_seconds=5)
        )
        booked = await _analysed_event(
            sandbox,
            "+14155550351",
            Outcome(
                kind="answered", ring_seconds=5, talk_seconds=30, call_successful=True
            ),
        )
        for event in booked + failed:
            emit_event(**event)
        rows = await _wait_for_rows(callbacks, count=1, timeout=120)
        await asyncio.sleep(5)  # a wrongly triggered second run would land by now
        rows = _read_rows(callbacks)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert [row["phone"] for row in rows] == ["+14155550350"]
    assert rows[0]["disconnection_reason"] == "dial_busy"
    assert rows[0]["call_id"] == failed[0]["resource"]["prefect.resource.name"]


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def _wait_for_rows(path: Path, *, count: int, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _read_rows(path)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.5)
    raise AssertionError(f"the follow-up did not write {count} row(s) in {timeout} s")
