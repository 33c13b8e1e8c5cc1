"""Flows that place Retell calls: one call, or a campaign over a contact list."""

from prefect_retell.flows.call import outbound_call
from prefect_retell.flows.campaign import load_contact_list, outbound_campaign, shard_of
from prefect_retell.flows.sharded import ShardRun, sharded_campaign

__all__ = [
    "ShardRun",
    "load_contact_list",
    "outbound_call",
    "outbound_campaign",
    "shard_of",
    "sharded_campaign",
]
