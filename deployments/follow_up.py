"""A follow-up flow that Prefect runs when a call did not go as hoped.

`prefect-retell webhooks serve` turns Retell's `call_analyzed` webhook into the
Prefect event `retell.call.analyzed`, whose resource carries the labels
`retell.call.successful` and `retell.call.reached`. The trigger below starts this
flow for every analysed call that the analysis marks unsuccessful; the flow reads
the whole call from Retell, adds the person to a callback list (a CSV file that
the next campaign can take as its contacts) and leaves a short artifact.

Serve it from the repository root, with a RetellCredentials block named `retell`
and the receiver forwarding to the same Prefect server:

    python deployments/follow_up.py

The same trigger is declared for `prefect deploy` in deployments/prefect.yaml.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from prefect_retell import RetellCredentials, get_call
from prefect_retell.privacy import mask_phone_number
from prefect_retell.results import inert_cell

CALLBACK_COLUMNS = [
    "phone",
    "call_id",
    "call_status",
    "disconnection_reason",
    "summary",
    "analysed_at",
]

UNSUCCESSFUL_CALL = DeploymentEventTrigger(
    name="Follow up an unsuccessful Retell call",
    expect={"retell.call.analyzed"},
    match={"prefect.resource.id": "retell.call.*", "retell.call.successful": "false"},
    parameters={"call_id": "{{ event.resource.name }}"},
)
"""Runs the follow-up once per analysed call whose analysis says it failed."""


@flow(name="retell-follow-up-call")
async def follow_up_call(
    call_id: str,
    credentials: str = "retell",
    callback_list: str = "callbacks.csv",
) -> dict[str, str | None]:
    """Add an unsuccessful call's person to a callback list.

    Args:
        call_id: The Retell call to follow up, as the event names it.
        credentials: Name of a saved RetellCredentials block.
        callback_list: CSV file that collects the people to call back; created
            with a header when missing. It holds full phone numbers: keep it
            where the contact lists themselves are kept.

    Returns:
        The row written to the callback list.
    """
    logger = get_run_logger()
    retell = await RetellCredentials.load(credentials)
    call = await get_call(retell, call_id)
    analysis = call.call_analysis
    row = {
        "phone": call.to_number,
        "call_id": call.call_id,
        "call_status": call.call_status,
        "disconnection_reason": call.disconnection_reason,
        "summary": analysis.call_summary if analysis else None,
        "analysed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _append_row(Path(callback_list), row)
    logger.info(
        "Call %s to %s was unsuccessful (%s); added to %s",
        call.call_id,
        mask_phone_number(call.to_number),
        call.disconnection_reason or call.call_status,
        callback_list,
    )
    await acreate_markdown_artifact(
        key="retell-follow-up",
        markdown=(
            f"Call `{call.call_id}` to {mask_phone_number(call.to_number, always=True)}"
            f" was unsuccessful: {call.call_status}, "
            f"{call.disconnection_reason or 'no reason given'}.\n\n"
            f"Added to the callback list `{callback_list}`."
        ),
        description="An unsuccessful call, queued for a callback",
    )
    return row


def _append_row(path: Path, row: dict[str, str | None]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CALLBACK_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({key: inert_cell(value) for key, value in row.items()})
        handle.flush()
        os.fsync(handle.fileno())


if __name__ == "__main__":
    follow_up_call.serve(
        name="retell-follow-up",
        triggers=[UNSUCCESSFUL_CALL],
        tags=["retell"],
    )
