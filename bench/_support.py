"""What the benchmarks share: a sandbox in its own process, contact lists, meters.

The sandbox runs in a separate process so that its own work (rendering calls,
answering lists) is not counted in the CPU seconds and memory of what is measured.
Only this module imports the sandbox; the baseline script imports nothing of
prefect_retell.
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

TELNYX = "+16505550101"  # up to 16 CPS, the most any provider allows
CUSTOM = "+16505550102"  # custom telephony: up to concurrency / 20 CPS
SANDBOX_KEY = "key_sandbox_0000"
RETELL_MIN_GAP_SECONDS = 2.0  # PollSchedule's shortest gap in Retell's real time


def quiet_prefect(home: str | None = None) -> None:
    """Settings for Prefect's embedded server, before Prefect is imported.

    A fresh PREFECT_HOME per run gives a fresh database, so limits left by an
    earlier run cannot change this one.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if home:
        os.environ["PREFECT_HOME"] = home


def warm_up_prefect() -> float:
    """Start Prefect's embedded server with a trivial flow; return the seconds."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        return None

    started = time.perf_counter()
    warm_up()
    return time.perf_counter() - started


# -- the sandbox, in its own process ------------------------------------------------


def _serve(config: dict[str, Any], ready: Any) -> None:
    from prefect_retell.sandbox import SandboxConfig, run_sandbox

    run_sandbox(SandboxConfig(**config), port=0, on_ready=ready.put)


@contextlib.contextmanager
def sandbox_process(**config: Any) -> Iterator[Sandbox]:
    """Serve a sandbox on 127.0.0.1 from a child process for the block."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(target=_serve, args=(config, ready), daemon=True)
    process.start()
    try:
        base_url = ready.get(timeout=60)
        with Sandbox(base_url, process.pid) as sandbox:
            yield sandbox
    finally:
        process.terminate()
        process.join(10)


class Sandbox:
    """The control routes of a running sandbox, and its process id."""

    def __init__(self, base_url: str, pid: int | None = None) -> None:
        self.base_url = base_url
        self.pid = pid
        self._http = httpx.Client(base_url=base_url, timeout=60)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def reset(self) -> None:
        self._http.post("/sandbox/reset").raise_for_status()

    def set_cps(self, number: str, cps: int) -> None:
        url = f"/sandbox/phone-numbers/{number}/cps"
        self._http.post(url, json={"cps": cps}).raise_for_status()

    def set_outcomes(self, outcomes: dict[str, dict[str, Any]]) -> None:
        self._http.post("/sandbox/outcomes", json=outcomes).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/sandbox/stats")
        response.raise_for_status()
        return response.json()


@contextlib.contextmanager
def webhook_receiver(api_key: str = SANDBOX_KEY) -> Iterator[str]:
    """Serve the project's webhook receiver in this process; yield its URL.

    It sends the call events to the Prefect API the flows of this process use:
    PREFECT_API_URL when set, else Prefect's embedded server, started here if no
    flow started it yet (Prefect keeps one per process, so flows and event
    subscriptions reach the same one).
    """
    from prefect.settings import PREFECT_API_URL

    from prefect_retell.receiver import WebhookReceiverServer, create_webhook_app

    api_url = PREFECT_API_URL.value()
    if not api_url:
        from prefect.server.api.server import SubprocessASGIServer

        embedded = SubprocessASGIServer()
        embedded.start()
        api_url = embedded.api_url
    app = create_webhook_app(api_key, prefect_api_url=api_url)
    with WebhookReceiverServer(app, host="127.0.0.1") as server:
        yield server.url


def api_requests(stats: dict[str, Any]) -> dict[str, int]:
    """Requests to Retell's routes by route, from the sandbox's stats."""
    return dict(stats["requests"])


# -- contact lists --------------------------------------------------------------------


def us_numbers(count: int) -> list[str]:
    """`count` distinct US numbers in the fictional 555-0100 to 555-0199 range."""
    import phonenumbers

    numbers: list[str] = []
    for area in range(201, 990):
        if len(numbers) >= count:
            break
        parsed = phonenumbers.parse(f"+1{area}5550100")
        if phonenumbers.region_code_for_number(parsed) != "US":
            continue
        if not phonenumbers.is_valid_number(parsed):
            continue
        numbers += [f"+1{area}555{line:04d}" for line in range(100, 200)]
    if len(numbers) < count:
        raise ValueError(f"only {len(numbers)} fictional US numbers, not {count}")
    return numbers[:count]


def write_contacts(path: Path, numbers: Sequence[str]) -> Path:
    """A CSV contact list: the numbers in E.164 and a first name."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Phone", "First Name"])
        for index, number in enumerate(numbers):
            writer.writerow([number, f"Guest {index}"])
    return path


# -- meters -------------------------------------------------------------------------


_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int, exclude: Sequence[int] = ()) -> float:
    """CPU seconds used so far by a process's live descendants (not the process).

    Reads /proc, so it works on Linux only; Prefect's embedded server runs as
    such a descendant of the flow's process. Processes in `exclude` (the
    sandbox) are left out with their own descendants.
    """
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child, parent = int(entry.name), int(fields[1])
        children.setdefault(parent, []).append(child)
        cpu[child] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, todo = 0.0, list(children.get(pid, []))
    while todo:
        current = todo.pop()
        if current in exclude:
            continue
        total += cpu.get(current, 0.0)
        todo += children.get(current, [])
    return total


def descendants_peak_rss_mb(pid: int, exclude: Sequence[int] = ()) -> dict[int, float]:
    """The highest resident memory of each live descendant of `pid`, in MB."""
    peaks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if _is_descendant(int(entry.name), pid, exclude) and "VmHWM" in fields:
            peaks[int(entry.name)] = int(fields["VmHWM"].split()[0]) / 1024
    return peaks


def _is_descendant(child: int, pid: int, exclude: Sequence[int]) -> bool:
    while child > 1:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            return False
        child = int(stat.rsplit(")", 1)[1].split()[1])
        if child in exclude:
            return False
        if child == pid:
            return True
    return False


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """This process's highest resident memory so far, in MB."""
    return _status_kb("VmHWM") / 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is missing from /proc/self/status")


class RssSampler:
    """Samples this process's resident memory in a thread; keeps the highest."""

    def __init__(self, interval_seconds: float = 0.1) -> None:
        self.interval_seconds = interval_seconds
        self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.peak_mb = max(self.peak_mb, rss_mb())


@dataclass
class Meter:
    """Wall and CPU seconds over a block, for this process and its children."""

    exclude: Sequence[int] = ()
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    children_cpu_seconds: float = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[Meter]:
        wall, cpu = time.perf_counter(), time.process_time()
        children = process_tree_cpu_seconds(os.getpid(), self.exclude)
        try:
            yield self
        finally:
            self.wall_seconds = time.perf_counter() - wall
            self.cpu_seconds = time.process_time() - cpu
            after = process_tree_cpu_seconds(os.getpid(), self.exclude)
            self.children_cpu_seconds = after - children


# -- figures and tables -------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure, with its target when there is one.

    `met` is None when there is no target or nothing was measured.
    """

    bench: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def figures_table(figures: Sequence[Figure]) -> str:
    rows = [
        (
            figure.bench,
            figure.name,
            figure.value,
            figure.target or "-",
            {True: "yes", False: "**no**", None: "-"}[figure.met],
        )
        for figure in figures
    ]
    return markdown_table(["bench", "figure", "measured", "target", "met"], rows)


def write_figures(path: str | None, figures: Sequence[Figure]) -> None:
    """Write the figures as JSON for `python -m bench`, when asked to."""
    if path:
        Path(path).write_text(json.dumps([asdict(figure) for figure in figures]))
