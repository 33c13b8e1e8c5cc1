"""Running the sandbox: in a background thread for tests, or in the foreground.

Both ways bind the socket before uvicorn starts, so a busy port fails in the
caller's thread with a plain `OSError`, and port 0 picks a free port whose URL is
known before the first request. uvicorn runs without touching the process's
logging configuration (its loggers propagate to whatever the caller set up).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from prefect_retell._serving import bind, start_in_thread, url_of, uvicorn_config

from .app import create_app
from .config import SandboxConfig
from .state import Sandbox

logger = logging.getLogger(__name__)

_INCOMPLETE_RESPONSE_MESSAGE = "ASGI callable returned without completing response."


class _DroppedResponseFilter(logging.Filter):
    """Hides uvicorn's error line for responses a "drop" fault cut on purpose.

    Only the sandbox's drop fault leaves a response unfinished, so the line would
    otherwise be noise in every rehearsal of a lost answer.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _INCOMPLETE_RESPONSE_MESSAGE


class _UvicornServer(uvicorn.Server):
    """A uvicorn server that also tells the app when shutdown begins."""

    def __init__(self, config: uvicorn.Config, closing: threading.Event) -> None:
        super().__init__(config)
        self.closing = closing

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.closing.set()
        super().handle_exit(sig, frame)


class SandboxServer:
    """A sandbox served over HTTP by uvicorn in a background thread.

    Prefer `serve_sandbox`, which starts and stops it for you.

    Args:
        sandbox: The world to serve.
        host: Interface to bind; keep the loopback default, because the control
            endpoints need no key.
        port: Port to bind; 0 picks a free one.
        startup_timeout_seconds: How long `start` waits for the server to listen.

    Attributes:
        sandbox: The served world; steer it directly from Python.
        base_url: Root URL of the API, e.g. "http://127.0.0.1:54321".
    """

    def __init__(
        self,
        sandbox: Sandbox,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout_seconds: float = 10.0,
    ) -> None:
        _warn_if_exposed(host)
        self.sandbox = sandbox
        self._socket = bind(host, port)
        self.base_url = url_of(host, self._socket)
        sandbox.base_url = self.base_url
        self._closing = threading.Event()
        app = create_app(sandbox, self._closing)
        self._server = _UvicornServer(_uvicorn_config(app), self._closing)
        self._thread: threading.Thread | None = None
        self._startup_timeout_seconds = startup_timeout_seconds

    def start(self) -> SandboxServer:
        """Start serving and return once the server accepts connections.

        Raises:
            RuntimeError: If the server did not start in time.
        """
        self._thread, started = start_in_thread(
            self._server,
            self._socket,
            name="retell-sandbox",
            timeout_seconds=self._startup_timeout_seconds,
        )
        if not started:
            self.stop()
            raise RuntimeError(
                f"The Retell sandbox did not start at {self.base_url}; "
                "see the uvicorn log for the cause."
            )
        logger.info("Retell sandbox listening at %s", self.base_url)
        return self

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Stop serving; answers still hanging on a fault are cut short.

        Args:
            timeout_seconds: How long to wait for a graceful shutdown before
                closing connections forcibly.
        """
        self._closing.set()
        self._server.should_exit = True
        if self._thread is None:
            self._socket.close()
            return
        self._thread.join(timeout_seconds)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_seconds)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[SandboxServer]:
    """Serve a fresh sandbox in a background thread for the duration of a block.

    Args:
        config: How the sandbox behaves; defaults to `SandboxConfig()`.
        host: Interface to bind (loopback by default).
        port: Port to bind; 0 picks a free one.

    Yields:
        The running server; its `base_url` goes to the client under test.

    Examples:
        >>> with serve_sandbox(SandboxConfig(time_scale=0.01)) as server:
        ...     client = retell.Retell(
        ...         api_key=DEFAULT_SANDBOX_API_KEY, base_url=server.base_url
        ...     )
    """
    server = SandboxServer(Sandbox(config), host, port)
    with server:
        yield server


def run_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve a sandbox in the foreground until Ctrl-C or SIGTERM.

    Ctrl-C returns normally. SIGTERM shuts down just as gracefully, after which
    uvicorn re-raises it, so the process ends with the usual status 143.

    Args:
        config: How the sandbox behaves; defaults to `SandboxConfig()`.
        host: Interface to bind (loopback by default).
        port: Port to bind; 0 picks a free one.
        on_ready: Called once with the base URL when the server listens.
    """
    _warn_if_exposed(host)
    sandbox = Sandbox(config)
    sock = bind(host, port)
    sandbox.base_url = url_of(host, sock)
    closing = threading.Event()
    server = _UvicornServer(_uvicorn_config(create_app(sandbox, closing)), closing)
    try:
        asyncio.run(_serve_until_stopped(server, sock, sandbox.base_url, on_ready))
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled; the shutdown was already clean.
        pass
    finally:
        closing.set()


async def _serve_until_stopped(
    server: uvicorn.Server,
    sock: socket.socket,
    base_url: str,
    on_ready: Callable[[str], None] | None,
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        logger.info("Retell sandbox listening at %s", base_url)
        if on_ready is not None:
            on_ready(base_url)
    await task


def _uvicorn_config(app: object) -> uvicorn.Config:
    filters = logging.getLogger("uvicorn.error").filters
    if not any(isinstance(item, _DroppedResponseFilter) for item in filters):
        logging.getLogger("uvicorn.error").addFilter(_DroppedResponseFilter())
    # Hanging answers end when the server closes; the grace only bounds stragglers.
    return uvicorn_config(app, graceful_shutdown_seconds=2)


def _warn_if_exposed(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logger.warning(
            "The Retell sandbox binds %s: its /sandbox/ control endpoints need no "
            "key, so anyone who can reach this interface can steer it.",
            host,
        )
