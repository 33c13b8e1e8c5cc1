"""Fixtures: one sandbox server per session, reset before every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from prefect_retell.sandbox import (
    DEFAULT_SANDBOX_API_KEY,
    Sandbox,
    SandboxConfig,
    SandboxServer,
    serve_sandbox,
)

from .support import SEEDED_CPS, TIME_SCALE


@pytest.fixture(scope="session")
def server() -> Iterator[SandboxServer]:
    """The session's sandbox server on a free loopback port."""
    with serve_sandbox(SandboxConfig(time_scale=TIME_SCALE)) as running:
        yield running


@pytest.fixture
def sandbox(server: SandboxServer) -> Iterator[Sandbox]:
    """The session sandbox, reset and with its seeded CPS, for one test."""
    server.sandbox.reset()
    for number, cps in SEEDED_CPS.items():
        server.sandbox.set_cps(number, cps)
    yield server.sandbox
    server.sandbox.reset()


@pytest.fixture
async def client(
    server: SandboxServer, sandbox: Sandbox
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that talks to the session sandbox with the sandbox key."""
    headers = {"Authorization": f"Bearer {DEFAULT_SANDBOX_API_KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        yield http


@pytest.fixture
def own_server() -> Iterator[Callable[..., SandboxServer]]:
    """A factory of extra servers with their own configuration, stopped after."""
    contexts: list[AbstractContextManager[SandboxServer]] = []

    def start(**config: Any) -> SandboxServer:
        context = serve_sandbox(SandboxConfig(time_scale=TIME_SCALE, **config))
        contexts.append(context)
        return context.__enter__()

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)
