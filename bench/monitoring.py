"""Monitoring cost: API requests per call while following calls, and memory.

Calls here last about a minute: each rings 3 to 12 and talks 45 to 65 simulated
seconds, 57 to 68 s in all. (The poll schedule's second look at a call comes when
it is 90 s old, so a call followed alone that lasts longer costs a third read,
and one more every 2 minutes after that.) The sandbox runs at time_scale 0.05
and every poller runs Retell's schedule at the same scale, so request counts are
those against Retell, 20 times sooner. Figures, for each mode:

- requests per call with every call followed on its own (a poller per call: no
  batching at all), creation included;
- requests per call in a campaign (`outbound_campaign`, 300 contacts at 16 CPS):
  every request to Retell's routes during the run, set-up included, per call;
- peak resident memory of a process that places 10,000 calls which stay live,
  follows them all with one `CallPoller` for a while, then stops them (in a
  child process of its own, so that nothing else it ran counts; Prefect is
  imported there as in any campaign), and the requests per call it took,
  creation included and the benchmark's stop-calls left out.

In events mode the sandbox sends its signed webhooks to the project's receiver,
served in this process, which turns them into Prefect events on the Prefect API
the flows use (the embedded server); calls are followed by those events. The
target is one request per call, its creation, when every event arrives; a call
whose event has not come within a minute is read once with get-call, which the
figures show. Figures:

- requests per call with calls followed one by one (`follow_call_by_events`,
  one `CallEventWatcher` for all), creation included;
- requests per call in a campaign (`outbound_campaign(monitor="events")`, 300
  contacts at 16 CPS), set-up included, with the requests broken down.

    .venv/bin/python bench/monitoring.py [--live-calls 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _support  # noqa: E402
from bench._support import Figure  # noqa: E402

TIME_SCALE = 0.05
MIN_GAP_SECONDS = _support.RETELL_MIN_GAP_SECONDS * TIME_SCALE
REQUESTS_TARGET = 3.0
MEMORY_TARGET_MB = 500.0


def minute_outcomes(numbers: list[str]) -> dict[str, dict]:
    """Outcomes of about a minute, spread evenly over the numbers."""
    outcomes = {}
    for index, number in enumerate(numbers):
        spread = (index * 7919 % 101) / 100  # 0 to 1, scattered over the list
        outcomes[number] = {
            "kind": "answered",
            "ring_seconds": 3 + 9 * spread,
            "talk_seconds": 45 + 20 * (1 - spread),
        }
    return outcomes


# -- poll mode ------------------------------------------------------------------------


async def _alone(sandbox: _support.Sandbox, numbers: list[str]) -> None:
    from prefect_retell.client import RetellClient
    from prefect_retell.polling import CallPoller, PollSchedule

    schedule = PollSchedule.with_min_gap(MIN_GAP_SECONDS)
    async with RetellClient(_support.SANDBOX_KEY, base_url=sandbox.base_url) as client:

        async def one(number: str) -> None:
            call = await client.create_phone_call(
                from_number=_support.TELNYX, to_number=number
            )
            async with CallPoller(client, schedule=schedule) as poller:
                await poller.wait(call.call_id, timeout_seconds=600)

        tasks = []
        for number in numbers:
            tasks.append(asyncio.create_task(one(number)))
            # Half the number's CPS: a create refused with 429 and sent again
            # would count here, and dispatch is not what this part measures.
            await asyncio.sleep(1 / 8)
        await asyncio.gather(*tasks)


def poll_alone(sandbox: _support.Sandbox, count: int) -> float:
    """Requests per call when each call is followed by a poller of its own."""
    numbers = _support.us_numbers(count)
    sandbox.reset()
    sandbox.set_outcomes(minute_outcomes(numbers))
    asyncio.run(_alone(sandbox, numbers))
    requests = sum(_support.api_requests(sandbox.stats()).values())
    return requests / count


def poll_campaign(sandbox: _support.Sandbox, count: int, folder: Path) -> float:
    """Requests per call of a campaign over one-minute calls, set-up included."""
    requests = minute_campaign(sandbox, count, folder, monitor="poll")
    return sum(requests.values()) / count


def minute_campaign(
    sandbox: _support.Sandbox, count: int, folder: Path, **options
) -> dict[str, int]:
    """Run a campaign over one-minute calls; return the API requests by route."""
    from prefect_retell import RetellCredentials, outbound_campaign

    numbers = _support.us_numbers(count)
    contacts = _support.write_contacts(folder / "minute-calls.csv", numbers)
    sandbox.reset()
    sandbox.set_outcomes(minute_outcomes(numbers))
    credentials = RetellCredentials(
        api_key=_support.SANDBOX_KEY, base_url=sandbox.base_url
    )
    result = asyncio.run(
        outbound_campaign(
            contacts=str(contacts),
            from_number=_support.TELNYX,
            credentials=credentials,
            cps=16,
            max_concurrency=1000,
            poll_interval_seconds=MIN_GAP_SECONDS,
            campaign_id=f"bench-monitoring-{time.time_ns()}",
            **options,
        )
    )
    if result.counts != {"called": count}:
        raise RuntimeError(f"the campaign did not call every contact: {result.counts}")
    return _support.api_requests(sandbox.stats())


def measure_poll(args: argparse.Namespace, folder: Path) -> list[Figure]:
    config = {"time_scale": TIME_SCALE, "concurrency_limit": 1000}
    with _support.sandbox_process(**config) as sandbox:
        alone = poll_alone(sandbox, args.alone_calls)
        campaign = poll_campaign(sandbox, args.campaign_calls, folder)
    memory = live_calls_memory(args.live_calls, folder)
    target = f"<= {REQUESTS_TARGET:g}"
    return [
        Figure(
            "monitoring",
            f"poll: requests per call, each call alone ({args.alone_calls} calls)",
            f"{alone:.2f}",
            target,
            alone <= REQUESTS_TARGET,
        ),
        Figure(
            "monitoring",
            f"poll: requests per call, campaign of {args.campaign_calls}",
            f"{campaign:.2f}",
            target,
            campaign <= REQUESTS_TARGET,
        ),
        Figure(
            "monitoring",
            f"poll: peak RSS MB, {memory['live']} calls live",
            f"{memory['peak_mb']:.0f}",
            f"< {MEMORY_TARGET_MB:g}",
            memory["peak_mb"] < MEMORY_TARGET_MB,
            note=f"{memory['before_mb']:.0f} MB before the first call",
        ),
        Figure(
            "monitoring",
            f"poll: requests per call, {memory['live']} live",
            f"{memory['requests_per_call']:.2f}",
        ),
    ]


# -- events mode ----------------------------------------------------------------------

CREATE_ROUTE = "POST /v2/create-phone-call"
GET_CALL_ROUTE = "GET /v2/get-call/{call_id}"
# Here a call's events come within seconds of its end; one that has not come a
# minute after the call was placed is taken as lost, and the call is read once.
EVENT_TIMEOUT_SECONDS = 60.0


async def _alone_by_events(sandbox: _support.Sandbox, numbers: list[str]) -> None:
    from prefect_retell.client import RetellClient
    from prefect_retell.monitoring import CallEventWatcher
    from prefect_retell.tasks import follow_call_by_events

    client = RetellClient(_support.SANDBOX_KEY, base_url=sandbox.base_url)
    async with client, CallEventWatcher() as watcher:

        async def one(number: str) -> None:
            call = await client.create_phone_call(
                from_number=_support.TELNYX, to_number=number
            )
            await follow_call_by_events(
                client,
                watcher,
                call.call_id,
                timeout_seconds=EVENT_TIMEOUT_SECONDS,
                poll_interval_seconds=MIN_GAP_SECONDS,
            )

        tasks = []
        for number in numbers:
            tasks.append(asyncio.create_task(one(number)))
            await asyncio.sleep(1 / 8)  # half the number's CPS, as in poll mode
        await asyncio.gather(*tasks)


def events_alone(sandbox: _support.Sandbox, count: int) -> dict[str, int]:
    """API requests by route when calls are followed one by one by their events."""
    numbers = _support.us_numbers(count)
    sandbox.reset()
    sandbox.set_outcomes(minute_outcomes(numbers))
    asyncio.run(_alone_by_events(sandbox, numbers))
    return _support.api_requests(sandbox.stats())


def _breakdown(requests: dict[str, int]) -> tuple[int, int, int]:
    """Creates, get-call reads, and every other request (the set-up)."""
    creates = requests.get(CREATE_ROUTE, 0)
    reads = requests.get(GET_CALL_ROUTE, 0)
    return creates, reads, sum(requests.values()) - creates - reads


def measure_events(args: argparse.Namespace, folder: Path) -> list[Figure]:
    with _support.webhook_receiver() as receiver_url:
        # In the configuration, not set afterwards: a reset restores it.
        config = {
            "time_scale": TIME_SCALE,
            "concurrency_limit": 1000,
            "webhook_url": receiver_url,
        }
        with _support.sandbox_process(**config) as sandbox:
            alone = events_alone(sandbox, args.alone_calls)
            campaign = minute_campaign(
                sandbox,
                args.campaign_calls,
                folder,
                monitor="events",
                call_timeout_seconds=EVENT_TIMEOUT_SECONDS,
            )
    return [
        _events_figure(
            f"events: requests per call, calls one by one ({args.alone_calls} calls)",
            alone,
            args.alone_calls,
        ),
        _events_figure(
            f"events: requests per call, campaign of {args.campaign_calls}",
            campaign,
            args.campaign_calls,
        ),
    ]


def _events_figure(name: str, requests: dict[str, int], count: int) -> Figure:
    """Requests per call, met when each call cost its creation and nothing more.

    Set-up requests (a campaign's look for earlier calls, its number and agent
    checks) are made once per run, so they count in the value but not against
    the target.
    """
    creates, reads, setup = _breakdown(requests)
    per_call = (creates + reads + setup) / count
    note = f"{creates} creates, {reads} get-call"
    if setup:
        note += f", {setup} set-up requests ({setup / count:.3f} per call)"
    print(f"{name}: {per_call:.2f} ({note})", flush=True)
    return Figure(
        "monitoring",
        name,
        f"{per_call:.2f}",
        "1 (the creation)" + (" + set-up" if setup else ""),
        creates == count and reads == 0,
        note=note,
    )


MODES: dict[str, Callable[[argparse.Namespace, Path], list[Figure]]] = {
    "poll": measure_poll,
    "events": measure_events,
}


# -- 10,000 live calls, in a process of their own ------------------------------------


def live_calls_memory(count: int, folder: Path) -> dict:
    """Run `--live-memory` in a child process and read its figures."""
    out = folder / "live-memory.json"
    command = [sys.executable, __file__, "--live-memory", str(count)]
    subprocess.run([*command, "--json-out", str(out)], check=True)
    return json.loads(out.read_text())


# The live-calls run looks at calls 4 times faster than Retell, not 20: at 20 the
# sandbox spends its time answering lists of 1,000 calls ten times a second.
# This part takes about two minutes for 10,000 calls on a 2-core machine.
LIVE_TIME_SCALE = 0.25
# Once every call is placed, the poller goes on following them all for this long
# (several rounds over every call) before they are stopped.
HOLD_SECONDS = 15.0


async def _follow_live(base_url: str, numbers: list[str]) -> dict:
    """Place calls that stay live, follow them all, then stop them all."""
    from prefect_retell.client import RetellClient
    from prefect_retell.polling import CallPoller, PollSchedule

    schedule = PollSchedule.with_min_gap(
        _support.RETELL_MIN_GAP_SECONDS * LIVE_TIME_SCALE
    )
    gate = asyncio.Semaphore(32)
    placed: list[str] = []
    client = RetellClient(_support.SANDBOX_KEY, base_url=base_url)
    async with client, CallPoller(client, schedule=schedule) as poller:

        async def one(number: str) -> str:
            async with gate:
                call = await client.create_phone_call(
                    from_number=_support.TELNYX, to_number=number
                )
            placed.append(call.call_id)
            final = await poller.wait(call.call_id, timeout_seconds=3600)
            return final.call_status

        waits = [asyncio.create_task(one(number)) for number in numbers]
        while len(placed) < len(numbers):
            await asyncio.sleep(0.5)
        followed = poller.following
        await asyncio.sleep(HOLD_SECONDS)
        await asyncio.gather(*(_stop(client, call_id, gate) for call_id in placed))
        statuses = await asyncio.gather(*waits)
    return {"followed": followed, "stopped": statuses.count("ended")}


async def _stop(client, call_id: str, gate: asyncio.Semaphore) -> None:
    async with gate:
        await client.stop_call(call_id)


def measure_live_memory(count: int, json_out: str) -> None:
    """Follow `count` calls that are all live at once; write the figures."""
    import prefect_retell.polling  # noqa: F401  (counted in "before", as in a flow)

    config = {"time_scale": LIVE_TIME_SCALE, "concurrency_limit": count * 2}
    numbers = _support.us_numbers(count)
    with _support.sandbox_process(**config) as sandbox:
        sandbox.set_cps(_support.TELNYX, count)
        sandbox.set_outcomes(dict.fromkeys(numbers, {"kind": "stuck_ongoing"}))
        before = _support.rss_mb()
        with _support.RssSampler() as sampler:
            done = asyncio.run(_follow_live(sandbox.base_url, numbers))
        stats = sandbox.stats()
    requests = _support.api_requests(stats)
    # Stopping the calls is the benchmark's doing, not the poller's.
    stops = requests.pop("POST /v2/stop-call/{call_id}", 0)
    figures = {
        "live": stats["max_live_calls"],
        "followed": done["followed"],
        "stopped": done["stopped"],
        "stop_requests": stops,
        "before_mb": before,
        "peak_mb": max(sampler.peak_mb, _support.peak_rss_mb()),
        "requests_per_call": sum(requests.values()) / count,
    }
    Path(json_out).write_text(json.dumps(figures))
    print(f"{count} live calls: {figures}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alone-calls", type=int, default=50)
    parser.add_argument("--campaign-calls", type=int, default=300)
    parser.add_argument("--live-calls", type=int, default=10_000)
    parser.add_argument("--live-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.live_memory:
        measure_live_memory(args.live_memory, args.json_out)
        return

    with tempfile.TemporaryDirectory() as folder:
        _support.quiet_prefect(home=str(Path(folder) / "prefect"))
        results = []
        for measure in MODES.values():
            results += measure(args, Path(folder))
    print(_support.figures_table(results))
    _support.write_figures(args.json_out, results)


if __name__ == "__main__":
    main()
