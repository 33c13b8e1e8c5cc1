"""The `sharded_campaign` flow: one contact list dialled by several workers at once."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from pydantic import BaseModel

from prefect_retell.errors import RetellConfigurationError, RetellError

__all__ = ["ShardRun", "sharded_campaign"]

# The parameters that say which shard a run is; the parent sets them.
_SHARD_PARAMETERS = ("shard", "shard_count")


class ShardRun(BaseModel):
    """One shard's flow run, as it ended.

    Attributes:
        shard: Which share of the list it dialled, from 1.
        flow_run_id: The shard's flow run; its artifacts hold its results.
        flow_run_name: Its name in the Prefect UI.
        state: The name of its final state, such as "Completed" or "Failed".
    """

    shard: int
    flow_run_id: UUID
    flow_run_name: str
    state: str


@flow(name="retell-sharded-campaign", log_prints=False)
async def sharded_campaign(
    contacts: str,
    shard_count: int = 2,
    deployment: str = "retell-outbound-campaign/retell-campaign",
    parameters: dict[str, Any] | None = None,
    poll_interval_seconds: float = 5.0,
) -> list[ShardRun]:
    """Split a campaign into flow runs of a campaign deployment, and wait for all.

    Each shard is a run of `deployment` (a deployment of `outbound_campaign`)
    with the same parameters and its own `shard`, so the workers of the
    deployment's work pool share the list: give each worker `--limit 1` to have
    one shard per worker. The shards draw from the same Prefect limits, so
    together they keep the number's calls per second and the account's
    concurrency. Each shard publishes its own results and summary artifacts,
    named after it; this flow publishes a table of the shards' runs.

    Run this flow where it does not take a worker's only slot (from a script, or
    a work pool of its own): it waits for the shards.

    Args:
        contacts: Path of the contact list, the same file for every worker.
        shard_count: How many flow runs share the list.
        deployment: The campaign deployment, as "flow name/deployment name".
        parameters: The campaign's other parameters (from_number, credentials,
            cps, ...), over the deployment's defaults. Every shard derives the
            same campaign id from the same file, or give `campaign_id` here.
        poll_interval_seconds: Pause between two reads of the shards' states.

    Returns:
        One `ShardRun` per shard, in shard order.

    Raises:
        RetellError: A shard did not complete; the others ran to their end.
    """
    logger = get_run_logger()
    if shard_count < 1:
        raise RetellConfigurationError(
            f"shard_count must be at least 1, not {shard_count}"
        )
    common = {
        key: value
        for key, value in (parameters or {}).items()
        if key not in _SHARD_PARAMETERS
    }
    common["contacts"] = contacts
    name = flow_run.get_name() or "sharded-campaign"
    logger.info("Starting %d shard(s) of %s", shard_count, deployment)
    runs: list[FlowRun] = await asyncio.gather(
        *(
            run_deployment(
                name=deployment,
                parameters={**common, "shard": shard, "shard_count": shard_count},
                flow_run_name=f"{name}-shard-{shard}-of-{shard_count}",
                timeout=None,
                poll_interval=poll_interval_seconds,
            )
            for shard in range(1, shard_count + 1)
        )
    )
    shards = [
        ShardRun(
            shard=shard,
            flow_run_id=run.id,
            flow_run_name=run.name,
            state=run.state.name if run.state else "unknown",
        )
        for shard, run in enumerate(runs, start=1)
    ]
    await acreate_markdown_artifact(
        key="retell-sharded-campaign",
        markdown=_table(shards),
        description=f"The {shard_count} shard runs of a campaign.",
    )
    failed = [each for each in shards if each.state != "Completed"]
    if failed:
        raise RetellError(
            f"{len(failed)} of {shard_count} shard(s) did not complete: "
            + ", ".join(f"shard {each.shard} ({each.state})" for each in failed)
        )
    return shards


def _table(shards: list[ShardRun]) -> str:
    lines = ["| Shard | Flow run | State |", "|---:|---|---|"]
    lines += [
        f"| {each.shard} | {each.flow_run_name} (`{each.flow_run_id}`) | {each.state} |"
        for each in shards
    ]
    return "\n".join(lines) + "\n"
