"""Prefect tasks for Retell: bind agents to a number, place a call, follow it.

Creating a call and waiting for it are separate tasks on purpose: a task retry
re-runs the whole function, and a retry of "create then wait" after a failed poll
would dial the person again. Prefect task retries stay off for `create_call`; the
client already retries what is safe to retry, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_retell.blocks import RetellCredentials
from prefect_retell.client import RetellClient
from prefect_retell.errors import (
    RetellAPIError,
    RetellCallTimeoutError,
    RetellConfigurationError,
    RetellConnectionError,
    RetellRateLimitError,
    RetellServerError,
)
from prefect_retell.models import AgentWeight, PhoneCall, PhoneCallRequest, PhoneNumber
from prefect_retell.monitoring import CallEventWatcher
from prefect_retell.privacy import mask_phone_number

__all__ = [
    "await_call_event",
    "bind_agents",
    "create_call",
    "follow_call",
    "follow_call_by_events",
    "get_call",
    "place_call",
    "shared_client",
    "wait_for_call",
]

AgentsSpec = str | Sequence[AgentWeight | dict[str, Any] | str] | None

_shared: ContextVar[tuple[RetellCredentials, RetellClient] | None] = ContextVar(
    "prefect_retell_shared_client", default=None
)


@contextlib.asynccontextmanager
async def shared_client(credentials: RetellCredentials) -> AsyncIterator[RetellClient]:
    """Open one client that the tasks called inside this block reuse.

    A campaign places thousands of calls; one connection pool for all of them
    saves a TLS handshake per request.
    """
    async with credentials.get_client() as client:
        token = _shared.set((credentials, client))
        try:
            yield client
        finally:
            _shared.reset(token)


@contextlib.asynccontextmanager
async def _client_for(credentials: RetellCredentials) -> AsyncIterator[RetellClient]:
    shared = _shared.get()
    if shared is not None and shared[0] is credentials:
        yield shared[1]
        return
    async with credentials.get_client() as client:
        yield client


def _weighted(agents: AgentsSpec) -> list[AgentWeight] | None:
    """Turn an agent id, or a list of ids, dicts or weights, into weighted entries."""
    if agents is None:
        return None
    if isinstance(agents, str):
        agents = [agents]
    entries = [
        AgentWeight(agent_id=item)
        if isinstance(item, str)
        else AgentWeight.model_validate(item)
        for item in agents
    ]
    if not entries:
        return []
    if len(entries) > 1 and all(item.weight == 1.0 for item in entries):
        # A plain list of ids splits the calls evenly.
        entries = [
            item.model_copy(update={"weight": 1 / len(entries)}) for item in entries
        ]
    total = sum(item.weight for item in entries)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise RetellConfigurationError(
            f"Agent weights must sum to 1 (Retell's rule), but they sum to {total:g}: "
            + ", ".join(f"{item.agent_id}={item.weight:g}" for item in entries)
        )
    return entries


def _same_binding(current: list[AgentWeight] | None, wanted: list[AgentWeight]) -> bool:
    def key(items: list[AgentWeight] | None) -> list[tuple[str, float, str]]:
        return sorted(
            (item.agent_id, round(item.weight, 6), str(item.agent_version))
            for item in items or []
        )

    return key(current) == key(wanted)


@task(name="bind-retell-agents", cache_policy=NO_CACHE)
async def bind_agents(
    retell_credentials: RetellCredentials,
    phone_number: str,
    outbound_agents: AgentsSpec = None,
    inbound_agents: AgentsSpec = None,
) -> PhoneNumber:
    """Bind voice agents to one of the account's phone numbers.

    Each side takes an agent id, a list of ids (calls split evenly), or weighted
    entries `{"agent_id", "weight", "agent_version"}` whose weights sum to 1.
    A side left as None is not changed. When the number is already bound that way,
    nothing is sent.

    Args:
        retell_credentials: The account's credentials.
        phone_number: The number, in E.164.
        outbound_agents: Agents for calls placed from the number.
        inbound_agents: Agents for calls to the number.

    Returns:
        The phone number as Retell holds it afterwards.

    Example:
        ```python
        await bind_agents(credentials, "+16505550100",
                          outbound_agents=[{"agent_id": "agent_a", "weight": 0.5},
                                           {"agent_id": "agent_b", "weight": 0.5}])
        ```
    """
    logger = get_run_logger()
    wanted = {
        "outbound_agents": _weighted(outbound_agents),
        "inbound_agents": _weighted(inbound_agents),
    }
    async with _client_for(retell_credentials) as client:
        number = await client.get_phone_number(phone_number)
        changes = {
            side: agents
            for side, agents in wanted.items()
            if agents is not None and not _same_binding(getattr(number, side), agents)
        }
        if not changes:
            logger.info("Agents of %s already bound as asked", phone_number)
            return number
        number = await client.update_phone_number(phone_number, **changes)
    logger.info("Bound %s on %s", ", ".join(sorted(changes)), phone_number)
    return number


@task(name="create-retell-call", cache_policy=NO_CACHE, retries=0)
async def create_call(
    retell_credentials: RetellCredentials,
    request: PhoneCallRequest,
) -> PhoneCall:
    """Place one outbound call; the call is registered, not yet answered.

    The request's `idempotency_key`, when set, makes this safe to repeat: Retell
    returns the call already placed. Without one the client adds one.

    Args:
        retell_credentials: The account's credentials.
        request: What to dial, from which number, with which agent and variables.

    Returns:
        The new call, usually in status `registered`.

    Example:
        ```python
        call = await create_call(credentials, PhoneCallRequest(
            from_number="+16505550100", to_number="+14155550123",
            retell_llm_dynamic_variables={"first_name": "Ada"}))
        ```
    """
    async with _client_for(retell_credentials) as client:
        return await place_call(client, request, get_run_logger())


@task(name="get-retell-call", cache_policy=NO_CACHE)
async def get_call(retell_credentials: RetellCredentials, call_id: str) -> PhoneCall:
    """Read a call's current state.

    Example:
        ```python
        call = await get_call(credentials, "call_123")
        print(call.call_status, call.disconnection_reason)
        ```
    """
    async with _client_for(retell_credentials) as client:
        return await client.get_call(call_id)


async def place_call(
    client: RetellClient,
    request: PhoneCallRequest,
    logger: Any,
    log_level: int = logging.INFO,
    *,
    retry_rate_limited: bool = True,
) -> PhoneCall:
    """Create a call and log its id at `log_level`, with the number masked.

    With `retry_rate_limited` False, a 429 is raised at once: see
    `RetellClient.create_phone_call`.
    """
    call = await client.create_phone_call(
        request, retry_rate_limited=retry_rate_limited
    )
    logger.log(
        log_level,
        "Created call %s to %s",
        call.call_id,
        mask_phone_number(request.to_number),
    )
    return call


async def follow_call(
    client: RetellClient,
    call_id: str,
    *,
    timeout_seconds: float,
    poll_interval_seconds: float = 2.0,
    stop_on_timeout: bool = False,
    logger: Any = None,
    log_level: int = logging.INFO,
) -> PhoneCall:
    """Poll a call until its status is final or the deadline passes.

    An async loop with its own deadline, so that it ends on time even where a
    task timeout cannot interrupt it. A status it does not know is taken as not
    final. Transient failures (429, 5xx, lost connections) that outlast the
    client's retries are logged and polled through until the deadline.

    Raises:
        RetellCallTimeoutError: The call was still live at the deadline; with
            `stop_on_timeout` it was asked to stop first.
    """
    deadline = time.monotonic() + timeout_seconds
    last_status: str | None = None
    while True:
        try:
            call = await client.get_call(call_id)
        except (RetellServerError, RetellRateLimitError, RetellConnectionError) as exc:
            if logger:
                logger.warning("Polling call %s failed for now: %s", call_id, exc)
        else:
            if call.is_final:
                _log_finished(logger, call, log_level)
                return call
            if logger and call.call_status != last_status:
                logger.debug("Call %s is %s", call_id, call.call_status)
            last_status = call.call_status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return await _timed_out(client, call_id, last_status, stop_on_timeout)
        await asyncio.sleep(min(poll_interval_seconds, remaining))


async def follow_call_by_events(
    client: RetellClient,
    watcher: CallEventWatcher,
    call_id: str,
    *,
    timeout_seconds: float,
    poll_interval_seconds: float = 2.0,
    stop_on_timeout: bool = False,
    logger: Any = None,
    log_level: int = logging.INFO,
) -> PhoneCall:
    """Wait for a call's final event; read it from Retell only if none comes.

    The call's `retell.call.ended` (or `retell.call.analyzed`) event ends the
    wait without a request to Retell. At the deadline the call is read once: a
    call whose events were lost is still reported as it ended. If the event
    subscription itself is lost, the call is polled for the time that is left.

    Raises:
        RetellCallTimeoutError: The call was still live at the deadline; with
            `stop_on_timeout` it was asked to stop first.
    """
    deadline = time.monotonic() + timeout_seconds
    try:
        ended = await watcher.wait(call_id, timeout_seconds=timeout_seconds)
    except RuntimeError:
        ended = None
    if ended is not None:
        _log_finished(logger, ended, log_level)
        return ended
    if logger:
        logger.info("No final event for call %s in time; asking Retell", call_id)
    return await follow_call(
        client,
        call_id,
        timeout_seconds=max(0.0, deadline - time.monotonic()),
        poll_interval_seconds=poll_interval_seconds,
        stop_on_timeout=stop_on_timeout,
        logger=logger,
        log_level=log_level,
    )


def _log_finished(logger: Any, call: PhoneCall, level: int = logging.INFO) -> None:
    if logger:
        logger.log(
            level,
            "Call %s finished: %s (%s), %.1f s",
            call.call_id,
            call.call_status,
            call.disconnection_reason or "no reason given",
            (call.duration_ms or 0) / 1000,
        )


async def _timed_out(
    client: RetellClient, call_id: str, last_status: str | None, stop: bool
) -> PhoneCall:
    if stop:
        try:
            await client.stop_call(call_id)
            call = await client.get_call(call_id)
        except (RetellAPIError, RetellConnectionError) as exc:
            # The wait is over either way; a failed stop must not hide the timeout
            # and the call id behind an unrelated error.
            raise RetellCallTimeoutError(
                f"Call {call_id} did not reach a final status in time; last status "
                f"{last_status}. It was not dialled again, and stopping it failed: "
                f"{exc}",
                call_id=call_id,
                last_status=last_status,
            ) from exc
        if call.is_final:
            raise RetellCallTimeoutError(
                f"Call {call_id} did not end in time (last status {last_status}); "
                f"it was stopped and is now {call.call_status}",
                call_id=call_id,
                last_status=call.call_status,
            )
    raise RetellCallTimeoutError(
        f"Call {call_id} did not reach a final status in time; last status "
        f"{last_status}. It was not dialled again; read it later with get_call.",
        call_id=call_id,
        last_status=last_status,
    )


@task(name="wait-for-retell-call", cache_policy=NO_CACHE)
async def wait_for_call(
    retell_credentials: RetellCredentials,
    call_id: str,
    timeout_seconds: float = 3600.0,
    poll_interval_seconds: float = 2.0,
    stop_on_timeout: bool = False,
) -> PhoneCall:
    """Wait until a call is `ended`, `not_connected` or `error`, and return it.

    Args:
        retell_credentials: The account's credentials.
        call_id: The call to follow.
        timeout_seconds: The longest wait; the task fails after it.
        poll_interval_seconds: The pause between two reads of the call.
        stop_on_timeout: Ask Retell to stop the call when the wait runs out.

    Raises:
        RetellCallTimeoutError: The call was still live at the deadline.

    Example:
        ```python
        call = await wait_for_call(credentials, call.call_id, timeout_seconds=900)
        print(call.call_status, call.duration_ms)
        ```
    """
    logger = get_run_logger()
    async with _client_for(retell_credentials) as client:
        return await follow_call(
            client,
            call_id,
            timeout_seconds=timeout_seconds,
            poll_interval_seconds=poll_interval_seconds,
            stop_on_timeout=stop_on_timeout,
            logger=logger,
        )


@task(name="await-retell-call-event", cache_policy=NO_CACHE)
async def await_call_event(
    retell_credentials: RetellCredentials,
    call_id: str,
    timeout_seconds: float = 3600.0,
    stop_on_timeout: bool = False,
) -> PhoneCall:
    """Wait for a call's final Prefect event, sent by the webhook receiver.

    Polls nothing while the events come: it needs `prefect-retell webhooks serve`
    (or any receiver that emits `retell.call.ended`) in front of the account's
    webhooks. Events from the minute before the task started count, so it may
    start just after the call was created. Without an event by the deadline, the
    call is read once from Retell.

    Args:
        retell_credentials: The account's credentials, for the final read.
        call_id: The call to wait for.
        timeout_seconds: The longest wait for the event.
        stop_on_timeout: Ask Retell to stop the call if it is live at the deadline.

    Raises:
        RetellCallTimeoutError: No event came and the call was still live.

    Example:
        ```python
        call = await create_call(credentials, request)
        call = await await_call_event(credentials, call.call_id, timeout_seconds=900)
        ```
    """
    logger = get_run_logger()
    async with (
        CallEventWatcher(logger=logger) as watcher,
        _client_for(retell_credentials) as client,
    ):
        return await follow_call_by_events(
            client,
            watcher,
            call_id,
            timeout_seconds=timeout_seconds,
            stop_on_timeout=stop_on_timeout,
            logger=logger,
        )
