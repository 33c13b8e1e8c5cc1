"""The `prefect-retell` command, run as a subprocess as a user would run it.

Each campaign run starts its own embedded Prefect server (10-15 s), so the three
runs start together in one module fixture, each with its own PREFECT_HOME, and the
tests wait for the one they read.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import DATA

CLI = Path(sys.executable).with_name("prefect-retell")
CRM_EXPORT = DATA / "crm-export.csv"
TELNYX = "+16505550101"

EXPECTED_OUTCOMES = {
    **{row: "called" for row in range(1, 42)},
    9: "rejected",
    10: "rejected",
    11: "duplicate",
    15: "rejected",
    16: "rejected",
    17: "rejected",
}


def _environment(home: Path) -> dict[str, str]:
    """The test process's environment without Prefect or Retell settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "RETELL_"))
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # Three embedded servers start at once on two cores.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


@dataclass
class CliRun:
    """A `prefect-retell` process started in the background."""

    process: subprocess.Popen
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    _done: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, home: Path, *args: str) -> CliRun:
        home.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [str(CLI), *args],
            env=_environment(home),
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return cls(process)

    def finish(self) -> CliRun:
        """Wait for the process once and keep its exit status and output."""
        if not self._done:
            self.stdout, self.stderr = self.process.communicate(timeout=300)
            self.returncode = self.process.returncode
            self._done = True
        return self


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """A CSV run, a JSON run and a refused run, started at the same time."""
    base = tmp_path_factory.mktemp("cli")
    campaign = ["campaign", str(CRM_EXPORT), "--sandbox", "--from-number", TELNYX]
    runs = {
        "csv": CliRun.start(
            base / "csv", *campaign, "--cps", "5", "--results", str(base / "out.csv")
        ),
        "json": CliRun.start(
            base / "json", *campaign, "--cps", "5", "--results", str(base / "out.json")
        ),
        "cps20": CliRun.start(base / "cps20", *campaign, "--cps", "20"),
    }
    yield base, runs
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_campaign_writes_every_row_to_csv(cli_runs):
    """`--results out.csv`: exit 0 and 41 rows with the right outcomes."""
    base, runs = cli_runs
    run = runs["csv"].finish()
    assert run.returncode == 0, run.stderr

    with (base / "out.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    assert {int(r["row"]): r["outcome"] for r in rows} == EXPECTED_OUTCOMES
    assert [int(r["row"]) for r in rows] == list(range(1, 42))
    assert rows[0]["to_number"] == "+14155550101"


def test_campaign_writes_every_row_to_json(cli_runs):
    """`--results out.json`: exit 0 and 41 records with the right outcomes."""
    base, runs = cli_runs
    run = runs["json"].finish()
    assert run.returncode == 0, run.stderr

    rows = json.loads((base / "out.json").read_text(encoding="utf-8"))

    assert [r["row"] for r in rows] == list(range(1, 42))
    assert {r["row"]: r["outcome"] for r in rows} == EXPECTED_OUTCOMES
    assert rows[16]["reason"] == (
        "destination country GB is not allowed for this from-number "
        "(allowed: CA, IN, US)"
    )


def test_refused_campaign_exits_1_with_the_reason(cli_runs):
    """--cps 20 on a Telnyx number (16 at most) exits 1 and says why."""
    _, runs = cli_runs
    run = runs["cps20"].finish()

    assert run.returncode == 1
    assert (
        "error: cps=20 is above the 16 calls per second that a retell-telnyx "
        "number allows; nothing was dialled.\n"
    ) in run.stderr


def test_refused_campaign_prints_no_traceback(cli_runs):
    """The refused run prints its message without a Python traceback."""
    _, runs = cli_runs
    run = runs["cps20"].finish()

    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [("nowhere.csv", "does not exist"), ("", "is a folder, not a file")],
)
def test_unusable_contact_list_exits_2_naming_it(tmp_path, name, problem):
    """A contact list that does not exist, or is a folder, exits 2 saying which."""
    contacts = tmp_path / name if name else tmp_path

    run = CliRun.start(
        tmp_path / "home",
        "campaign",
        str(contacts),
        "--sandbox",
        "--from-number",
        TELNYX,
    ).finish()

    assert run.returncode == 2
    assert run.stderr == f"error: contact list {contacts} {problem}\n"


def test_redial_delay_under_10_seconds_is_refused_before_anything_starts(tmp_path):
    """--redial-delay-seconds 3 is refused by the argument check, naming the floor."""
    run = CliRun.start(
        tmp_path / "home",
        "campaign",
        str(DATA / "crm-export.csv"),
        "--sandbox",
        "--from-number",
        TELNYX,
        "--redial-delay-seconds",
        "3",
    ).finish()

    assert run.returncode == 2
    assert "--redial-delay-seconds: must be at least 10, not 3" in run.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("out.xlsx", "the file must end in .csv or .json"),
        ("missing-folder/out.csv", "folder {folder} does not exist"),
    ],
)
def test_unusable_results_file_is_refused_before_dialling(tmp_path, name, problem):
    """A --results path that cannot be written exits 2 before any call."""
    target = tmp_path / name

    run = CliRun.start(
        tmp_path / "home",
        "campaign",
        str(DATA / "crm-export.csv"),
        "--sandbox",
        "--from-number",
        TELNYX,
        "--results",
        str(target),
    ).finish()

    assert run.returncode == 2
    detail = problem.format(folder=target.parent)
    assert run.stderr == f"error: --results {target}: {detail}\n"


def test_bad_calling_window_exits_2_naming_the_option(tmp_path):
    """--call-hours that is not HH:MM-HH:MM exits 2 before any call."""
    run = CliRun.start(
        tmp_path / "home",
        "campaign",
        str(DATA / "crm-export.csv"),
        "--sandbox",
        "--from-number",
        TELNYX,
        "--call-hours",
        "9-17",
    ).finish()

    assert run.returncode == 2
    assert run.stderr.startswith("error: --call-hours: '9' is not a time of day")


def test_suppression_file_and_redials_from_the_command_line(tmp_path):
    """--suppression-file keeps a number from being dialled, with a window set."""
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("phone\n+14155550501\n+14155550502\n", encoding="utf-8")
    do_not_call = tmp_path / "dnc.txt"
    do_not_call.write_text("+1 (415) 555-0502\n", encoding="utf-8")
    results = tmp_path / "out.json"

    run = CliRun.start(
        tmp_path / "home",
        "campaign",
        str(contacts),
        "--sandbox",
        "--from-number",
        TELNYX,
        "--suppression-file",
        str(do_not_call),
        "--call-hours",
        "00:00-24:00",
        "--results",
        str(results),
    ).finish()

    assert run.returncode == 0, run.stderr
    rows = {row["to_number"]: row["outcome"] for row in json.loads(results.read_text())}
    assert rows == {"+14155550501": "called", "+14155550502": "suppressed"}
