"""A Retell-compatible HTTP API sandbox for rehearsals, tests and benchmarks.

It serves Retell's call, phone-number, agent, LLM and concurrency endpoints from
memory, with accelerated simulated time, deterministic call outcomes, Retell's
rate and concurrency limits, signed call webhooks and injectable faults, so that
campaigns, tests and the official `retell-sdk` client run over real HTTP without
dialling anyone.

The sandbox imports nothing from the rest of prefect_retell, so it cannot share
the client's mistakes.

Examples:
    >>> from prefect_retell.sandbox import (
    ...     DEFAULT_SANDBOX_API_KEY, Fault, Outcome, SandboxConfig, WebhookFault,
    ...     serve_sandbox,
    ... )
    >>> with serve_sandbox(SandboxConfig(time_scale=0.01)) as server:
    ...     server.sandbox.set_outcome("+14155550170", Outcome(kind="no_answer"))
    ...     server.sandbox.add_fault(Fault(endpoint="get-call", action="error"))
    ...     server.sandbox.set_webhook_url("http://127.0.0.1:8000/webhooks")
    ...     server.sandbox.add_fault(
    ...         WebhookFault(event="call_ended", action="duplicate")
    ...     )
    ...     # point a client at server.base_url with DEFAULT_SANDBOX_API_KEY
"""

from .config import DEFAULT_SANDBOX_API_KEY, SandboxConfig
from .faults import Fault, WebhookFault
from .outcomes import Outcome
from .server import SandboxServer, run_sandbox, serve_sandbox
from .state import Sandbox

__all__ = [
    "DEFAULT_SANDBOX_API_KEY",
    "Fault",
    "Outcome",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "WebhookFault",
    "run_sandbox",
    "serve_sandbox",
]
