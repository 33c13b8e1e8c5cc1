"""Shared fixtures: one Prefect test server and one Retell sandbox per session."""

from __future__ import annotations

import os
import tempfile

# Prefect's embedded server otherwise tries to reach the network at start.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Campaigns commit each contact's result to Prefect's local result storage; the
# tests keep theirs apart from the developer's own runs.
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="prefect-retell-")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from prefect_retell.blocks import RetellCredentials  # noqa: E402
from prefect_retell.sandbox import SandboxConfig, SandboxServer, serve_sandbox  # noqa: E402

DATA = Path(__file__).parent / "data"

# A simulated second lasts 5 ms: a two-minute call is over in 0.6 s.
TIME_SCALE = 0.005


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A throwaway Prefect API with its own database, shared by the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """A Retell sandbox on 127.0.0.1, shared by the session."""
    with serve_sandbox(SandboxConfig(time_scale=TIME_SCALE)) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, with calls, faults, outcomes and stats cleared."""
    sandbox_server.sandbox.reset()
    return sandbox_server


@pytest.fixture
def credentials(sandbox: SandboxServer) -> RetellCredentials:
    """Credentials for the sandbox."""
    return RetellCredentials(
        api_key=sandbox.sandbox.config.api_key, base_url=sandbox.base_url
    )


# A key with a recognisable secret part, to look for wherever it must not appear.
SECRET_API_KEY = "key_fx_SECRET123"


@pytest.fixture(scope="session")
def keyed_sandbox_server() -> Iterator[SandboxServer]:
    """A second sandbox that accepts only SECRET_API_KEY."""
    config = SandboxConfig(api_key=SECRET_API_KEY, time_scale=TIME_SCALE)
    with serve_sandbox(config) as server:
        yield server


@pytest.fixture
def keyed_sandbox(keyed_sandbox_server: SandboxServer) -> SandboxServer:
    """The keyed sandbox, with calls, faults, outcomes and stats cleared."""
    keyed_sandbox_server.sandbox.reset()
    return keyed_sandbox_server
