"""Screenshots of prefect-retell in the Prefect UI, taken in headless Chromium.

Starts everything it needs on 127.0.0.1, in a temporary PREFECT_HOME: a Prefect
server, a Retell sandbox, a process work pool and a worker. It registers the
RetellCredentials block type, saves a block for the sandbox, and deploys
`deployments/prefect.yaml`. Then it runs both chains of the example:

1. `export-due-contacts` writes a contact list; its completion starts
   `retell-campaign-after-export` through the deployment trigger, which calls
   the list on the sandbox;
2. `export-due-contacts-and-call` writes the same contacts and requests a run of
   `retell-campaign` itself; that run must finish without calling anyone again.

Once the first campaign has finished, it opens the UI in Debian's Chromium
(driven by Playwright, which never downloads a browser here) and saves:

- `block-form.png`: the saved RetellCredentials block's form, each field described;
- `campaign-run-form.png`: the campaign deployment's custom run form, whole;
- `campaign-artifacts.png`: the finished campaign run and its three artifacts;
- `campaign-results-table.png`, `campaign-summary.png`, `campaign-progress.png`:
  the results table, the summary and the progress, each on its own page.

Run from the repository root (about a minute on a 2-core machine):

    .venv/bin/pip install -e '.[ui]'
    .venv/bin/python bench/ui_screenshots.py

Chromium must be at /usr/bin/chromium (`apt-get install -y chromium`); run as
root, the script installs it itself. Every page is checked for the texts it must
show before its screenshot is taken, so a spinner or an error page fails the run
instead of ending up in the README. The server, worker and flow-run processes
end with the script; the temporary PREFECT_HOME, logs included, is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's
# hosts, which this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POOL = "retell-pool"
BLOCK_NAME = "retell"
EXPORT_DEPLOYMENT = "export-due-contacts/export-due-contacts"
EXPORT_IN_FLOW_DEPLOYMENT = "export-due-contacts/export-due-contacts-and-call"
CHAINED_DEPLOYMENT = "retell-campaign-after-export"
FORM_DEPLOYMENT = "retell-campaign"
VIEWPORT = {"width": 1280, "height": 860}


class BenchError(RuntimeError):
    """A step of the browser check failed; the message says which and why."""


def main() -> int:
    args = _parse_args()
    try:
        _check_chromium()
        _check_playwright()
        with tempfile.TemporaryDirectory(prefix="prefect-retell-ui-") as home:
            try:
                _run(Path(home), args.out.resolve(), args.timeout)
            except BenchError:
                _print_log_tails(Path(home))
                raise
    except BenchError as exc:
        print(f"ui_screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_log_tails(home: Path, lines: int = 40) -> None:
    """Show the end of the server's and worker's logs before they are removed."""
    for log in sorted(home.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {log.name} ---", *tail, sep="\n", file=sys.stderr)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "screenshots",
        help="folder for the PNG files (default: docs/screenshots)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for each step: server start, flow runs (default: 300)",
    )
    return parser.parse_args()


def _check_chromium() -> None:
    """Use Debian's Chromium; install it when run as root, else say how."""
    if CHROMIUM.exists():
        return
    install = "apt-get update && apt-get install -y chromium"
    if os.geteuid() != 0:
        raise BenchError(f"{CHROMIUM} is missing; install it with: sudo {install}")
    print(f"{CHROMIUM} is missing; installing Debian's chromium package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    if not CHROMIUM.exists():
        raise BenchError(f"the chromium package did not install {CHROMIUM}")


def _check_playwright() -> None:
    try:
        import PIL  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise BenchError(
            f"{exc.name} is missing; install the ui extra with "
            "`.venv/bin/pip install -e '.[ui]'` (no browser download is needed: "
            f"the script drives {CHROMIUM})"
        ) from exc


def _run(home: Path, out: Path, timeout: float) -> None:
    """Start everything, run the chained campaign, take the screenshots."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    # Set before prefect is imported: its settings are read from the environment.
    os.environ.update(_prefect_env(home, api_url))
    from prefect_retell.sandbox import SandboxConfig, serve_sandbox

    with contextlib.ExitStack() as stack:
        print(f"Prefect server on {api_url}, PREFECT_HOME {home}")
        stack.enter_context(
            _background(
                [*_prefect_cli(), "server", "start", "--host", "127.0.0.1"]
                + ["--port", str(port)],
                home / "server.log",
            )
        )
        _wait_for(lambda: _healthy(api_url), timeout, "the Prefect server to start")
        # Calls last 0.2 to 1.5 s: a campaign of a few numbers is over in seconds.
        sandbox = stack.enter_context(serve_sandbox(SandboxConfig(time_scale=0.01)))
        print(f"Retell sandbox on {sandbox.base_url}")
        _prepare(sandbox, home)
        stack.enter_context(
            _background(
                [*_prefect_cli(), "worker", "start", "--pool", POOL],
                home / "worker.log",
            )
        )
        campaign_run = _run_chain(home, timeout)
        _run_in_flow_chain(home, sandbox, timeout)
        _screenshots(api_url.removesuffix("/api"), campaign_run, out, timeout)
    print(f"Screenshots in {out}")


def _prefect_env(home: Path, api_url: str) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
        # The worker looks for scheduled runs every 2 s instead of 15.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }


def _prefect_cli() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _background(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """Run a command in its own process group; end that group on the way out.

    The group holds what the command started (the worker's flow-run processes),
    and nothing else: it is ended by its own id, never by a name.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _end_group(process)


def _end_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    raise BenchError(f"gave up after {timeout:.0f} s waiting for {what}")


def _cli(*args: str) -> None:
    """Run a prefect command; fail with its output if it fails."""
    done = subprocess.run(
        [*_prefect_cli(), *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(
            f"`prefect {' '.join(args)}` exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def _prepare(sandbox: Any, home: Path) -> None:
    """Register the block type, save a block, create the pool, deploy."""
    from prefect_retell import RetellCredentials

    _cli("block", "register", "-m", "prefect_retell")
    RetellCredentials(
        api_key=sandbox.sandbox.config.api_key, base_url=sandbox.base_url
    ).save(BLOCK_NAME, overwrite=True)
    _cli("work-pool", "create", POOL, "--type", "process")
    _cli(
        "--no-prompt",
        "deploy",
        "--prefect-file",
        "deployments/prefect.yaml",
        "--all",
    )
    print("Block saved, deployments created")


def _run_chain(home: Path, timeout: float) -> Any:
    """Run the export; wait for the campaign its completion triggers to finish.

    The export writes into the temporary folder, not the repository: the trigger
    passes the path on from the run's own parameters.
    """
    _run_export(EXPORT_DEPLOYMENT, home / "exports" / "due-contacts.csv", timeout)
    campaign = _wait_for_campaign(CHAINED_DEPLOYMENT, timeout)
    print(f"Campaign run {campaign.name}, started by the trigger, completed")
    return campaign


def _run_in_flow_chain(home: Path, sandbox: Any, timeout: float) -> None:
    """Run the export that requests the campaign itself; check nobody is called twice.

    The list holds the same contacts as the one the trigger's campaign has just
    called, from the same number, so it is the same campaign: the requested run
    must finish without a new call.
    """
    calls_before = len(sandbox.sandbox.stats()["calls"])
    _run_export(EXPORT_IN_FLOW_DEPLOYMENT, home / "exports" / "in-flow.csv", timeout)
    campaign = _wait_for_campaign(FORM_DEPLOYMENT, timeout)
    calls_after = len(sandbox.sandbox.stats()["calls"])
    if calls_after != calls_before:
        raise BenchError(
            f"the in-flow chain placed {calls_after - calls_before} new calls to "
            "contacts the chained campaign had already called"
        )
    outcomes = [row["outcome"] for row in _results_table(campaign.id)]
    if outcomes != ["called"] * calls_before:
        raise BenchError(
            f"the requested campaign reported {outcomes}, not the {calls_before} "
            "contacts the chained campaign called"
        )
    print(
        f"Campaign run {campaign.name}, requested by the export, placed no call again"
    )


def _results_table(flow_run_id: Any) -> list[dict[str, Any]]:
    """The rows of a campaign run's results table artifact."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    [table] = [artifact for artifact in artifacts if artifact.type == "table"]
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    return data


def _run_export(deployment: str, output: Path, timeout: float) -> None:
    from prefect.deployments import run_deployment

    export = run_deployment(
        deployment,
        parameters={"output": str(output)},
        timeout=timeout,
        poll_interval=2,
    )
    if not export.state or not export.state.is_completed():
        raise BenchError(
            f"{deployment} ended {export.state}; see the worker's log below"
        )
    print(f"{deployment} run {export.name} completed")


def _wait_for_campaign(deployment: str, timeout: float) -> Any:
    campaign = _wait_for(
        lambda: _finished_run(deployment),
        timeout,
        f"a finished run of {deployment}",
    )
    if not campaign.state.is_completed():
        raise BenchError(
            f"{deployment} run ended {campaign.state}; see the worker's log below"
        )
    return campaign


def _finished_run(deployment: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[deployment])
            )
        )
    return next((run for run in runs if run.state and run.state.is_final()), None)


@dataclass(frozen=True)
class Shot:
    """One screenshot: where to go, what to click, and what must be on the page."""

    name: str
    path: str
    expected: tuple[str, ...]
    click: str | None = None
    whole_page: bool = False


def _screenshots(ui_url: str, campaign_run: Any, out: Path, timeout: float) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            for shot in _shots(campaign_run):
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(timeout * 1000)
                _shoot(page, ui_url, shot, out / shot.name)
                page.close()
        finally:
            browser.close()


def _shots(campaign_run: Any) -> list[Shot]:
    """The pages to take, with the ids they need read from the server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(
            f"retell-outbound-campaign/{FORM_DEPLOYMENT}"
        )
        block = client.read_block_document_by_name(
            BLOCK_NAME, block_type_slug="retell-credentials"
        )
        artifacts = client.read_artifacts()
    by_type = {
        artifact.type: artifact
        for artifact in artifacts
        if artifact.flow_run_id == campaign_run.id
    }
    missing = {"table", "markdown", "progress"} - set(by_type)
    if missing:
        raise BenchError(
            f"the campaign run has no {', '.join(sorted(missing))} artifact"
        )
    return [
        Shot(
            "block-form.png",
            f"/blocks/block/{block.id}/edit",
            ("API key", "sent as a bearer token", "Base URL"),
        ),
        Shot(
            "campaign-run-form.png",
            f"/deployments/deployment/{deployment.id}/run",
            ("Path of a CSV", "from_number", "stop_calls_on_timeout"),
            whole_page=True,
        ),
        Shot(
            "campaign-artifacts.png",
            f"/runs/flow-run/{campaign_run.id}",
            ("retell-campaign-results", "retell-campaign-summary"),
            click="Artifacts",
            whole_page=True,
        ),
        Shot(
            "campaign-results-table.png",
            f"/artifacts/artifact/{by_type['table'].id}",
            ("outcome", "disconnection_reason"),
        ),
        Shot(
            "campaign-summary.png",
            f"/artifacts/artifact/{by_type['markdown'].id}",
            ("Outcome", "Total talk time"),
        ),
        Shot(
            "campaign-progress.png",
            f"/artifacts/artifact/{by_type['progress'].id}",
            ("100",),
        ),
    ]


def _shoot(page: Any, ui_url: str, shot: Shot, path: Path) -> None:
    """Open a page, wait for every expected text, and save a small screenshot."""
    page.goto(ui_url + shot.path)
    if shot.click:
        page.get_by_text(shot.click, exact=True).first.click()
    for text in shot.expected:
        page.get_by_text(text, exact=False).first.wait_for(state="visible")
    page.wait_for_load_state("networkidle")
    if shot.whole_page:
        _fit_viewport(page)
    page.screenshot(path=str(path))
    _shrink(path)
    print(f"Saved {path.name} ({path.stat().st_size // 1024} KB) from {shot.path}")


# The UI scrolls inside a container, so a "full page" screenshot stops at the
# window's edge: grow the window to the container's full height instead.
_CONTENT_HEIGHT = """() => {
  let height = document.documentElement.scrollHeight;
  for (const element of document.querySelectorAll("*")) {
    const overflow = getComputedStyle(element).overflowY;
    if ((overflow === "auto" || overflow === "scroll")
        && element.scrollHeight > element.clientHeight) {
      const top = element.getBoundingClientRect().top;
      height = Math.max(height, top + element.scrollHeight);
    }
  }
  return Math.ceil(height);
}"""
_MAX_HEIGHT = 5000


def _fit_viewport(page: Any) -> None:
    height = min(page.evaluate(_CONTENT_HEIGHT), _MAX_HEIGHT)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(500)


def _shrink(path: Path) -> None:
    """Reduce a screenshot to 128 colours: the UI has few, and the file a third."""
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(
            colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    reduced.save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
