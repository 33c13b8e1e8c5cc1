"""Serving an ASGI app on a socket of our own: shared by the sandbox and the receiver.

Both bind their socket before uvicorn starts, so that a busy port fails at once
and port 0 gives a free port whose URL is known before the first request. This
module knows nothing of Retell, so the sandbox can use it and still share no code
with the client it is meant to test.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

__all__ = ["bind", "start_in_thread", "uvicorn_config", "url_of"]


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host` and `port` (0 for any free port).

    Raises:
        OSError: The address is in use or cannot be bound.
    """
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that
    # say they are TCP, and with it on every answer waited ~40 ms for an ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_of(host: str, sock: socket.socket) -> str:
    """The http:// root URL of a bound socket."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def uvicorn_config(app: object, *, graceful_shutdown_seconds: float) -> uvicorn.Config:
    """A quiet uvicorn configuration with the app's lifespan on.

    Args:
        app: The ASGI app; its lifespan starts and stops its background work.
        graceful_shutdown_seconds: How long open requests may finish at shutdown.
    """
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="h11",
        ws="none",
        loop="asyncio",
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )


def start_in_thread(
    server: uvicorn.Server, sock: socket.socket, *, name: str, timeout_seconds: float
) -> tuple[threading.Thread, bool]:
    """Run `server` on `sock` in a daemon thread and wait until it accepts.

    Returns:
        The thread, and whether the server started in time; when it did not, the
        caller stops it and says what failed.
    """
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            return thread, False
        time.sleep(0.01)
    return thread, True
