"""Running the sandbox: the background server and the foreground runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest

from prefect_retell.sandbox import SandboxConfig, serve_sandbox

_RUNNER = textwrap.dedent(
    """
    from prefect_retell.sandbox import run_sandbox

    run_sandbox(on_ready=lambda url: print("READY", url, flush=True))
    print("STOPPED", flush=True)
    """
)


def test_serve_sandbox_stops_and_frees_the_port():
    """After the block the server no longer accepts connections."""
    with serve_sandbox(SandboxConfig()) as server:
        assert httpx.get(f"{server.base_url}/sandbox/health").status_code == 200
        url = server.base_url

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/sandbox/health", timeout=1)


def test_busy_port_fails_in_the_caller():
    """Binding a port in use raises OSError before any thread starts."""
    with serve_sandbox() as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError), serve_sandbox(port=port):
            pass


def test_run_sandbox_serves_until_ctrl_c():
    """run_sandbox reports its URL, serves, and returns cleanly on SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-c", _RUNNER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ready = process.stdout.readline().split()
        health = httpx.get(f"{ready[1]}/sandbox/health", timeout=5)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
    finally:
        process.kill()

    assert ready[0] == "READY"
    assert health.json() == {"status": "ok"}
    assert rest.strip() == "STOPPED"
    assert process.returncode == 0
