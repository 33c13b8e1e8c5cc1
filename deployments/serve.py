"""Serve prefect-retell's deployments from one local process.

Start a Prefect server (`prefect server start`) or use Prefect Cloud, save a
RetellCredentials block named `retell`, then, from the repository root:

    python deployments/serve.py

Runs then start from the Prefect UI (each flow's parameters show as a form),
from `prefect deployment run 'retell-outbound-campaign/retell-campaign'`, on the
nightly schedule, or, for `retell-campaign-after-export`, when a run of the
`export-due-contacts` deployment completes. `prefect.yaml` beside this file
declares the same deployments for `prefect deploy` and a work pool.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from prefect_retell import outbound_call, outbound_campaign

# The example data flow is a file beside this one, not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contact_export import export_due_contacts  # noqa: E402
from follow_up import UNSUCCESSFUL_CALL, follow_up_call  # noqa: E402

NIGHTLY_CRON = "0 18 * * *"
NIGHTLY_TIMEZONE = "America/Los_Angeles"
EXPORT_DEPLOYMENT = "export-due-contacts"
CUSTOMERS = Path(__file__).resolve().parent / "data" / "customers.csv"
# The package's flows are named by module, so that a run finds them wherever the
# package is installed, whatever directory the process started in.
BY_MODULE = EntrypointType.MODULE_PATH


def campaign_deployments() -> list[RunnerDeployment]:
    """The campaign started from the UI, the nightly one, and one call."""
    campaign = outbound_campaign.to_deployment(
        name="retell-campaign",
        entrypoint_type=BY_MODULE,
        description="Call every contact of a CSV file and report every row.",
        parameters={"credentials": "retell", "cps": 1},
        tags=["retell"],
    )
    nightly = outbound_campaign.to_deployment(
        name="retell-nightly-reminders",
        entrypoint_type=BY_MODULE,
        description="Every evening at 18:00 Pacific time, call tomorrow's "
        "appointments.",
        schedules=[Cron(NIGHTLY_CRON, timezone=NIGHTLY_TIMEZONE)],
        parameters={
            "contacts": "/data/reminders/tomorrow.csv",
            "from_number": "+16505550100",
            "credentials": "retell",
            "cps": 1,
        },
        tags=["retell", "nightly"],
    )
    single = outbound_call.to_deployment(
        name="retell-call",
        entrypoint_type=BY_MODULE,
        description="Place one call and wait for its end.",
        parameters={"credentials": "retell"},
        tags=["retell"],
    )
    return [campaign, nightly, single]


def chained_deployments() -> list[RunnerDeployment]:
    """The example data flow, chained to the campaign in both ways.

    `export-due-contacts` only writes the list, and its completion starts
    `retell-campaign-after-export` through an event trigger;
    `export-due-contacts-and-call` requests a run of `retell-campaign` itself.
    """
    export = export_due_contacts.to_deployment(
        name=EXPORT_DEPLOYMENT,
        description="Export the customers whose reminder is due as a contact list.",
        parameters={
            "source": str(CUSTOMERS),
            # Named here, not left to the flow's default, so that the trigger can
            # read it from the finished run's parameters.
            "output": "exports/due-contacts.csv",
            "from_number": "+16505550100",
            "start_campaign": "none",
        },
        tags=["retell", "example"],
    )
    export_and_call = export_due_contacts.to_deployment(
        name="export-due-contacts-and-call",
        description="Export the due customers, then request a run of retell-campaign.",
        parameters={
            "source": str(CUSTOMERS),
            "output": "exports/due-contacts-and-call.csv",
            "from_number": "+16505550100",
            "start_campaign": "deployment",
            "campaign_deployment": "retell-outbound-campaign/retell-campaign",
        },
        tags=["retell", "example"],
    )
    after_export = outbound_campaign.to_deployment(
        name="retell-campaign-after-export",
        entrypoint_type=BY_MODULE,
        description="Call the list that export-due-contacts has just written.",
        parameters={"credentials": "retell", "cps": 1},
        triggers=[export_completed_trigger()],
        tags=["retell", "example"],
    )
    return [export, export_and_call, after_export]


def follow_up_deployments() -> list[RunnerDeployment]:
    """The follow-up that an unsuccessful call's event starts (see follow_up.py)."""
    follow_up = follow_up_call.to_deployment(
        name="retell-follow-up",
        description="Add the person of an unsuccessful call to a callback list.",
        parameters={"credentials": "retell", "callback_list": "callbacks.csv"},
        triggers=[UNSUCCESSFUL_CALL],
        tags=["retell"],
    )
    return [follow_up]


def export_completed_trigger() -> DeploymentEventTrigger:
    """Fire when a run of the export deployment completes; pass on its list.

    The templates are rendered by the Prefect server when the event arrives, with
    `flow_run` the run that completed.
    """
    return DeploymentEventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={
            "prefect.resource.role": "deployment",
            "prefect.resource.name": EXPORT_DEPLOYMENT,
        },
        expect={"prefect.flow-run.Completed"},
        parameters={
            "contacts": "{{ flow_run.parameters.output }}",
            "from_number": "{{ flow_run.parameters.from_number }}",
        },
    )


if __name__ == "__main__":
    serve(*campaign_deployments(), *chained_deployments(), *follow_up_deployments())
