"""CPS fidelity: how closely a campaign holds and reaches its calls per second.

Runs `outbound_campaign` on Prefect's embedded server against a sandbox in a
child process, at 1, 5 and 16 calls per second, and prints for each the achieved rate
over the configured one, the most creations in any one-second window, and the
429 answers. Run from the repository root:

    .venv/bin/python bench/cps.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import csv
import os
import shutil
import sys
import tempfile
import time
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

from prefect_retell import RetellCredentials, outbound_campaign  # noqa: E402
from prefect_retell.sandbox import SandboxConfig, serve_sandbox  # noqa: E402
from prefect_retell.sandbox.report import creation_report  # noqa: E402

FROM_NUMBER = "+16505550101"  # Telnyx in the sandbox: up to 16 CPS
TIME_SCALE = 0.02
# Retell's 2-second poll gap at the sandbox's speed: the campaign's poller then
# looks at calls as it would against Retell (its whole schedule scales with it).
POLL_INTERVAL_SECONDS = 2.0 * TIME_SCALE
AREA_CODES = ["415", "212", "312", "206", "617", "213", "305", "404", "503", "702"]


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


async def one_run(cps: int, contacts: Path, sandbox) -> tuple[str, float]:
    sandbox.reset()
    credentials = RetellCredentials(
        api_key="key_sandbox_0000", base_url=sandbox.base_url
    )
    started = time.perf_counter()
    await outbound_campaign(
        contacts=str(contacts),
        from_number=FROM_NUMBER,
        credentials=credentials,
        cps=cps,
        max_concurrency=200,
        poll_interval_seconds=POLL_INTERVAL_SECONDS,
    )
    wall = time.perf_counter() - started
    report = creation_report(sandbox.stats(), FROM_NUMBER)
    FIGURES.extend(cps_figures(cps, report))
    row = (
        f"| {cps:>3} | {report.calls:>5} | {report.mean_rate:6.2f} | "
        f"{100 * report.mean_rate / cps:6.1f}% | {report.most_in_one_second:>4} | "
        f"{sum(report.rate_limited.values()):>4} | {wall:6.1f} |"
    )
    return row, report.mean_rate / cps


FIGURES: list = []


@contextlib.contextmanager
def _sandbox(args: argparse.Namespace) -> Iterator:
    """The sandbox, in a child process unless asked otherwise.

    In this process, its work (answering a list of a hundred calls at once, say)
    competes with the campaign's for the interpreter, and delays creates by tens
    of milliseconds: enough to put 17 into one second at the sandbox now and then.
    Retell does not run in the campaign's process either.
    """
    from bench import _support

    config = {"concurrency_limit": 400, "time_scale": TIME_SCALE}
    if not args.in_process_sandbox:
        with _support.sandbox_process(**config) as sandbox:
            yield sandbox
        return
    with serve_sandbox(SandboxConfig(**config)) as server:
        yield _support.Sandbox(server.base_url)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="dispatch time per rate (default: 20)",
    )
    parser.add_argument("--rates", default="1,5,16", help="default: 1,5,16")
    parser.add_argument(
        "--in-process-sandbox",
        action="store_true",
        help="serve the sandbox from a thread of this process, as before",
    )
    parser.add_argument("--json-out", help="also write the figures here as JSON")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]
    print("| CPS | calls | achieved/s | of CPS | most in 1 s | 429s | wall s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder, _sandbox(args) as sandbox:
        for cps in rates:
            count = min(1000, max(10, int(cps * args.seconds)))
            contacts = write_contacts(Path(folder), count)
            row, _ = asyncio.run(one_run(cps, contacts, sandbox))
            print(row, flush=True)
    from bench._support import write_figures

    write_figures(args.json_out, FIGURES)


if __name__ == "__main__":
    main()
