"""Prefect building blocks for outbound phone calls through Retell AI voice agents.

- `RetellCredentials`: a block holding the API key, returning a `RetellClient`;
- tasks: `bind_agents`, `create_call`, `get_call`, `wait_for_call`;
- flows: `outbound_call`, `outbound_campaign`, and `sharded_campaign` to spread
  one campaign over several workers;
- `load_contacts`: a contact list read and normalised to E.164;
- `CallingWindow` and `SuppressionList`: when recipients may be called, and who
  never;
- `create_webhook_app`: a receiver that turns Retell's signed call webhooks into
  Prefect events, with the signing, checking and mapping it is built from.
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
from prefect_retell.receiver import (
    DeliveryPolicy,
    WebhookReceiverServer,
    create_webhook_app,
    run_webhook_receiver,
)
from prefect_retell.results import CampaignResult, ContactResult
from prefect_retell.suppression import SuppressionList
from prefect_retell.tasks import bind_agents, create_call, get_call, wait_for_call
from prefect_retell.webhooks import (
    SIGNATURE_HEADER,
    WebhookDeduplicator,
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    is_failed_call,
    parse_webhook,
    prefect_events_for,
    sign_webhook,
    verify_webhook,
)
from prefect_retell.windows import CallingWindow

__all__ = [
    "FINAL_CALL_STATUSES",
    "SIGNATURE_HEADER",
    "AgentWeight",
    "CallingWindow",
    "CampaignResult",
    "ContactList",
    "ContactResult",
    "ContactsError",
    "DeliveryPolicy",
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
    "WebhookDeduplicator",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookReceiverServer",
    "WebhookSignatureError",
    "SuppressionList",
    "ShardRun",
    "bind_agents",
    "create_call",
    "create_webhook_app",
    "get_call",
    "is_failed_call",
    "is_final_status",
    "load_contacts",
    "outbound_call",
    "outbound_campaign",
    "parse_webhook",
    "prefect_events_for",
    "run_webhook_receiver",
    "sign_webhook",
    "verify_webhook",
    "shard_of",
    "sharded_campaign",
    "wait_for_call",
]
