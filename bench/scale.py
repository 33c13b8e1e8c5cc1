"""Scale: a 10,000-contact campaign on an accelerated sandbox; wall time, peak RSS.

`outbound_campaign` on Prefect's embedded server dials 10,000 fictional numbers
against a sandbox in a child process, with the sandbox's usual mix of outcomes
(60 % answered, the rest voicemail, no answer, busy or failed; 20 to 175
simulated seconds each). Printed: wall seconds of the campaign (Prefect already
started), the achieved dial rate, the most calls live at once, API requests per
call, 429s, and peak resident memory of this process and of Prefect's server.

Why these settings: dispatch at the CPS is the floor of a campaign's wall time,
and no Telnyx or Twilio number goes above 16 CPS (10,000 calls: 10.4 minutes).
A custom-telephony number may dial concurrency / 20 calls a second, so the
sandbox account gets a concurrency of 2,000 and the campaign runs at 100 CPS:
10,000 calls in 100 s. The sandbox runs at time_scale 0.05 (calls last 1 to 9 s)
and the poller at the same scale, so a few hundred calls are live at a time.
`--cps 16 --number telnyx` gives the slower, Telnyx-bound run.

    .venv/bin/python bench/scale.py [--contacts 10000] [--cps 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _support  # noqa: E402
from bench._support import Figure  # noqa: E402

TIME_SCALE = 0.05
CONCURRENCY = 2000
NUMBERS = {"custom": _support.CUSTOM, "telnyx": _support.TELNYX}


def run_campaign(sandbox: _support.Sandbox, contacts: Path, args) -> dict:
    from prefect_retell import RetellCredentials, outbound_campaign
    from prefect_retell.sandbox.report import creation_report

    from_number = NUMBERS[args.number]
    credentials = RetellCredentials(
        api_key=_support.SANDBOX_KEY, base_url=sandbox.base_url
    )
    meter = _support.Meter(exclude=[sandbox.pid] if sandbox.pid else [])
    with meter.measure():
        result = asyncio.run(
            outbound_campaign(
                contacts=str(contacts),
                from_number=from_number,
                credentials=credentials,
                cps=args.cps,
                max_concurrency=CONCURRENCY,
                # The sandbox's custom-telephony number has no agent bound.
                agent_id="agent_sandbox_reminder",
                poll_interval_seconds=_support.RETELL_MIN_GAP_SECONDS * TIME_SCALE,
                campaign_id=f"bench-scale-{time.time_ns()}",
            )
        )
    server_peaks = _support.descendants_peak_rss_mb(os.getpid(), [sandbox.pid or 0])
    stats = sandbox.stats()
    report = creation_report(stats, from_number)
    return {
        "wall_seconds": meter.wall_seconds,
        "cpu_seconds": meter.cpu_seconds,
        "server_cpu_seconds": meter.children_cpu_seconds,
        "counts": result.counts,
        "calls": report.calls,
        "rate": report.mean_rate,
        "most_in_one_second": report.most_in_one_second,
        "rate_limited": sum(stats["rate_limited"].values()),
        "max_live_calls": stats["max_live_calls"],
        "api_requests": sum(_support.api_requests(stats).values()),
        "peak_rss_mb": _support.peak_rss_mb(),
        "server_peak_rss_mb": max(server_peaks.values(), default=0.0),
    }


def figures(run: dict, args) -> list[Figure]:
    calls = run["calls"]
    return [
        Figure("scale", "contacts / calls placed", f"{args.contacts} / {calls}"),
        Figure("scale", "wall s", f"{run['wall_seconds']:.1f}"),
        Figure(
            "scale",
            "achieved dial rate / CPS",
            f"{run['rate']:.1f} / {args.cps}",
            note=f"most in one second: {run['most_in_one_second']}",
        ),
        Figure("scale", "most calls live at once", str(run["max_live_calls"])),
        Figure("scale", "API requests per call", f"{run['api_requests'] / calls:.2f}"),
        Figure("scale", "429 answers", str(run["rate_limited"])),
        Figure(
            "scale",
            "CPU ms per call (flow process)",
            f"{1000 * run['cpu_seconds'] / calls:.2f}",
        ),
        Figure("scale", "peak RSS MB (flow process)", f"{run['peak_rss_mb']:.0f}"),
        Figure(
            "scale", "peak RSS MB (Prefect server)", f"{run['server_peak_rss_mb']:.0f}"
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--cps", type=int, default=100)
    parser.add_argument("--number", choices=sorted(NUMBERS), default="custom")
    parser.add_argument("--json-out", help="also write the figures here as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        _support.quiet_prefect(home=str(Path(folder) / "prefect"))
        contacts = _support.write_contacts(
            Path(folder) / "contacts.csv", _support.us_numbers(args.contacts)
        )
        config = {"time_scale": TIME_SCALE, "concurrency_limit": CONCURRENCY}
        with _support.sandbox_process(**config) as sandbox:
            _support.warm_up_prefect()
            run = run_campaign(sandbox, contacts, args)
    print(f"campaign: {run}", flush=True)
    results = figures(run, args)
    print(_support.figures_table(results))
    _support.write_figures(args.json_out, results)


if __name__ == "__main__":
    main()
