"""The `prefect-retell` command: run the sandbox, a campaign, or the demo."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

__all__ = ["main"]

DEMO_FROM_NUMBER = "+16505550101"
# Retell's 2 s at the sandbox's default speed (a simulated second lasts 20 ms): the
# poll interval scales the whole poll schedule, so it must match the sandbox's time.
SANDBOX_POLL_INTERVAL_SECONDS = 2.0 * 0.02


def _quiet_prefect_defaults() -> None:
    # Prefect's embedded server reaches out for analytics at start; a closed
    # network makes that slow and noisy. The user's own settings win.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefect-retell",
        description="Outbound phone call campaigns through Retell AI, run by Prefect.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser(
        "sandbox",
        help="serve a Retell-compatible sandbox API on this machine",
        description="Serve a Retell-compatible API that places no real calls. "
        "Point RETELL_BASE_URL at the address it prints.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765, help="default: 8765")
    sandbox.add_argument(
        "--api-key",
        help="the key it accepts (default: a fixed sandbox key, printed at start)",
    )
    sandbox.add_argument(
        "--seed",
        type=int,
        default=0,
        help="chooses each number's call outcome (default: 0)",
    )
    sandbox.add_argument(
        "--time-scale",
        type=_positive_float,
        default=None,
        help="real seconds per simulated second (default: 0.02)",
    )

    campaign = commands.add_parser(
        "campaign",
        help="call every contact of a CSV or TSV file",
        description="Call every valid contact of a list and report every row.",
    )
    campaign.add_argument("contacts", help="path of a CSV or TSV contact list")
    _add_campaign_options(campaign)

    demo = commands.add_parser(
        "demo",
        help="run a campaign over a sample list against a sandbox, no set-up",
        description="Run a campaign over a bundled sample list against a sandbox "
        "started in this process, on Prefect's embedded server. No key needed.",
    )
    demo.add_argument("--results", help="write one row per contact (.csv or .json)")
    return parser


def _add_campaign_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-number", required=True, help="the account's number to call from, E.164"
    )
    parser.add_argument(
        "--agent-id",
        help="agent for these calls (default: the number's outbound agents)",
    )
    parser.add_argument(
        "--cps", type=_positive_int, default=1, help="calls per second (default: 1)"
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        help="calls live at once (default: the account's limit)",
    )
    parser.add_argument(
        "--default-region",
        default="US",
        help="country of numbers without a country code (default: US)",
    )
    parser.add_argument(
        "--phone-column", help="column holding the numbers (default: found by name)"
    )
    parser.add_argument(
        "--encoding",
        help="the file's encoding, e.g. utf-8, cp1252, utf-16 (default: found from "
        "its bytes)",
    )
    parser.add_argument(
        "--delimiter",
        help="the field separator, e.g. ';' or tab as $'\\t' (default: found from "
        "the file)",
    )
    parser.add_argument(
        "--credentials",
        help="name of a saved RetellCredentials "
        "block (default: RETELL_API_KEY and RETELL_BASE_URL)",
    )
    parser.add_argument(
        "--campaign-id",
        help="a stable name for the campaign; run again under the same name, it "
        "resumes: calls already placed are followed, never dialled again "
        "(default: a name derived from the list's content, the from-number and "
        "the agent; give a new name to call the same list again)",
    )
    parser.add_argument(
        "--poll-interval-seconds",
        type=_positive_float,
        default=2.0,
        help="shortest pause between two reads of the live calls; each call is "
        "read more rarely as it ages (default: 2)",
    )
    parser.add_argument(
        "--call-timeout-seconds",
        type=_positive_float,
        default=3600.0,
        help="longest time to follow one call; a call still live then is stopped "
        "and reported timed_out (default: 3600)",
    )
    parser.add_argument(
        "--results",
        help="write one row per input row to this file, CSV or JSON by its extension",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run against a sandbox started in this process",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    _quiet_prefect_defaults()
    if args.command == "sandbox":
        return _serve(args)
    if args.command == "demo":
        return _demo(args)
    return _campaign(args)


def _serve(args: argparse.Namespace) -> int:
    from prefect_retell.sandbox import (
        DEFAULT_SANDBOX_API_KEY,
        SandboxConfig,
        run_sandbox,
    )

    settings = {"seed": args.seed, "api_key": args.api_key or DEFAULT_SANDBOX_API_KEY}
    if args.time_scale is not None:
        settings["time_scale"] = args.time_scale
    config = SandboxConfig(**settings)

    def ready(base_url: str) -> None:
        print(f"Retell sandbox serving at {base_url}", flush=True)
        if not args.api_key:
            print(f"It accepts the sandbox key {DEFAULT_SANDBOX_API_KEY}", flush=True)
        print(f"  export RETELL_BASE_URL={base_url}", flush=True)
        if not args.api_key:
            print(f"  export RETELL_API_KEY={DEFAULT_SANDBOX_API_KEY}", flush=True)
        print("Stats: GET /sandbox/stats. Stop with Ctrl-C.", flush=True)

    try:
        run_sandbox(config, host=args.host, port=args.port, on_ready=ready)
    except OSError as exc:
        print(
            f"error: cannot serve on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _results_problem(results: str | None) -> str | None:
    """Why the results file could not be written, found before anyone is dialled."""
    if not results:
        return None
    path = Path(results)
    if path.suffix.lower() not in (".csv", ".json"):
        return f"--results {results}: the file must end in .csv or .json"
    if not path.parent.is_dir():
        return f"--results {results}: folder {path.parent} does not exist"
    return None


def _campaign(args: argparse.Namespace) -> int:
    if not Path(args.contacts).is_file():
        print(f"error: contact list {args.contacts} does not exist", file=sys.stderr)
        return 2
    if problem := _results_problem(args.results):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options = {
        "contacts": str(args.contacts),
        "from_number": args.from_number,
        "cps": args.cps,
        "max_concurrency": args.max_concurrency,
        "agent_id": args.agent_id,
        "default_region": args.default_region,
        "phone_column": args.phone_column,
        "encoding": args.encoding,
        "delimiter": args.delimiter,
        "campaign_id": args.campaign_id,
        "poll_interval_seconds": args.poll_interval_seconds,
        "call_timeout_seconds": args.call_timeout_seconds,
    }
    return _run(options, args.credentials, args.results, sandbox=args.sandbox)


def _demo(args: argparse.Namespace) -> int:
    if problem := _results_problem(args.results):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    sample = resources.files("prefect_retell") / "data" / "sample-contacts.csv"
    with resources.as_file(sample) as path:
        options = {
            "contacts": str(path),
            "from_number": DEMO_FROM_NUMBER,
            "cps": 5,
            "poll_interval_seconds": SANDBOX_POLL_INTERVAL_SECONDS,
        }
        return _run(options, None, args.results, sandbox=True)


class _UserErrorsWithoutTraceback(logging.Filter):
    """Drop the traceback Prefect logs for an error the user can fix.

    The command prints such an error in one line; a traceback above it hides it.
    """

    def __init__(self, kinds: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info = None
            record.exc_text = None
        return True


def _run(
    options: dict, credentials: str | None, results: str | None, *, sandbox: bool
) -> int:
    from prefect_retell.errors import RetellError
    from prefect_retell.flows.campaign import derived_campaign_id

    if not sandbox and not options.get("campaign_id"):
        # Named here, so that an interrupted run can say how to resume it.
        options["campaign_id"] = derived_campaign_id(
            options["contacts"], options["from_number"], options.get("agent_id"), None
        )
    quiet = _UserErrorsWithoutTraceback(
        (RetellError, ValueError, KeyboardInterrupt, asyncio.CancelledError)
    )
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
    try:
        if sandbox:
            result, stats = _run_on_sandbox(options)
        else:
            result, stats = asyncio.run(_flow(options, credentials)), None
    except (RetellError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if sandbox:
            print("\nInterrupted; the sandbox ended with it.", file=sys.stderr)
        else:
            print(
                f"\nInterrupted. Run the same command again to resume campaign "
                f"{options['campaign_id']}: calls already placed are not dialled "
                "again.",
                file=sys.stderr,
            )
        return 130
    print()
    print(result.summary_markdown())
    if stats is not None:
        print(_sandbox_report(stats, options["from_number"]))
    if results:
        _write_results(result, Path(results))
        print(f"Wrote {len(result.rows)} rows to {results}")
    return 0


async def _flow(options: dict, credentials):
    from prefect_retell.flows import outbound_campaign

    return await outbound_campaign(credentials=credentials, **options)


def _run_on_sandbox(options: dict):
    from prefect_retell.blocks import RetellCredentials
    from prefect_retell.sandbox import serve_sandbox

    with serve_sandbox() as server:
        credentials = RetellCredentials(
            api_key=server.sandbox.config.api_key, base_url=server.base_url
        )
        if not options.get("campaign_id"):
            # A new sandbox knows no earlier calls: a rehearsal is a new campaign
            # each time, not a resumption of the last one.
            options["campaign_id"] = f"sandbox-{uuid.uuid4().hex[:12]}"
        if options.get("poll_interval_seconds") == 2.0:
            # Sandbox calls last seconds, not minutes.
            options["poll_interval_seconds"] = SANDBOX_POLL_INTERVAL_SECONDS
        result = asyncio.run(_flow(options, credentials))
        return result, server.sandbox.stats()


def _sandbox_report(stats: dict, from_number: str) -> str:
    from prefect_retell.sandbox.report import creation_report

    return "Sandbox record: " + creation_report(stats, from_number).describe()


def _write_results(result, path: Path) -> None:
    if path.suffix.lower() == ".json":
        rows = [row.model_dump(mode="json") for row in result.rows]
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    table = result.table(mask_numbers=False)
    names = sorted({name for row in result.rows for name in row.variables})
    for record, row in zip(table, result.rows, strict=True):
        # A column named like a result field ("reason", say) keeps a prefix.
        record.update(
            {
                (f"column_{name}" if name in record else name): row.variables.get(
                    name, ""
                )
                for name in names
            }
        )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else [])
        writer.writeheader()
        writer.writerows([{k: _inert(v) for k, v in rec.items()} for rec in table])


_E164 = re.compile(r"\+\d{7,15}")


def _inert(value: object) -> object:
    """Keep a spreadsheet from running a cell of the contact list as a formula.

    A cell that starts with =, +, -, @ or a tab is prefixed with a quote, as
    spreadsheets expect; an E.164 number keeps its plus sign.
    """
    if not isinstance(value, str) or not value or _E164.fullmatch(value):
        return value
    return "'" + value if value[0] in "=+-@\t\r" else value


if __name__ == "__main__":
    raise SystemExit(main())
