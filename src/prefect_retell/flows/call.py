"""The `outbound_call` flow: one call, placed and followed to its end."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from prefect_retell.blocks import RetellCredentials
from prefect_retell.flows._credentials import resolve_credentials
from prefect_retell.models import PhoneCall, PhoneCallRequest
from prefect_retell.monitoring import CallEventWatcher, MonitorMode
from prefect_retell.tasks import (
    create_call,
    follow_call_by_events,
    shared_client,
    wait_for_call,
)

__all__ = ["outbound_call"]


@flow(name="retell-outbound-call")
async def outbound_call(
    from_number: str,
    to_number: str,
    credentials: RetellCredentials | str | None = None,
    agent_id: str | None = None,
    agent_version: int | str | None = None,
    dynamic_variables: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    timeout_seconds: float = 3600.0,
    poll_interval_seconds: float = 2.0,
    stop_on_timeout: bool = False,
    monitor: MonitorMode = "poll",
) -> PhoneCall:
    """Place one outbound call and wait until it is over.

    Args:
        from_number: The account's number to call from, in E.164.
        to_number: The number to call, in E.164.
        credentials: Name of a saved RetellCredentials block; empty reads
            RETELL_API_KEY and RETELL_BASE_URL.
        agent_id: Agent for this call, overriding the number's outbound agents.
        agent_version: Version of that agent: a number or a tag.
        dynamic_variables: Values for the prompt's `{{variables}}`, as strings.
        metadata: Data kept with the call and sent back in its webhooks.
        timeout_seconds: Longest wait for the call to end.
        poll_interval_seconds: Pause between two reads of the live call.
        stop_on_timeout: Stop the call if it is still live at the deadline.
        monitor: `poll` reads the live call from Retell; `events` waits for its
            final event from `prefect-retell webhooks serve` and reads it from
            Retell only if the event has not come by the deadline; `none`
            returns the call as created, without waiting.

    Returns:
        The call in its final status: `ended`, `not_connected` or `error`; with
        `monitor="none"`, as it was created (`registered`).

    Raises:
        RetellCallTimeoutError: The call was still live at the deadline.

    Example:
        ```python
        call = await outbound_call("+16505550100", "+14155550123",
                                   credentials="retell",
                                   dynamic_variables={"first_name": "Ada"})
        print(call.call_status, call.disconnection_reason)
        ```
    """
    retell = await resolve_credentials(credentials)
    request = PhoneCallRequest(
        from_number=from_number,
        to_number=to_number,
        override_agent_id=agent_id,
        override_agent_version=agent_version,
        retell_llm_dynamic_variables=dynamic_variables,
        metadata=metadata,
    )
    if monitor != "events":
        async with shared_client(retell):
            call = await create_call(retell, request)
            if monitor == "none":
                return call
            return await wait_for_call(
                retell,
                call.call_id,
                timeout_seconds=timeout_seconds,
                poll_interval_seconds=poll_interval_seconds,
                stop_on_timeout=stop_on_timeout,
            )
    logger = get_run_logger()
    # Subscribed before the call is placed, so its events cannot be missed.
    async with (
        CallEventWatcher(logger=logger) as watcher,
        shared_client(retell) as client,
    ):
        call = await create_call(retell, request)
        return await follow_call_by_events(
            client,
            watcher,
            call.call_id,
            timeout_seconds=timeout_seconds,
            poll_interval_seconds=poll_interval_seconds,
            stop_on_timeout=stop_on_timeout,
            logger=logger,
        )
