"""Prefect building blocks for outbound phone calls through Retell AI voice agents.

- `RetellCredentials`: a block holding the API key, returning a `RetellClient`;
- tasks: `bind_agents`, `create_call`, `get_call`, `wait_for_call`;
- flows: `outbound_call`, `outbound_campaign`, and `sharded_campaign` to spread
  one campaign over several workers;
- `load_contacts`: a contact list read and normalised to E.164.
"""

from prefect_retell.blocks import RetellCredentials
from prefect_retell.client import RetellClient, RetryPolicy
from prefect_retell.contacts import ContactList, ContactsError, load_contacts
from prefect_retell.errors import (
    RetellAPIError,
    RetellAuthenticationError,
    RetellCallTimeoutError,
    RetellConfigurationError,
    RetellConnectionError,
    RetellError,
    RetellNotFoundError,
    RetellRateLimitError,
    RetellServerError,
    RetellValidationError,
)
from prefect_retell.flows import (
    ShardRun,
    outbound_call,
    outbound_campaign,
    shard_of,
    sharded_campaign,
)
from prefect_retell.models import (
    FINAL_CALL_STATUSES,
    AgentWeight,
    PhoneCall,
    PhoneCallRequest,
    PhoneNumber,
    is_final_status,
)
from prefect_retell.results import CampaignResult, ContactResult
from prefect_retell.tasks import bind_agents, create_call, get_call, wait_for_call

__all__ = [
    "FINAL_CALL_STATUSES",
    "AgentWeight",
    "CampaignResult",
    "ContactList",
    "ContactResult",
    "ContactsError",
    "PhoneCall",
    "PhoneCallRequest",
    "PhoneNumber",
    "RetellAPIError",
    "RetellAuthenticationError",
    "RetellCallTimeoutError",
    "RetellClient",
    "RetellConfigurationError",
    "RetellConnectionError",
    "RetellCredentials",
    "RetellError",
    "RetellNotFoundError",
    "RetellRateLimitError",
    "RetellServerError",
    "RetellValidationError",
    "RetryPolicy",
    "ShardRun",
    "bind_agents",
    "create_call",
    "get_call",
    "is_final_status",
    "load_contacts",
    "outbound_call",
    "outbound_campaign",
    "shard_of",
    "sharded_campaign",
    "wait_for_call",
]
