"""CampaignResult summaries, built from rows directly (no flow needed)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from prefect_retell.results import CallAttempt, CampaignResult, ContactResult

START = datetime(2026, 12, 8, 9, 0, tzinfo=timezone.utc)


def _result(*rows: ContactResult) -> CampaignResult:
    return CampaignResult(
        campaign_id="fx",
        from_number="+16505550100",
        started_at=START,
        finished_at=START,
        rows=list(rows),
    )


def test_call_without_a_status_is_counted_as_unknown():
    """A dialled row never read successfully counts under status "unknown"."""
    row = ContactResult(
        row=1,
        outcome="timed_out",
        to_number="+14155550123",
        call_id="call_fx_1",
        attempts=[CallAttempt(attempt=1, call_id="call_fx_1")],
    )

    assert _result(row).calls_by_status == {"unknown": 1}


def test_summary_lists_a_call_without_a_status():
    """The summary renders a status-less call instead of failing to sort it."""
    rows = [
        ContactResult(
            row=1,
            outcome="timed_out",
            to_number="+14155550123",
            call_id="call_fx_1",
            attempts=[CallAttempt(attempt=1, call_id="call_fx_1")],
        ),
        ContactResult(
            row=2,
            outcome="called",
            to_number="+14155550124",
            call_id="call_fx_2",
            call_status="ended",
            attempts=[CallAttempt(attempt=1, call_id="call_fx_2", call_status="ended")],
        ),
    ]

    summary = _result(*rows).summary_markdown()

    assert "| Call status | Calls |\n|---|---:|\n| ended | 1 |\n| unknown | 1 |\n" in (
        summary
    )


def test_artifact_table_masks_numbers_even_when_logs_show_them(monkeypatch):
    """Full numbers turned on for log lines still never reach the stored table."""
    monkeypatch.setenv("PREFECT_RETELL_LOG_FULL_NUMBERS", "true")
    row = ContactResult(
        row=1,
        outcome="rejected",
        to_number="+14155550123",
        raw_phone="(415) 555-0123",
        reason="fx",
    )

    (record,) = _result(row).table(mask_numbers=True)

    assert (record["to_number"], record["raw_phone"]) == ("+*******0123", "******0123")
    assert "+16505550100" not in _result(row).summary_markdown()


def test_results_csv_keeps_formulas_inert(tmp_path):
    """A formula from the contact list is written so a spreadsheet shows it as
    text; E.164 numbers keep their plus sign."""
    import csv

    from prefect_retell.cli import _write_results

    row = ContactResult(
        row=1,
        outcome="rejected",
        raw_phone='=HYPERLINK("x")',
        reason="a spreadsheet formula, not a number",
        variables={"note": "@cmd"},
    )
    called = ContactResult(
        row=2, outcome="called", to_number="+14155550123", raw_phone="+14155550123"
    )
    path = tmp_path / "out.csv"

    _write_results(_result(row, called), path)

    first, second = csv.DictReader(path.open())
    assert (first["raw_phone"], first["note"]) == ('\'=HYPERLINK("x")', "'@cmd")
    assert second["to_number"] == "+14155550123"


def _redialled_row() -> ContactResult:
    """A row called twice without an answer, its third call due after a deadline."""
    return ContactResult(
        row=3,
        outcome="called",
        to_number="+14155550161",
        call_id="call_fx_2",
        call_status="not_connected",
        disconnection_reason="dial_no_answer",
        attempts=[
            CallAttempt(attempt=1, call_id="call_fx_1", duration_ms=0),
            CallAttempt(attempt=2, call_id="call_fx_2", duration_ms=0),
        ],
        next_call_at=datetime(2026, 3, 9, 13, 0, tzinfo=timezone.utc),
        time_zone="America/New_York",
    )


def test_summary_counts_every_call_and_lists_calls_still_due():
    """Redials count as calls, and a call due after the deadline is listed."""
    summary = _result(_redialled_row()).summary_markdown()

    assert "1 dialled (2 calls, redials included)" in summary
    assert (
        "## Calls still due at the deadline\n\n"
        "Run the campaign again with the same campaign_id to place them.\n\n"
        "- row 3: due 2026-03-09T13:00:00+00:00 (recipient's time zone "
        "America/New_York)\n"
    ) in summary


def test_table_row_has_attempts_next_call_and_time_zone():
    """The flat record shows how many calls, the next one due, and the zone."""
    (record,) = _result(_redialled_row()).table()

    assert (record["attempts"], record["next_call_at"], record["time_zone"]) == (
        2,
        "2026-03-09T13:00:00+00:00",
        "America/New_York",
    )


def test_artifact_table_keeps_the_first_rows_that_fit_in_the_budget():
    """Rows are kept in order while the table, as Prefect's event holds it, fits."""
    rows = [
        ContactResult(row=n, outcome="rejected", raw_phone="x", reason="r" * n)
        for n in range(1, 41)
    ]
    full = _result(*rows).table(mask_numbers=True)
    budget = len(json.dumps(json.dumps(full[:17])))

    kept, left_out = _result(*rows).artifact_table(max_bytes=budget)
    everything, none_left = _result(*rows).artifact_table(max_bytes=10**9)

    assert (kept, left_out) == (full[:17], 23)
    assert (everything, none_left) == (full, 0)
