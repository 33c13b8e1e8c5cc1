"""Helpers for the end-to-end tests: running flows and reading the sandbox's record."""

from __future__ import annotations

import contextlib
import csv
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from prefect_retell import CampaignResult, RetellCredentials, outbound_campaign
from prefect_retell.sandbox import SandboxServer
from prefect_retell.sandbox.report import most_in_one_second

__all__ = ["most_in_one_second"]  # re-exported for the tests

TWILIO = "+16505550100"
TELNYX = "+16505550101"
CUSTOM = "+16505550102"
REMINDER_AGENT = "agent_sandbox_reminder"
SURVEY_AGENT = "agent_sandbox_survey"

CREATE_ROUTE = "POST /v2/create-phone-call"
GET_CALL_ROUTE = "GET /v2/get-call/{call_id}"
STOP_CALL_ROUTE = "POST /v2/stop-call/{call_id}"
UPDATE_NUMBER_ROUTE = "PATCH /update-phone-number/{phone_number}"

CONCURRENCY_LIMIT = "retell-concurrency"
FINAL_STATUSES = {"ended", "not_connected", "error"}


def credentials_for(server: SandboxServer, **fields: Any) -> RetellCredentials:
    """Credentials that reach `server` with the key it accepts."""
    return RetellCredentials(
        api_key=server.sandbox.config.api_key, base_url=server.base_url, **fields
    )


@dataclass
class CampaignRun:
    """A finished campaign and what the sandbox recorded while it ran.

    `stats` is the sandbox's `stats()` and `calls` every call object by id, both
    read right after the flow returned, so later resets do not change them.
    """

    result: CampaignResult
    stats: dict[str, Any]
    flow_run_id: UUID
    calls: dict[str, dict[str, Any]]

    def calls_to(self, to_number: str) -> list[dict[str, Any]]:
        """The sandbox's calls to one destination, in creation order."""
        calls = [call for call in self.stats["calls"] if call["to_number"] == to_number]
        return sorted(calls, key=lambda call: call["created_at"])

    def creation_times(self, from_number: str) -> list[float]:
        """When the sandbox accepted each create from `from_number`, sorted."""
        return sorted(
            call["created_at"]
            for call in self.stats["calls"]
            if call["from_number"] == from_number
        )

    def row(self, number: int):
        """The result of one data row."""
        [found] = [row for row in self.result.rows if row.row == number]
        return found

    @property
    def requests(self) -> dict[str, int]:
        """Requests the sandbox received, by route."""
        return self.stats["requests"]

    @property
    def rate_limited(self) -> int:
        """429 answers of every kind."""
        return sum(self.stats["rate_limited"].values())


def contacts_file(rows: list[dict[str, Any]]) -> str:
    """Write rows to a CSV file and return its path.

    The campaign takes a path, never the rows themselves: Prefect stores and shows
    flow parameters in full, and a contact list is personal data.
    """
    folder = Path(tempfile.mkdtemp(prefix="prefect-retell-contacts-"))
    path = folder / "contacts.csv"
    names = list(dict.fromkeys(name for row in rows for name in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


async def run_campaign(server: SandboxServer, **parameters: Any) -> CampaignRun:
    """Run `outbound_campaign` against `server` and snapshot the sandbox after it.

    `contacts` may be a list of rows, written to a CSV file first.
    """
    if isinstance(parameters.get("contacts"), list):
        parameters["contacts"] = contacts_file(parameters["contacts"])
    # Each run is its own campaign unless the test names one (None: derived).
    parameters.setdefault("campaign_id", f"test-{uuid4().hex[:16]}")
    parameters.setdefault("credentials", credentials_for(server))
    parameters.setdefault("poll_interval_seconds", 0.05)
    state = await outbound_campaign(**parameters, return_state=True)
    result = await state.result()
    stats = server.sandbox.stats()
    return CampaignRun(
        result=result,
        stats=stats,
        flow_run_id=state.state_details.flow_run_id,
        calls={
            call["call_id"]: server.sandbox.get_call(call["call_id"])
            for call in stats["calls"]
        },
    )


def gaps(times: Iterable[float]) -> list[float]:
    """Seconds between consecutive moments."""
    ordered = sorted(times)
    return [
        later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False)
    ]


async def delete_limit(name: str) -> None:
    """Delete a Prefect global concurrency limit if it exists."""
    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name(name)


async def create_limit(name: str, **fields: Any) -> None:
    """Create a Prefect global concurrency limit, replacing one of that name."""
    await delete_limit(name)
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, **fields)
        )


async def read_limit(name: str):
    """A Prefect global concurrency limit as the server holds it."""
    async with get_client() as client:
        return await client.read_global_concurrency_limit_by_name(name)
