"""An example data flow that builds a call list, then hands it to a campaign.

Campaigns usually start after the pipeline that produces their contact list. This
flow stands in for that pipeline: it reads a CRM export, keeps the customers who
agreed to be called and whose reminder is open, writes them to a contact CSV, and
then starts the campaign in one of two ways:

- in the flow (`start_campaign="deployment"` or `"subflow"`): the data flow asks
  for the campaign itself, so the chain is visible in its own code and run graph;
- by an event (`start_campaign="none"`): the flow only writes the file, and the
  campaign deployment `retell-campaign-after-export` in `prefect.yaml` (and in
  `serve.py`) has a trigger on this deployment's `prefect.flow-run.Completed`
  event that passes the file on. The data flow then knows nothing of calls.

Either way the campaign's identity comes from the file's content, so a list
handed over twice (a retried export, both chains at once) is dialled once.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment

from prefect_retell import outbound_campaign

__all__ = ["export_due_contacts", "select_due_contacts"]

SAMPLE_CUSTOMERS = Path(__file__).with_name("data") / "customers.csv"
CAMPAIGN_DEPLOYMENT = "retell-outbound-campaign/retell-campaign"

Reminders = Literal["due", "overdue", "due_or_overdue"]
CampaignStart = Literal["none", "deployment", "subflow"]

# The columns a campaign reads; every column becomes a prompt variable, so the
# export leaves out what the agent has no use for (the consent flag, internal ids).
_EXPORTED_COLUMNS = ("Phone", "First Name", "Appointment Date", "Clinic")
_STATUSES: dict[str, frozenset[str]] = {
    "due": frozenset({"due"}),
    "overdue": frozenset({"overdue"}),
    "due_or_overdue": frozenset({"due", "overdue"}),
}


def select_due_contacts(
    customers: list[dict[str, str]], reminders: Reminders
) -> list[dict[str, str]]:
    """The customers to call: consent given and a reminder in the chosen status.

    A blank consent is no consent: a call list errs on the side of not calling.
    """
    wanted = _STATUSES[reminders]
    return [
        {column: row.get(column, "") for column in _EXPORTED_COLUMNS}
        for row in customers
        if (row.get("Consent to Call") or "").strip().lower() == "yes"
        and (row.get("Reminder") or "").strip().lower() in wanted
    ]


@task(name="export-contact-csv")
def write_contact_csv(source: str, output: str, reminders: Reminders) -> str:
    """Read the CRM export, select the contacts, write them as a CSV; return its path.

    The file is written next to its final name and then moved over it, so a
    campaign that starts while an export runs never reads half a file.
    """
    with open(source, newline="", encoding="utf-8-sig") as handle:
        customers = list(csv.DictReader(handle))
    selected = select_due_contacts(customers, reminders)
    target = Path(output).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_EXPORTED_COLUMNS))
        writer.writeheader()
        writer.writerows(selected)
    partial.replace(target)
    get_run_logger().info(
        "Exported %d of %d customers to %s", len(selected), len(customers), target
    )
    return str(target)


@flow(name="export-due-contacts")
async def export_due_contacts(
    source: str = str(SAMPLE_CUSTOMERS),
    output: str = "exports/due-contacts.csv",
    reminders: Reminders = "due",
    start_campaign: CampaignStart = "none",
    from_number: str = "+16505550100",
    credentials: str | None = "retell",
    campaign_deployment: str = CAMPAIGN_DEPLOYMENT,
) -> str:
    """Export the customers to call as a contact CSV, then start their campaign.

    Args:
        source: The CRM export to read: a CSV with the columns Phone, First Name,
            Appointment Date, Clinic, Consent to Call and Reminder.
        output: Where to write the contact list. A relative path is taken from the
            run's working directory; the campaign reads the same path.
        reminders: Which customers to call: reminder due, overdue, or either.
        start_campaign: How to start the campaign once the list is written:
            "deployment" asks the campaign deployment for a run, "subflow" calls
            it inside this run, "none" leaves it to the deployment trigger on
            this flow's completion.
        from_number: The Retell number to call from, in E.164; used when this
            flow starts the campaign, and by the event trigger.
        credentials: Name of the saved RetellCredentials block for the campaign.
        campaign_deployment: The campaign deployment that "deployment" runs, as
            "flow-name/deployment-name".

    Returns:
        The absolute path of the contact list written.
    """
    path = write_contact_csv(source, output, reminders)
    campaign = {"contacts": path, "from_number": from_number}
    if credentials:
        campaign["credentials"] = credentials
    if start_campaign == "deployment":
        await _request_campaign(campaign_deployment, campaign)
    elif start_campaign == "subflow":
        result = await outbound_campaign(**campaign)
        get_run_logger().info("Campaign %s: %s", result.campaign_id, result.counts)
    return path


async def _request_campaign(deployment: str, parameters: dict[str, str]) -> None:
    """Ask for a run of the campaign deployment, and leave it to its worker.

    The run is linked to this one in the UI (`as_subflow`) but not awaited: a
    campaign can last hours, and its own run reports how it went.
    """
    flow_run = await run_deployment(
        deployment, parameters=parameters, timeout=0, as_subflow=True
    )
    get_run_logger().info(
        "Campaign run %s (%s) requested from deployment %s",
        flow_run.name,
        flow_run.id,
        deployment,
    )
