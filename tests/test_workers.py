"""A campaign split over two Prefect worker processes of one real Prefect server.

The test starts `prefect server start` (SQLite, its own PREFECT_HOME) and two
`prefect worker start` processes of a process work pool, each taking one flow run
at a time, all on 127.0.0.1, plus a sandbox in this process that the workers'
flow runs reach over HTTP. `sharded_campaign` runs here and starts two shard runs
of a deployment of `outbound_campaign`; each worker picks up one. The sandbox's
record of creation times is then checked against the number's CPS: only the
Prefect server keeps the two processes within it together.

Every process started here is stopped, with its children, however the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, temporary_settings

from flow_support import TWILIO, contacts_file, most_in_one_second
from prefect_retell import RetellCredentials, outbound_campaign, sharded_campaign
from prefect_retell.sandbox import SandboxConfig, serve_sandbox

REPOSITORY = Path(__file__).resolve().parent.parent
POOL = "retell-test-pool"
DEPLOYMENT = "retell-outbound-campaign/workers-test"
BLOCK = "retell-workers-test"
CPS = 5
CONTACTS = [f"+1415555{n:04d}" for n in range(700, 740)]
# A generous bound, so that a stuck process fails the test instead of hanging CI.
STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _prefect_command(*arguments: str) -> list[str]:
    return [str(Path(sys.executable).with_name("prefect")), *arguments]


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[Path]:
    """Run `command` in a session of its own; stop it and its children at the end."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started, then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    # Flow-run processes the workers started are in the workers' groups; make
    # sure none of them outlives its worker.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_for_health(api_url: str, server_log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{api_url}/health", timeout=2),
        ):
            return
        time.sleep(0.5)
    pytest.fail(f"prefect server did not start:\n{server_log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def local_prefect(tmp_path_factory) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A real Prefect server on 127.0.0.1; its API URL, the env to reach it, logs."""
    folder = tmp_path_factory.mktemp("workers")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(folder / "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Workers look for runs every second instead of every ten.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    env.pop("PREFECT_API_KEY", None)
    command = _prefect_command("server", "start", "--host", "127.0.0.1")
    with _process([*command, "--port", str(port)], env, folder / "server.log") as log:
        _wait_for_health(api_url, log)
        yield api_url, env, folder


async def _wait_for_workers(pool: str, count: int, logs: list[Path]) -> None:
    """Wait until `count` workers of `pool` have sent a heartbeat.

    A worker that is still starting when the shards are scheduled cannot take
    one, and the other worker, its first run done, would take both.
    """
    deadline = time.monotonic() + STARTUP_SECONDS
    async with get_client() as client:
        while time.monotonic() < deadline:
            workers = await client.read_workers_for_work_pool(pool)
            if sum(worker.status == "ONLINE" for worker in workers) >= count:
                return
            await asyncio.sleep(0.5)
    output = "\n".join(log.read_text()[-1500:] for log in logs)
    pytest.fail(f"{count} workers did not come online:\n{output}")


@pytest.fixture(scope="module")
async def workers_run(local_prefect):
    """40 contacts at CPS 5 from Twilio, as 2 shards, on 2 workers of one pool."""
    api_url, env, folder = local_prefect
    subprocess.run(
        _prefect_command("work-pool", "create", POOL, "--type", "process"),
        env=env,
        check=True,
        capture_output=True,
        timeout=STARTUP_SECONDS,
    )
    contacts = contacts_file([{"phone": number} for number in CONTACTS])
    config = SandboxConfig(time_scale=0.005)
    with (
        serve_sandbox(config) as sandbox,
        temporary_settings({PREFECT_API_URL: api_url}),
    ):
        await RetellCredentials(api_key=config.api_key, base_url=sandbox.base_url).save(
            BLOCK, overwrite=True
        )
        source = await outbound_campaign.afrom_source(
            str(REPOSITORY), "src/prefect_retell/flows/campaign.py:outbound_campaign"
        )
        await source.adeploy(
            name="workers-test",
            work_pool_name=POOL,
            build=False,
            push=False,
            print_next_steps=False,
        )
        with contextlib.ExitStack() as workers:
            logs = [
                workers.enter_context(
                    _process(
                        _prefect_command(
                            "worker",
                            "start",
                            "--pool",
                            POOL,
                            "--limit",
                            "1",
                            "--name",
                            f"worker-{index}",
                        ),
                        env,
                        folder / f"worker-{index}.log",
                    )
                )
                for index in (1, 2)
            ]
            await _wait_for_workers(POOL, 2, logs)
            shards = await sharded_campaign(
                contacts=contacts,
                shard_count=2,
                deployment=DEPLOYMENT,
                parameters=dict(
                    from_number=TWILIO,
                    credentials=BLOCK,
                    cps=CPS,
                    campaign_id=f"test-workers-{uuid4().hex[:12]}",
                    poll_interval_seconds=0.1,
                ),
                poll_interval_seconds=1.0,
            )
        async with get_client() as client:
            runs = [await client.read_flow_run(shard.flow_run_id) for shard in shards]
        # Send this process's log lines before the server goes.
        await APILogHandler.aflush()
        return shards, runs, sandbox.sandbox.stats(), [log.read_text() for log in logs]


def test_both_shards_complete(workers_run):
    """Each shard's flow run ended Completed."""
    shards, runs, _, _ = workers_run
    assert [shard.state for shard in shards] == ["Completed", "Completed"]
    assert [run.parameters["shard"] for run in runs] == [1, 2]


def test_each_worker_ran_one_shard(workers_run):
    """Each worker process ran one of the two shard runs to its end.

    A flow run's own log lines go to the output of the worker that runs it (both
    workers may try to take the same run; one of them gets it).
    """
    shards, _, _, logs = workers_run
    finished = [
        re.findall(r"Flow run '([^']+)' - Finished in state Completed", log)
        for log in logs
    ]
    assert sorted(map(len, finished)) == [1, 1]
    assert {*finished[0], *finished[1]} == {shard.flow_run_name for shard in shards}


def test_every_contact_dialled_once_across_workers(workers_run):
    """Together the two worker processes placed one call to each of the 40."""
    _, _, stats, _ = workers_run
    assert Counter(call["to_number"] for call in stats["calls"]) == Counter(CONTACTS)


def test_two_workers_never_exceed_the_cps_together(workers_run):
    """At most 5 creations in any one-second window of the sandbox's record; no 429."""
    _, _, stats, _ = workers_run
    times = sorted(
        c["created_at"] for c in stats["calls"] if c["from_number"] == TWILIO
    )
    assert len(times) == len(CONTACTS)
    assert most_in_one_second(times) <= CPS
    assert sum(stats["rate_limited"].values()) == 0
