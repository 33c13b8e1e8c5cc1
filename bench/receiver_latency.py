"""Webhook receiver latency: how fast Retell gets its 2xx, with Prefect away.

Starts `prefect-retell webhooks serve` as its own process, with PREFECT_API_URL
at a port where nothing listens, so every event stays queued and the sender
keeps failing and retrying beside the requests. Posts signed `call_ended`
webhooks (a failed call: two events each), one at a time and then many at once,
and prints the answer times. Retell gives up on a delivery after 10 s. Run from
the repository root:

    .venv/bin/python bench/receiver_latency.py [--webhooks 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from prefect_retell import sign_webhook

KEY = "key_bench_0000"
CLI = Path(sys.executable).with_name("prefect-retell")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(index: int) -> bytes:
    call = {
        "call_id": f"call_bench_{index:08d}",
        "call_status": "not_connected",
        "disconnection_reason": "dial_busy",
        "agent_id": "agent_bench",
        "direction": "outbound",
        "from_number": "+14155550100",
        "to_number": "+14155550123",
        "metadata": {"prefect_flow_run_id": "00000000-0000-0000-0000-000000000000"},
    }
    return json.dumps({"event": "call_ended", "call": call}).encode()


async def post(client: httpx.AsyncClient, url: str, index: int) -> float:
    data = body(index)
    headers = {"x-retell-signature": sign_webhook(data, KEY, int(time.time() * 1000))}
    started = time.perf_counter()
    answer = await client.post(url, content=data, headers=headers)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed


def describe(label: str, seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{label:<22} n={len(ms):>5}  p50 {statistics.median(ms):6.2f} ms  "
        f"p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms"
    )


async def measure(url: str, count: int, concurrency: int) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        one_by_one = [await post(client, url, index) for index in range(count // 2)]
        print(describe("one at a time", one_by_one))

        gate = asyncio.Semaphore(concurrency)

        async def limited(index: int) -> float:
            async with gate:
                return await post(client, url, index)

        together = await asyncio.gather(
            *(limited(index) for index in range(count // 2, count))
        )
        print(describe(f"{concurrency} at once", list(together)))
        state = (await client.get(url + "healthz")).json()
        queued, api = state["queued_events"], state["prefect_api"]
        print(f"queued {queued} events; Prefect API {api}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    port = free_port()
    env = dict(
        os.environ,
        RETELL_API_KEY=KEY,
        PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
        PREFECT_LOGGING_LEVEL="ERROR",
    )
    command = [str(CLI), "webhooks", "serve", "--port", str(port)]
    receiver = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        print(receiver.stdout.readline().strip())
        asyncio.run(
            measure(f"http://127.0.0.1:{port}/", args.webhooks, args.concurrency)
        )
    finally:
        receiver.send_signal(signal.SIGINT)
        receiver.wait(60)


if __name__ == "__main__":
    main()
