"""Do-not-call lists: suppressed numbers are reported and never dialled.

Every test runs a real campaign against the sandbox and reads the sandbox's
record of the calls it created.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TIME_SCALE
from flow_support import TWILIO, run_campaign
from prefect_retell import RetellConfigurationError, SuppressionList, outbound_campaign
from prefect_retell.sandbox import SandboxConfig, SandboxServer, serve_sandbox

LISTED = "+14155550180"
LISTED_LOCAL = "+14155550181"
FREE = "+14155550182"
RETELL_DNC = "+14155550183"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _contacts() -> list[dict[str, str]]:
    return [
        {"phone": "+1 415 555 0180", "name": "Ada"},
        {"phone": "(415) 555-0181", "name": "Grace"},
        {"phone": FREE, "name": "Linus"},
    ]


async def test_numbers_in_a_suppression_file_are_never_dialled(
    prefect_server, sandbox, tmp_path
):
    """Listed numbers, however written, are suppressed; the others are called."""
    dnc = _write(
        tmp_path,
        "dnc.txt",
        "# opted out\n(415) 555-0180\n415.555.0181\nnot a number\n",
    )

    run = await run_campaign(
        sandbox,
        contacts=_contacts(),
        from_number=TWILIO,
        suppression_file=dnc,
    )

    assert [(row.outcome, row.reason) for row in run.result.rows[:2]] == [
        (
            "suppressed",
            "on the do-not-call list (suppression file 'dnc.txt'); not dialled",
        ),
    ] * 2
    assert run.calls_to(LISTED) == run.calls_to(LISTED_LOCAL) == []
    assert run.row(3).outcome == "called"
    assert len(run.calls_to(FREE)) == 1


async def test_bad_suppression_entries_are_warned_about_without_the_entry(
    prefect_server, sandbox, tmp_path
):
    """An entry that is not a number is named by its line in a campaign warning."""
    dnc = _write(tmp_path, "dnc.txt", "(415) 555-0180\n415-555-CALL\n")

    run = await run_campaign(
        sandbox, contacts=_contacts(), from_number=TWILIO, suppression_file=dnc
    )

    assert (
        "suppression file 'dnc.txt': 1 entry is not a valid number and suppresses "
        "nothing (line 2: contains letters 'C', 'A', 'L' (letters are never read as "
        "keypad digits))"
    ) in run.result.warnings


async def test_a_crm_export_with_a_phone_column_suppresses_its_numbers(
    prefect_server, sandbox, tmp_path
):
    """A CSV with a Phone column (and other columns) is read like a contact list."""
    dnc = _write(
        tmp_path, "opt-outs.csv", "Name,Phone,Since\nAda,+14155550180,2026-01-02\n"
    )

    run = await run_campaign(
        sandbox, contacts=_contacts(), from_number=TWILIO, suppression_file=dnc
    )

    assert [row.outcome for row in run.result.rows] == [
        "suppressed",
        "called",
        "called",
    ]
    assert run.calls_to(LISTED) == []


async def test_numbers_in_a_suppression_block_are_never_dialled(
    prefect_server, sandbox
):
    """A saved SuppressionList block suppresses its numbers, written locally too."""
    await SuppressionList(numbers=["415 555 0181"]).asave(
        "test-dnc-block", overwrite=True
    )

    run = await run_campaign(
        sandbox,
        contacts=_contacts(),
        from_number=TWILIO,
        suppression_block="test-dnc-block",
    )

    row = run.row(2)
    assert (row.outcome, row.reason) == (
        "suppressed",
        "on the do-not-call list (suppression block 'test-dnc-block'); not dialled",
    )
    assert run.calls_to(LISTED_LOCAL) == []
    assert len(run.calls_to(LISTED)) == 1


async def test_missing_suppression_file_stops_the_campaign_before_dialling(
    prefect_server, sandbox, credentials, tmp_path
):
    """A campaign never starts without its do-not-call list."""
    missing = tmp_path / "missing.txt"

    with pytest.raises(RetellConfigurationError) as caught:
        await outbound_campaign(
            contacts=_write(tmp_path, "contacts.csv", f"phone\n{FREE}\n"),
            from_number=TWILIO,
            credentials=credentials,
            suppression_file=str(missing),
        )

    assert str(caught.value) == (
        f"suppression file '{missing}' does not exist; nothing was dialled."
    )
    assert sandbox.sandbox.stats()["calls"] == []


async def test_missing_suppression_block_stops_the_campaign_before_dialling(
    prefect_server, sandbox, credentials, tmp_path
):
    """A block name that is not saved is an error, not an empty list."""
    with pytest.raises(RetellConfigurationError, match="'no-such-dnc-block'"):
        await outbound_campaign(
            contacts=_write(tmp_path, "contacts.csv", f"phone\n{FREE}\n"),
            from_number=TWILIO,
            credentials=credentials,
            suppression_block="no-such-dnc-block",
        )

    assert sandbox.sandbox.stats()["calls"] == []


# --- Retell's own do-not-call list: honor_internal_dnc ------------------------------


@pytest.fixture(scope="module")
def dnc_sandbox_server() -> Iterator[SandboxServer]:
    """A sandbox whose account has RETELL_DNC on its internal do-not-call list."""
    config = SandboxConfig(time_scale=TIME_SCALE, dnc_numbers=[RETELL_DNC])
    with serve_sandbox(config) as server:
        yield server


@pytest.fixture
def dnc_sandbox(dnc_sandbox_server: SandboxServer) -> SandboxServer:
    """The do-not-call sandbox, cleared."""
    dnc_sandbox_server.sandbox.reset()
    return dnc_sandbox_server


async def test_honor_internal_dnc_reports_retells_refusal_as_suppressed(
    prefect_server, dnc_sandbox
):
    """With honor_internal_dnc, Retell refuses the listed number; the row says so."""
    run = await run_campaign(
        dnc_sandbox,
        contacts=[{"phone": RETELL_DNC}, {"phone": FREE}],
        from_number=TWILIO,
        honor_internal_dnc=True,
    )

    row = run.row(1)
    assert row.outcome == "suppressed"
    assert row.reason.startswith(
        "Retell refused the call because the number is on the account's do-not-call "
        "list (honor_internal_dnc): POST /v2/create-phone-call answered 400"
    )
    assert run.calls_to(RETELL_DNC) == []
    assert run.row(2).outcome == "called"


async def test_without_honor_internal_dnc_retell_places_the_call(
    prefect_server, dnc_sandbox
):
    """The flag is what stops the call: without it the listed number is called."""
    run = await run_campaign(
        dnc_sandbox, contacts=[{"phone": RETELL_DNC}], from_number=TWILIO
    )

    assert run.row(1).outcome == "called"
    assert len(run.calls_to(RETELL_DNC)) == 1


@pytest.mark.parametrize("text", ["", "phone\n", "# nobody yet\n\n"])
async def test_empty_suppression_file_stops_the_campaign_before_dialling(
    prefect_server, sandbox, credentials, tmp_path, text
):
    """A do-not-call file with no number is refused, not taken as 'call everyone'."""
    with pytest.raises(RetellConfigurationError) as caught:
        await outbound_campaign(
            contacts=_write(tmp_path, "contacts.csv", f"phone\n{FREE}\n"),
            from_number=TWILIO,
            credentials=credentials,
            suppression_file=_write(tmp_path, "dnc.txt", text),
        )

    assert "suppression file 'dnc.txt' holds no valid number" in str(caught.value)
    assert sandbox.sandbox.stats()["calls"] == []


async def test_a_comment_after_a_number_still_suppresses_it(sandbox, tmp_path):
    """'+1 415 555 0180  # asked on 3 May' suppresses +14155550180."""
    run = await run_campaign(
        sandbox,
        contacts=_contacts(),
        from_number=TWILIO,
        suppression_file=_write(
            tmp_path, "dnc.txt", "+1 415 555 0180  # asked on 3 May\n"
        ),
    )

    outcomes = {row.to_number: row.outcome for row in run.result.rows}
    assert outcomes[LISTED] == "suppressed"
    assert LISTED not in {call["to_number"] for call in run.stats["calls"]}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("dnc.txt", "-4155550180\n"),
        ("dnc.csv", "Phone,Note\n-4155550180,asked twice\n+14155550181,\n"),
    ],
)
async def test_a_do_not_call_entry_with_a_minus_sign_still_blocks_its_number(
    sandbox, tmp_path, name, text
):
    """A contact list refuses '-4155550180'; a do-not-call list blocks it anyway."""
    run = await run_campaign(
        sandbox,
        contacts=_contacts(),
        from_number=TWILIO,
        suppression_file=_write(tmp_path, name, text),
    )

    outcomes = {row.to_number: row.outcome for row in run.result.rows}
    assert outcomes[LISTED] == "suppressed"
    assert LISTED not in {call["to_number"] for call in run.stats["calls"]}
    assert outcomes[FREE] == "called"
