"""What a campaign hands back: one record per input row, and its summaries."""

from __future__ import annotations

import collections
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_retell.models import FAILED_DISCONNECTION_REASONS, PhoneCall
from prefect_retell.privacy import mask_phone_number

__all__ = [
    "ARTIFACT_TABLE_MAX_BYTES",
    "CallAttempt",
    "CampaignResult",
    "ContactResult",
    "RowOutcome",
    "inert_cell",
]

RowOutcome = Literal[
    "called",  # dialled, and the call reached a final status
    "duplicate",  # same number as an earlier row; only that one may be dialled
    "rejected",  # not dialled: the row's number or destination is not usable
    "suppressed",  # not dialled: the number is on a do-not-call list
    # not dialled yet: its calling window did not open before the campaign's
    # deadline; `next_call_at` says when it would have been called
    "waiting",
    "failed",  # Retell refused to place the call
    "timed_out",  # dialled, but still live when the wait ended
    # a call may have been placed, or was placed and could not be followed to its
    # end; either way not dialled again
    "unknown",
]

ARTIFACT_TABLE_MAX_BYTES = 500_000
"""How large the results table artifact may grow, in bytes of Prefect's event.

Prefect's server refuses to publish an event larger than
PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES (1,500,000 by default) and logs
"Refusing to publish event of size ..."; the event that announces an artifact
carries its data as a JSON string inside the event's JSON, so the table is
measured that way. A third of the default leaves room for the rest of the event
and for a server configured lower. 10,000 rows made an event of about 4 MB.

Shortcoming: the budget is fixed, not read from the server, so a server whose
maximum is set below about 510,000 bytes still refuses the table's event.
"""


class CallAttempt(BaseModel):
    """One Retell call placed for a row."""

    attempt: int
    call_id: str
    call_status: str | None = None
    disconnection_reason: str | None = None
    duration_ms: int | None = None
    cost_cents: float | None = None
    placed_at: datetime | None = None

    @classmethod
    def from_call(
        cls, attempt: int, call: PhoneCall, placed_at: datetime | None = None
    ) -> CallAttempt:
        """The attempt as the call reports it.

        `placed_at` is when this run placed it, on the campaign's clock; None for
        a call an earlier run placed.
        """
        cost = call.call_cost.combined_cost if call.call_cost else None
        return cls(
            attempt=attempt,
            call_id=call.call_id,
            call_status=call.call_status,
            disconnection_reason=call.disconnection_reason,
            duration_ms=call.duration_ms,
            cost_cents=cost,
            placed_at=placed_at,
        )


class ContactResult(BaseModel):
    """What became of one row of the contact list.

    `row` counts data rows from 1, the first row after the header. For a row that
    was dialled, the call fields describe its last attempt, and `attempts` lists
    every call placed for it, redials included. `next_call_at` is set when a call
    was still due (its calling window or a redial) as the campaign's deadline
    came; running the campaign again under the same id places it. `time_zone`
    names the zone whose clock the calling window was read on.
    """

    row: int
    outcome: RowOutcome
    to_number: str | None = None
    raw_phone: str = ""
    reason: str | None = None
    duplicate_of: int | None = None
    call_id: str | None = None
    call_status: str | None = None
    disconnection_reason: str | None = None
    duration_ms: int | None = None
    cost_cents: float | None = None
    call_successful: bool | None = None
    attempts: list[CallAttempt] = Field(default_factory=list)
    next_call_at: datetime | None = None
    time_zone: str | None = None
    warnings: list[str] = Field(default_factory=list)
    variables: dict[str, str] = Field(default_factory=dict)

    @property
    def reached(self) -> bool:
        """Whether a call connected (ended, not for a failure reason)."""
        return (
            self.call_status == "ended"
            and self.disconnection_reason not in FAILED_DISCONNECTION_REASONS
        )

    def as_row(self, *, mask_numbers: bool) -> dict[str, Any]:
        """A flat record for a table or a CSV file, without the variables."""

        def shown(number: str | None) -> str:
            if not number:
                return ""
            return mask_phone_number(number, always=True) if mask_numbers else number

        return {
            "row": self.row,
            "outcome": self.outcome,
            "to_number": shown(self.to_number),
            "raw_phone": shown(self.raw_phone),
            "call_status": self.call_status or "",
            "disconnection_reason": self.disconnection_reason or "",
            "duration_seconds": _seconds(self.duration_ms),
            "call_successful": ""
            if self.call_successful is None
            else self.call_successful,
            "cost_cents": "" if self.cost_cents is None else round(self.cost_cents, 2),
            "attempts": len(self.attempts),
            "next_call_at": _moment(self.next_call_at),
            "time_zone": self.time_zone or "",
            "call_id": self.call_id or "",
            "reason": self.reason or "",
            "duplicate_of": self.duplicate_of or "",
            "warnings": "; ".join(self.warnings),
        }


class CampaignResult(BaseModel):
    """Every row of a campaign, with counts; `rows` is in input order."""

    campaign_id: str
    from_number: str
    started_at: datetime
    finished_at: datetime
    rows: list[ContactResult]
    warnings: list[str] = Field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Rows by outcome."""
        return dict(collections.Counter(row.outcome for row in self.rows))

    @property
    def dialled(self) -> list[ContactResult]:
        """The rows for which a call was placed."""
        return [row for row in self.rows if row.attempts]

    @property
    def calls_placed(self) -> int:
        """Retell calls placed for every row, redials included."""
        return sum(len(row.attempts) for row in self.rows)

    @property
    def still_due(self) -> list[ContactResult]:
        """Rows with a call still due when the campaign's deadline came."""
        return [row for row in self.rows if row.next_call_at is not None]

    @property
    def calls_by_status(self) -> dict[str, int]:
        """Final call status of dialled rows; "unknown" where none was read."""
        # A row timed out before any successful read has no status, and None
        # cannot be sorted with strings in the summary table.
        return dict(
            collections.Counter(row.call_status or "unknown" for row in self.dialled)
        )

    @property
    def calls_by_reason(self) -> dict[str, int]:
        """Disconnection reason of dialled rows."""
        return dict(
            collections.Counter(
                row.disconnection_reason or "none" for row in self.dialled
            )
        )

    @property
    def total_duration_ms(self) -> int:
        """Talk time of every attempt."""
        return sum(
            attempt.duration_ms or 0 for row in self.rows for attempt in row.attempts
        )

    @property
    def total_cost_cents(self) -> float | None:
        """Cost of every attempt, when Retell reported costs."""
        costs = [
            attempt.cost_cents
            for row in self.rows
            for attempt in row.attempts
            if attempt.cost_cents is not None
        ]
        return sum(costs) if costs else None

    def table(self, *, mask_numbers: bool = True) -> list[dict[str, Any]]:
        """One flat record per row, for a table artifact or a file."""
        return [row.as_row(mask_numbers=mask_numbers) for row in self.rows]

    def artifact_table(
        self, max_bytes: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The masked table's first rows that fit in an artifact, and how many did not.

        Rows are kept in input order up to the first one that would take the
        table past `max_bytes` as Prefect's artifact event holds it, so the table
        always shows rows 1 to n of the result and nothing further.

        Args:
            max_bytes: The budget; None reads `ARTIFACT_TABLE_MAX_BYTES` at call
                time.

        Returns:
            The records kept, and the count of rows left out.
        """
        budget = ARTIFACT_TABLE_MAX_BYTES if max_bytes is None else max_bytes
        records = self.table(mask_numbers=True)
        size = _event_size([])
        for kept, record in enumerate(records):
            # json.dumps joins records with ", ", and escaping works character
            # by character, so each record adds its own escaped size and the
            # separator's two bytes.
            size += _event_size(record) - 2 + (2 if kept else 0)
            if size > budget:
                return records[:kept], len(records) - kept
        return records, 0

    def summary_markdown(self) -> str:
        """A short report: counts by outcome, status and reason, time and cost."""
        seconds = (self.finished_at - self.started_at).total_seconds()
        lines = [
            f"# Campaign {self.campaign_id}",
            "",
            f"{len(self.rows)} rows from "
            f"{mask_phone_number(self.from_number, always=True)}, "
            f"{len(self.dialled)} dialled ({self.calls_placed} calls, redials "
            f"included), in {seconds:.1f} s.",
            "",
            *_count_table("Outcome", "Rows", self.counts),
            *_count_table("Call status", "Calls", self.calls_by_status),
            *_count_table("Disconnection reason", "Calls", self.calls_by_reason),
            f"Total talk time: {self.total_duration_ms / 1000:.0f} s.",
        ]
        cost = self.total_cost_cents
        if cost is not None:
            lines.append(f"Total cost: ${cost / 100:.2f}.")
        elif self.dialled:
            lines.append("Cost: not reported.")
        lines += self._not_dialled()
        lines += self._due()
        if self.warnings:
            lines += ["", "## Warnings", "", *[f"- {text}" for text in self.warnings]]
        return "\n".join(lines) + "\n"

    def _not_dialled(self, most: int = 50) -> list[str]:
        """Rows that got no final call, by row number and reason (no numbers)."""
        rows = [row for row in self.rows if row.outcome != "called"]
        if not rows:
            return []
        lines = ["", "## Rows without a finished call", ""]
        lines += [
            f"- row {row.row}: {row.outcome}, {row.reason}" for row in rows[:most]
        ]
        if len(rows) > most:
            lines.append(f"- and {len(rows) - most} more; see the results table")
        return lines

    def _due(self, most: int = 50) -> list[str]:
        """Rows with a call still due at the deadline, and when (no numbers)."""
        rows = self.still_due
        if not rows:
            return []
        lines = [
            "",
            "## Calls still due at the deadline",
            "",
            "Run the campaign again with the same campaign_id to place them.",
            "",
        ]
        lines += [
            f"- row {row.row}: due {_moment(row.next_call_at)}"
            + (f" (recipient's time zone {row.time_zone})" if row.time_zone else "")
            for row in rows[:most]
        ]
        if len(rows) > most:
            lines.append(f"- and {len(rows) - most} more; see the results table")
        return lines


def _count_table(title: str, unit: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    rows = [f"| {key} | {value} |" for key, value in sorted(counts.items())]
    return [f"| {title} | {unit} |", "|---|---:|", *rows, ""]


def _event_size(value: object) -> int:
    """Bytes `value` takes in a Prefect event: JSON, held as a JSON string."""
    return len(json.dumps(json.dumps(value)))


def _moment(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds")


def _seconds(duration_ms: int | None) -> str:
    return "" if duration_ms is None else f"{duration_ms / 1000:.1f}"


_E164 = re.compile(r"\+\d{7,15}")


def inert_cell(value: object) -> object:
    """Keep a spreadsheet from running a cell of a CSV file as a formula.

    A cell that starts with =, +, -, @, a tab or a carriage return is prefixed
    with a quote, as spreadsheets expect; an E.164 number keeps its plus sign.

    Example:
        >>> inert_cell("=HYPERLINK(1)"), inert_cell("+14155550123")
        ("'=HYPERLINK(1)", '+14155550123')
    """
    if not isinstance(value, str) or not value or _E164.fullmatch(value):
        return value
    return "'" + value if value[0] in "=+-@\t\r" else value
