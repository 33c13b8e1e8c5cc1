"""Serve the campaign and single-call flows as deployments of a local process.

Start a Prefect server (`prefect server start`) or use Prefect Cloud, save a
RetellCredentials block named `retell`, then run:

    python deployments/serve.py

Runs then start from the Prefect UI (the campaign's parameters show as a form),
from `prefect deployment run 'retell-outbound-campaign/retell-campaign'`, or on
the nightly schedule below.
"""

from prefect import serve

from prefect_retell import outbound_call, outbound_campaign

if __name__ == "__main__":
    campaign = outbound_campaign.to_deployment(
        name="retell-campaign",
        description="Call every contact of a CSV file and report every row.",
        parameters={"credentials": "retell", "cps": 1},
        tags=["retell"],
    )
    nightly = outbound_campaign.to_deployment(
        name="retell-nightly-reminders",
        description="Every evening at 18:00, call tomorrow's appointments.",
        cron="0 18 * * *",
        parameters={
            "contacts": "/data/reminders/tomorrow.csv",
            "from_number": "+16505550100",
            "credentials": "retell",
            "cps": 1,
        },
        tags=["retell"],
    )
    single = outbound_call.to_deployment(
        name="retell-call",
        description="Place one call and wait for its end.",
        parameters={"credentials": "retell"},
        tags=["retell"],
    )
    serve(campaign, nightly, single)
