"""The honest baseline: a plain asyncio + httpx script that runs a contact list.

It does what `outbound_campaign` does at its core and nothing more: it reads the
list, places one call per number at an even CPS, and follows the calls the way
prefect-retell's poll mode does (batched list-calls by call id, each call looked
at more rarely as it ages, a lone call read with get-call), until every call is
final. No Prefect, no prefect-retell: `bench/overhead.py` runs it side by side
with the campaign on the same list. Run it alone against any sandbox:

    .venv/bin/python bench/baseline.py --base-url http://127.0.0.1:8765 \\
        --contacts contacts.csv --cps 16 --min-gap-seconds 0.1

It leaves out what a campaign adds: validation of numbers, limits shared through
Prefect, idempotency-key lookups after lost answers, resume, results and
artifacts. A call missing from a list answer is simply looked at again; the
sandbox's list does not lag unless told to.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = {"ended", "not_connected", "error"}
PAGE = 1000


@dataclass
class Schedule:
    """The poll schedule, as prefect-retell's PollSchedule defaults scale it."""

    min_gap: float = 2.0
    first_look: float = 10.0
    age_factor: float = 9.0
    max_gap: float = 120.0

    @classmethod
    def scaled(cls, min_gap: float) -> Schedule:
        factor = min_gap / cls.min_gap
        return cls(
            min_gap, cls.first_look * factor, cls.age_factor, cls.max_gap * factor
        )

    def gap(self, age: float) -> float:
        return min(max(age * (self.age_factor - 1), self.min_gap), self.max_gap)


@dataclass(eq=False)
class Watched:
    call_id: str
    since: float
    next_look: float
    done: asyncio.Future[dict[str, Any]]
    last_look: float = -math.inf


@dataclass
class Poller:
    """Follows calls in batches from one loop."""

    http: httpx.AsyncClient
    schedule: Schedule
    watched: dict[str, Watched] = field(default_factory=dict)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _last_round: float = -math.inf

    async def wait(self, call_id: str) -> dict[str, Any]:
        now = time.monotonic()
        done = asyncio.get_running_loop().create_future()
        first = now + self.schedule.first_look
        self.watched[call_id] = Watched(call_id, now, first, done)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        return await done

    async def _loop(self) -> None:
        while self.watched:
            now = time.monotonic()
            soonest = min(item.next_look for item in self.watched.values())
            start = max(soonest, self._last_round + self.schedule.min_gap)
            if start > now:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), start - now)
                continue
            self._last_round = now
            await self._round(now)

    async def _round(self, now: float) -> None:
        due = [item for item in self.watched.values() if item.next_look <= now]
        room = -len(due) % PAGE
        gap = self.schedule.min_gap
        others = [
            item
            for item in self.watched.values()
            if item.next_look > now
            and now - item.since >= gap
            and now - item.last_look >= gap
        ]
        others.sort(key=lambda item: item.next_look)
        batch = due + others[:room]
        if len(batch) == 1:
            calls = [await self._get(batch[0].call_id)]
        else:
            calls = []
            for start in range(0, len(batch), PAGE):
                ids = [item.call_id for item in batch[start : start + PAGE]]
                calls += await self._list(ids)
        self._take(batch, calls)

    def _take(self, batch: list[Watched], calls: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        by_id = {call["call_id"]: call for call in calls}
        for item in batch:
            call = by_id.get(item.call_id)
            if call is not None and call["call_status"] in FINAL:
                item.done.set_result(call)
                del self.watched[item.call_id]
                continue
            item.last_look = now
            item.next_look = now + self.schedule.gap(now - item.since)

    async def _get(self, call_id: str) -> dict[str, Any]:
        self.requests["get-call"] += 1
        response = await send(self.http, "GET", f"/v2/get-call/{call_id}")
        return response.json()

    async def _list(self, ids: list[str]) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "filter_criteria": {"call_id": {"type": "enum", "op": "in", "value": ids}},
            "limit": PAGE,
        }
        items: list[dict[str, Any]] = []
        while True:
            self.requests["list-calls"] += 1
            page = (await send(self.http, "POST", "/v3/list-calls", json=body)).json()
            items += page["items"]
            if not page.get("has_more"):
                return items
            body["pagination_key"] = page["pagination_key"]


async def send(
    http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """Send, retrying 429 and 5xx after Retry-After or a growing pause.

    A 429 means nothing was created, so it is always safe to send again; on a
    busy machine a few in a row happen when creations bunch up on the way.
    """
    for attempt in range(10):
        response = await http.request(method, path, **kwargs)
        if response.status_code != 429 and response.status_code < 500:
            response.raise_for_status()
            return response
        await asyncio.sleep(
            float(response.headers.get("retry-after", 0.5 * 2**attempt))
        )
    response.raise_for_status()
    return response


async def run(
    base_url: str,
    api_key: str,
    from_number: str,
    contacts: str,
    cps: float,
    min_gap_seconds: float,
) -> dict[str, Any]:
    """Dispatch every number of the list at `cps`, follow every call to its end.

    Returns:
        Wall and CPU seconds from reading the list to the last final status,
        calls placed, final statuses, and the polling requests sent.
    """
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as http:
        poller = Poller(http, Schedule.scaled(min_gap_seconds))
        wall, cpu = time.perf_counter(), time.process_time()
        numbers = read_numbers(contacts)
        pacer = Pacer(cps)
        calls = []
        for number in numbers:
            await pacer.turn()
            calls.append(asyncio.create_task(call(http, poller, from_number, number)))
        finals = await asyncio.gather(*calls)
        return {
            "wall_seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu,
            "calls": len(finals),
            "statuses": dict(collections.Counter(c["call_status"] for c in finals)),
            "poll_requests": dict(poller.requests),
        }


class Pacer:
    """Even turns, 1/cps apart, and never cps of them within WINDOW seconds.

    Spaced exactly 1/cps apart, cps + 1 creations span exactly one second, and a
    few milliseconds of network jitter put them in one second at Retell: a 429.
    """

    WINDOW = 1.02

    def __init__(self, cps: float) -> None:
        self.cps = cps
        self.next = time.monotonic()
        self.recent: collections.deque[float] = collections.deque()

    async def turn(self) -> None:
        while True:
            now = time.monotonic()
            while self.recent and now - self.recent[0] >= self.WINDOW:
                self.recent.popleft()
            wait = self.next - now
            if len(self.recent) >= self.cps:
                wait = max(wait, self.recent[0] + self.WINDOW - now)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self.recent.append(now)
        self.next = max(self.next, now) + 1 / self.cps


async def call(
    http: httpx.AsyncClient, poller: Poller, from_number: str, number: str
) -> dict[str, Any]:
    body = {
        "from_number": from_number,
        "to_number": number,
        "idempotency_key": uuid.uuid4().hex,
    }
    created = (await send(http, "POST", "/v2/create-phone-call", json=body)).json()
    return await poller.wait(created["call_id"])


def read_numbers(path: str) -> list[str]:
    with open(path, newline="") as handle:
        return [row["Phone"] for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="key_sandbox_0000")
    parser.add_argument("--contacts", required=True, help="CSV with a Phone column")
    parser.add_argument("--from-number", default="+16505550101")
    parser.add_argument("--cps", type=float, default=16)
    parser.add_argument("--min-gap-seconds", type=float, default=2.0)
    args = parser.parse_args()
    figures = asyncio.run(
        run(
            args.base_url,
            args.api_key,
            args.from_number,
            args.contacts,
            args.cps,
            args.min_gap_seconds,
        )
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
