"""CPS fidelity: how closely campaigns hold and reach their calls per second.

With one process (the default), runs `outbound_campaign` on Prefect's embedded
server, already started, against a sandbox in a child process (as Retell would
be: a sandbox thread in the campaign's process would compete with it for the
interpreter and delay both), at 1, 5 and 16 calls per second. With
`--processes N`, starts a local `prefect server start` (SQLite, or the database
given with `--database-url`) and runs the same list as N shards, each in a
process of its own, drawing from one Prefect rate limit. Prints, for each rate,
the achieved rate over the configured one, the most creations in any one-second
window (from the sandbox's record) and the 429 answers. From the repository root:

    .venv/bin/python bench/cps.py [--seconds 20] [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A fresh Prefect home, so a `retell-concurrency` limit left at 20 by earlier
# runs on this machine cannot cap the campaign below what the rate needs.
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-retell-bench-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _support  # noqa: E402
from prefect_retell import RetellCredentials, outbound_campaign  # noqa: E402
from prefect_retell.sandbox.report import creation_report  # noqa: E402

FROM_NUMBER = "+16505550101"  # Telnyx in the sandbox: up to 16 CPS
AREA_CODES = ["415", "212", "312", "206", "617", "213", "305", "404", "503", "702"]
HEADER = (
    "| processes | CPS | calls | achieved/s | of CPS | most in 1 s | 429s | wall s |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def write_contacts(folder: Path, count: int) -> Path:
    """A list of `count` distinct fictitious US numbers."""
    path = folder / f"contacts-{count}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Phone", "First Name"])
        for index in range(count):
            area = AREA_CODES[index // 100]
            writer.writerow([f"({area}) 555-{100 + index % 100:04d}", f"Guest {index}"])
    return path


def campaign_parameters(cps: int, contacts: Path, base_url: str, api_key: str):
    """The flow's parameters; a new campaign id, so a run never resumes an old one."""
    return dict(
        contacts=str(contacts),
        from_number=FROM_NUMBER,
        credentials=RetellCredentials(api_key=api_key, base_url=base_url),
        cps=cps,
        max_concurrency=200,
        poll_interval_seconds=0.5,
        campaign_id=f"bench-cps-{uuid.uuid4().hex[:12]}",
    )


FIGURES: list = []


def cps_figures(cps: int, report) -> list:
    """The run's figures against issue 5's targets, for `python -m bench`."""
    from bench._support import Figure

    rate_limited = sum(report.rate_limited.values())
    share = report.mean_rate / cps
    return [
        Figure(
            "cps", f"{cps} CPS: achieved / CPS", f"{share:.1%}", ">= 98%", share >= 0.98
        ),
        Figure(
            "cps",
            f"{cps} CPS: most in one second",
            str(report.most_in_one_second),
            f"<= {cps}",
            report.most_in_one_second <= cps,
        ),
        Figure(
            "cps", f"{cps} CPS: 429 answers", str(rate_limited), "0", rate_limited == 0
        ),
    ]


def table_row(processes: int, cps: int, stats: dict, wall: float) -> str:
    report = creation_report(stats, FROM_NUMBER)
    if processes == 1:
        FIGURES.extend(cps_figures(cps, report))
    return (
        f"| {processes:>2} | {cps:>3} | {report.calls:>5} | {report.mean_rate:6.2f} | "
        f"{100 * report.mean_rate / cps:6.1f}% | {report.most_in_one_second:>4} | "
        f"{sum(report.rate_limited.values()):>4} | {wall:6.1f} |"
    )


async def one_process(cps: int, contacts: Path, sandbox: _support.Sandbox) -> str:
    sandbox.reset()
    parameters = campaign_parameters(
        cps, contacts, sandbox.base_url, _support.SANDBOX_KEY
    )
    started = time.perf_counter()
    await outbound_campaign(**parameters)
    wall = time.perf_counter() - started
    return table_row(1, cps, sandbox.stats(), wall)


def several_processes(
    processes: int, cps: int, contacts: Path, sandbox: _support.Sandbox, api_url: str
) -> str:
    """Run the list as `processes` shards, each in a process of its own."""
    sandbox.reset()
    campaign_id = f"bench-cps-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "PREFECT_API_URL": api_url}
    command = [sys.executable, __file__, "--contacts", str(contacts)]
    command += ["--cps", str(cps), "--base-url", sandbox.base_url]
    command += ["--campaign-id", campaign_id]
    started = time.perf_counter()
    shards = [
        subprocess.Popen(
            [*command, "--shard", f"{shard}/{processes}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for shard in range(1, processes + 1)
    ]
    for shard in shards:
        _, errors = shard.communicate()
        if shard.returncode:
            raise SystemExit(f"a shard failed:\n{errors[-3000:]}")
    wall = time.perf_counter() - started
    return table_row(processes, cps, sandbox.stats(), wall)


def run_shard(args: argparse.Namespace) -> None:
    """One shard of a several-process run (started by `several_processes`)."""
    shard, count = (int(part) for part in args.shard.split("/"))
    parameters = campaign_parameters(
        args.cps, Path(args.contacts), args.base_url, _support.SANDBOX_KEY
    )
    parameters["campaign_id"] = args.campaign_id
    asyncio.run(outbound_campaign(**parameters, shard=shard, shard_count=count))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def prefect_server(folder: Path, database_url: str | None) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1 with its own home; yields its API URL."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    prefect = Path(sys.executable).with_name("prefect")
    server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{api_url}/health", timeout=2),
            ):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("prefect server start did not come up")
            time.sleep(0.5)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="dispatch time per rate"
    )
    parser.add_argument("--rates", default="1,5,16", help="default: 1,5,16")
    parser.add_argument("--json-out", help="also write the figures here as JSON")
    parser.add_argument(
        "--processes", type=int, default=1, help="shards, one process each"
    )
    parser.add_argument(
        "--database-url",
        help="for --processes: the Prefect server's database (default: SQLite)",
    )
    # Used by the processes that several_processes starts.
    for hidden in ("--shard", "--contacts", "--base-url", "--campaign-id"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--cps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard:
        run_shard(args)
        return
    rates = [int(rate) for rate in args.rates.split(",")]
    print(HEADER, flush=True)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = stack.enter_context(
            _support.sandbox_process(concurrency_limit=400, time_scale=0.02)
        )
        api_url = None
        if args.processes > 1:
            api_url = stack.enter_context(prefect_server(folder, args.database_url))
        else:
            # Prefect's embedded server starts with the first flow run and keeps
            # busy for a while after; the first rate must not pay for that.
            _support.warm_up_prefect()
            time.sleep(5)
        for cps in rates:
            count = min(1000, max(10, int(cps * args.seconds)))
            contacts = write_contacts(folder, count)
            if api_url is None:
                row = asyncio.run(one_process(cps, contacts, server))
            else:
                row = several_processes(args.processes, cps, contacts, server, api_url)
            print(row, flush=True)
    from bench._support import write_figures

    write_figures(args.json_out, FIGURES)


if __name__ == "__main__":
    main()
