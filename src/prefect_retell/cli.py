"""The `prefect-retell` command: run the sandbox, a campaign, or the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import signal
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


def _redial_delay(text: str) -> float:
    from prefect_retell.redial import SHORTEST_DELAY_SECONDS

    value = float(text)
    if value < SHORTEST_DELAY_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be at least {SHORTEST_DELAY_SECONDS:g}, not {value:g}"
        )
    return value


# argparse names the type in its message ("invalid <name> value: 'abc'").
_positive_int.__name__ = "whole number"
_positive_float.__name__ = "number"
_redial_delay.__name__ = "number"


def _webhook_url(text: str) -> str:
    from prefect_retell.sandbox.config import check_webhook_url

    try:
        return check_webhook_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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
    sandbox.add_argument(
        "--webhook-url",
        type=_webhook_url,
        default=None,
        help="send each call's call_started, call_ended and call_analyzed "
        "webhooks, signed with the key, to this URL (default: send none)",
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
    _add_webhooks_commands(commands)
    return parser


def _add_webhooks_commands(commands: argparse._SubParsersAction) -> None:
    webhooks = commands.add_parser(
        "webhooks",
        help="receive Retell's call webhooks as Prefect events",
        description="Receive Retell's signed call webhooks and send them on to the "
        "Prefect API as events.",
    )
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the webhook receiver",
        description="Serve the webhook receiver: it checks each webhook's "
        "signature with the Retell API key, answers at once, and sends "
        "retell.call.started, .ended, .analyzed and .failed events to the Prefect "
        "API named by PREFECT_API_URL, queueing them while that API is down. "
        "Point Retell's webhook URL at the address it prints, through a reverse "
        "proxy with TLS.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="default: 8080")
    serve.add_argument(
        "--credentials-block",
        metavar="NAME",
        help="name of a saved RetellCredentials block holding the key flagged for "
        "webhooks (default: RETELL_API_KEY)",
    )
    serve.add_argument(
        "--include-transcript",
        action="store_true",
        help="put each call's transcript in the events; Prefect shows event "
        "payloads to anyone with access to its UI",
    )


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
        "--call-hours",
        metavar="HH:MM-HH:MM",
        help="calling window in each recipient's local time, e.g. 09:00-20:00; "
        "contacts outside it wait (default: any time)",
    )
    parser.add_argument(
        "--call-days",
        metavar="DAYS",
        help="comma-separated days for --call-hours, e.g. Monday,Tuesday "
        "(default: every day)",
    )
    parser.add_argument(
        "--default-timezone",
        help="IANA time zone for numbers that span several zones, for "
        "--call-hours (e.g. America/New_York)",
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=1,
        help="calls per contact, redials included, for no answer, busy and "
        "voicemail (default: 1, no redial)",
    )
    parser.add_argument(
        "--redial-delay-seconds",
        type=_redial_delay,
        default=1800.0,
        help="pause between a call's end and its redial, at least 10 (default: 1800)",
    )
    parser.add_argument(
        "--suppression-file",
        help="do-not-call list: one number a line, or a CSV with a phone column; "
        "its numbers are never dialled",
    )
    parser.add_argument(
        "--honor-internal-dnc",
        action="store_true",
        help="ask Retell to refuse numbers on the account's do-not-call list",
    )
    parser.add_argument(
        "--log-each-call",
        action="store_true",
        help="log a line as each call is created and as it ends (default: the "
        "campaign's progress only)",
    )
    parser.add_argument(
        "--monitor",
        choices=("poll", "events", "none"),
        default="poll",
        help="how calls are followed to their end: poll reads live calls; events "
        "waits for the call events of `prefect-retell webhooks serve` (with "
        "--sandbox, a receiver is started for the sandbox's webhooks); none "
        "places the calls without following them (default: poll)",
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
    if args.command == "webhooks":
        return _serve_webhooks(args)
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
    if args.webhook_url is not None:
        settings["webhook_url"] = args.webhook_url
    config = SandboxConfig(**settings)

    def ready(base_url: str) -> None:
        print(f"Retell sandbox serving at {base_url}", flush=True)
        if not args.api_key:
            print(f"It accepts the sandbox key {DEFAULT_SANDBOX_API_KEY}", flush=True)
        print(f"  export RETELL_BASE_URL={base_url}", flush=True)
        if not args.api_key:
            print(f"  export RETELL_API_KEY={DEFAULT_SANDBOX_API_KEY}", flush=True)
        if args.webhook_url:
            print(f"Call webhooks go to {args.webhook_url}", flush=True)
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


def _serve_webhooks(args: argparse.Namespace) -> int:
    from prefect.settings import PREFECT_API_URL

    from prefect_retell.receiver import create_webhook_app, run_webhook_receiver

    if not PREFECT_API_URL.value():
        # Checked before a block is loaded: with no URL, loading it would start
        # a temporary Prefect server, and the events would go nowhere.
        print(
            "error: no Prefect API to send call events to; set PREFECT_API_URL, "
            "e.g. `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`",
            file=sys.stderr,
        )
        return 2
    try:
        api_key = _webhook_key(args.credentials_block)
        app = create_webhook_app(api_key, include_transcript=args.include_transcript)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # One line per webhook received: what a person watching the receiver wants.
    logging.getLogger("prefect_retell.receiver").setLevel(logging.INFO)

    def ready(url: str) -> None:
        print(f"Receiving Retell webhooks at {url}/", flush=True)
        print(f"Sending call events to the Prefect API at {app.state.prefect_api_url}")
        print(f"Health: GET {url}/healthz. Stop with Ctrl-C.", flush=True)

    try:
        run_webhook_receiver(app, args.host, args.port, on_ready=ready)
    except OSError as exc:
        print(
            f"error: cannot serve on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _webhook_key(block_name: str | None) -> str:
    """The key that signs webhooks: a saved block's, or RETELL_API_KEY."""
    import httpx

    from prefect_retell.blocks import RetellCredentials

    if block_name:
        try:
            credentials = RetellCredentials.load(block_name)
        except httpx.HTTPError as exc:
            raise ValueError(
                f"cannot load block {block_name} from the Prefect API "
                f"({type(exc).__name__}); is the server running?"
            ) from exc
    else:
        credentials = RetellCredentials.from_env()
    return credentials.api_key.get_secret_value()


def _results_problem(results: str | None) -> str | None:
    """Why the results file could not be written, found before anyone is dialled."""
    if not results:
        return None
    path = Path(results)
    if path.suffix.lower() not in (".csv", ".json"):
        return f"--results {results}: the file must end in .csv or .json"
    if not path.parent.is_dir():
        return f"--results {results}: folder {path.parent} does not exist"
    if path.is_dir():
        return f"--results {results}: is a folder, not a file"
    if not os.access(path.parent, os.W_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        return f"--results {results}: cannot be written (permission denied)"
    return None


def _campaign(args: argparse.Namespace) -> int:
    if Path(args.contacts).is_dir():
        print(
            f"error: contact list {args.contacts} is a folder, not a file",
            file=sys.stderr,
        )
        return 2
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
        "monitor": args.monitor,
        "max_attempts": args.max_attempts,
        "redial_delay_seconds": args.redial_delay_seconds,
        "suppression_file": args.suppression_file,
        "honor_internal_dnc": args.honor_internal_dnc,
        "log_each_call": args.log_each_call,
    }
    if args.call_hours or args.call_days is not None or args.default_timezone:
        window = _calling_window(args)
        if isinstance(window, str):
            print(f"error: {window}", file=sys.stderr)
            return 2
        options["calling_window"] = window
    return _run(options, args.credentials, args.results, sandbox=args.sandbox)


def _calling_window(args: argparse.Namespace):
    """The calling window the options describe, or what is wrong with them."""
    from pydantic import ValidationError

    from prefect_retell.windows import CallingWindow

    # Without --call-hours, any hour of the allowed days.
    fields: dict = {"start": "00:00", "end": "24:00"}
    if args.call_hours:
        start, _, end = args.call_hours.partition("-")
        fields.update(start=start.strip(), end=end.strip())
    if args.call_days is not None:
        days = [day.strip().title() for day in args.call_days.split(",")]
        if not any(days):
            return "--call-days: name at least one day, such as Monday,Friday"
        fields["days"] = days
    if args.default_timezone:
        fields["default_timezone"] = args.default_timezone
    try:
        return CallingWindow(**fields)
    except ValidationError as exc:
        options = {
            "start": "--call-hours",
            "end": "--call-hours",
            "days": "--call-days",
        }
        problems = "; ".join(
            f"{options.get(str(error['loc'][0]), '--default-timezone')}: "
            f"{str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        return problems


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
    from prefect.exceptions import TerminationSignal

    from prefect_retell.errors import RetellConfigurationError, RetellError
    from prefect_retell.flows.campaign import derived_campaign_id

    if not sandbox and not options.get("campaign_id"):
        # Named here, so that an interrupted run can say how to resume it.
        options["campaign_id"] = derived_campaign_id(
            options["contacts"], options["from_number"], options.get("agent_id"), None
        )
    _stop_on_sigterm()
    quiet = _UserErrorsWithoutTraceback(
        (
            RetellError,
            ValueError,
            KeyboardInterrupt,
            TerminationSignal,
            asyncio.CancelledError,
        )
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
        if not sandbox and not isinstance(exc, (RetellConfigurationError, ValueError)):
            # Calls may have been placed before the error: say how to go on.
            print(_resume_hint(options), file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminationSignal):
        if sandbox:
            print("\nInterrupted; the sandbox ended with it.", file=sys.stderr)
        else:
            print("\nInterrupted. " + _resume_hint(options), file=sys.stderr)
        return 130
    print()
    print(result.summary_markdown())
    if stats is not None:
        print(_sandbox_report(stats, options["from_number"]))
    if results:
        _write_results(result, Path(results))
        print(f"Wrote {len(result.rows)} rows to {results}")
    return 0


def _resume_hint(options: dict) -> str:
    return (
        f"Run the same command again to resume campaign {options['campaign_id']}: "
        "calls already placed are not dialled again."
    )


def _stop_on_sigterm() -> None:
    """Let `kill` end a campaign the way Ctrl-C does, with the resume hint."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, interrupt)


async def _flow(options: dict, credentials):
    from prefect_retell.flows import outbound_campaign

    return await outbound_campaign(credentials=credentials, **options)


def _run_on_sandbox(options: dict):
    from prefect_retell.blocks import RetellCredentials
    from prefect_retell.sandbox import serve_sandbox

    with serve_sandbox() as server, contextlib.ExitStack() as stack:
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
        if options.get("monitor") == "events":
            receiver = stack.enter_context(_receiver_for(server.sandbox.config.api_key))
            server.sandbox.set_webhook_url(receiver.url)
        result = asyncio.run(_flow(options, credentials))
        return result, server.sandbox.stats()


def _receiver_for(api_key: str):
    """A webhook receiver in this process, sending to the flow's Prefect API.

    With no PREFECT_API_URL the flow runs on Prefect's embedded server, started
    here first so that the receiver's events reach that same server.
    """
    from prefect.settings import PREFECT_API_URL

    from prefect_retell.receiver import WebhookReceiverServer, create_webhook_app

    api_url = PREFECT_API_URL.value()
    if not api_url:
        from prefect.server.api.server import SubprocessASGIServer

        embedded = SubprocessASGIServer()
        embedded.start()
        api_url = embedded.api_url
    app = create_webhook_app(api_key, prefect_api_url=api_url)
    return WebhookReceiverServer(app, host="127.0.0.1")


def _sandbox_report(stats: dict, from_number: str) -> str:
    from prefect_retell.sandbox.report import creation_report

    return "Sandbox record: " + creation_report(stats, from_number).describe()


def _write_results(result, path: Path) -> None:
    from prefect_retell.results import inert_cell

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
        writer.writerows([{k: inert_cell(v) for k, v in rec.items()} for rec in table])


if __name__ == "__main__":
    raise SystemExit(main())
