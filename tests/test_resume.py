"""A campaign killed again and again, then resumed, dials every contact once.

Each trial runs the real command line in its own process against this session's
Prefect server and a sandbox, and kills it with SIGKILL at a random moment: while
starting, loading, dialling or following calls. The same campaign is then started
again. The sandbox's record is the judge: one call per valid contact, across all
trials, and a final result with every input row.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.settings import get_current_settings

from prefect_retell.sandbox import SandboxConfig, serve_sandbox

TELNYX = "+16505550101"
TRIALS = 20
AREA_CODES = ("415", "212")


def write_contacts(path: Path) -> tuple[set[str], int]:
    """200 rows: 190 distinct valid numbers, 5 repeats and 5 invalid numbers."""
    valid = [f"+1{AREA_CODES[n // 100]}555{100 + n % 100:04d}" for n in range(190)]
    rows = [[number, f"Guest {index}"] for index, number in enumerate(valid)]
    rows += [[valid[index], "Repeat"] for index in range(5)]
    rows += [
        ["555-0115", "No area code"],
        ["N/A", "Nothing"],
        ["415-555-CALL", "X"],
        ["", "Empty"],
        ["1.41556E+10", "Float"],
    ]
    random.Random(7).shuffle(rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Phone", "First Name"])
        writer.writerows(rows)
    return set(valid), len(rows)


def campaign_command(contacts: Path, results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefect_retell.cli",
        "campaign",
        str(contacts),
        "--from-number",
        TELNYX,
        "--cps",
        "5",
        "--max-concurrency",
        "60",
        "--campaign-id",
        "fx-killed",
        "--poll-interval-seconds",
        "0.05",
        "--results",
        str(results),
    ]


@pytest.fixture
def killing_ground(prefect_server, tmp_path):
    """A sandbox with room for many live calls, and an environment that points a
    child process at it and at this session's Prefect server."""
    config = SandboxConfig(time_scale=0.002, concurrency_limit=1000)
    with serve_sandbox(config) as server:
        env = {
            **os.environ,
            "PREFECT_API_URL": str(get_current_settings().api.url),
            "RETELL_API_KEY": config.api_key,
            "RETELL_BASE_URL": server.base_url,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
        }
        yield server, env


async def widen_concurrency_limit() -> None:
    # A killed run keeps its concurrency slots until their lease ends (a minute);
    # with room for all of them, later trials never wait on a dead run's slots.
    async with get_client() as client:
        try:
            await client.update_global_concurrency_limit(
                "retell-concurrency", GlobalConcurrencyLimitUpdate(limit=5000)
            )
        except Exception:  # noqa: BLE001 - missing: the first run creates it
            from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="retell-concurrency", limit=5000)
            )


async def test_killed_campaign_resumed_dials_every_contact_once(
    killing_ground, tmp_path
):
    """20 random SIGKILLs and a final run: each valid contact called exactly once,
    every row accounted for."""
    server, env = killing_ground
    contacts = tmp_path / "contacts.csv"
    valid, total_rows = write_contacts(contacts)
    results = tmp_path / "results.json"
    await widen_concurrency_limit()
    chance = random.Random(2026)
    kills_while_dialling = 0

    for _ in range(TRIALS):
        child = subprocess.Popen(
            campaign_command(contacts, results),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(2.5, 6.0))
        placed_before = len(server.sandbox.stats()["calls"])
        child.send_signal(signal.SIGKILL)
        child.wait()
        if 0 < placed_before < len(valid):
            kills_while_dialling += 1

    final = subprocess.run(
        campaign_command(contacts, results),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert final.returncode == 0, final.stderr[-2000:]
    calls = collections.Counter(
        call["to_number"] for call in server.sandbox.stats()["calls"]
    )
    assert set(calls) == valid
    assert [number for number, count in calls.items() if count != 1] == []
    rows = json.loads(results.read_text())
    assert len(rows) == total_rows
    outcomes = collections.Counter(row["outcome"] for row in rows)
    assert outcomes == {"called": 190, "duplicate": 5, "rejected": 5}
    assert kills_while_dialling >= 5, "the kills should land while calls are placed"
