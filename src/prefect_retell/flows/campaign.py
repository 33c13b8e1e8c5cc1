"""The `outbound_campaign` flow: a contact list in, a result for every row out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from prefect_retell.blocks import RetellCredentials
from prefect_retell.client import RetellClient
from prefect_retell.clock import campaign_clock
from prefect_retell.contacts import Contact, ContactList, load_contacts
from prefect_retell.destinations import DestinationRule, destination_rule, max_cps
from prefect_retell.errors import (
    RetellAPIError,
    RetellAuthenticationError,
    RetellCallTimeoutError,
    RetellConfigurationError,
    RetellConnectionError,
    RetellError,
    RetellNotFoundError,
    RetellRateLimitError,
    RetellServerError,
    RetellValidationError,
)
from prefect_retell.flows._credentials import resolve_credentials
from prefect_retell.flows._limits import (
    CallPacer,
    PacerRotation,
    SlotPool,
    concurrency_limit_name,
    ensure_limit,
    rate_limit_name,
)
from prefect_retell.flows._record import CampaignRecord
from prefect_retell.models import AgentWeight, PhoneCall, PhoneCallRequest, PhoneNumber
from prefect_retell.monitoring import CallEventWatcher, MonitorMode
from prefect_retell.polling import CallPoller, PollSchedule
from prefect_retell.privacy import mask_phone_number
from prefect_retell.redial import CAPACITY_REASON, RedialPolicy
from prefect_retell.results import CallAttempt, CampaignResult, ContactResult
from prefect_retell.suppression import Suppression, load_suppression
from prefect_retell.tasks import (
    bind_agents,
    follow_call_by_events,
    place_call,
    shared_client,
)
from prefect_retell.windows import (
    CallingWindow,
    RecipientZone,
    recipient_zone,
    timezone_variable,
)

__all__ = ["derived_campaign_id", "outbound_campaign", "shard_of"]

# Calls that ended for lack of a free concurrency slot are placed again, this many
# times in a row, after a growing pause: the limit is transient, not the contact's
# fault, so these calls do not count towards the redial policy's max_attempts.
_MAX_ATTEMPTS = 3
_RETRY_PAUSE_SECONDS = 2.0
_PROGRESS_EVERY_SECONDS = 2.0
# How long a campaign in events mode waits, at its end, for analyses still due.
_ANALYSIS_GRACE_SECONDS = 15.0
# Outcomes that are final for a contact; "unknown" and "timed_out" are looked up
# again by a resumed run.
_RECORDED_OUTCOMES = frozenset({"called", "failed"})
_VARIABLE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
# Variables Retell fills itself, which no column needs to provide.
_SYSTEM_VARIABLES = {
    "current_time",
    "current_calendar",
    "call_id",
    "user_number",
    "agent_number",
    "direction",
    "session_type",
    "session_duration",
}


@dataclass
class _Plan:
    """Everything decided before the first call.

    `from_number` is the first of `from_numbers`; `destinations` is the countries
    any of them may call, `destinations_by_number` each number's own rule.
    """

    campaign_id: str
    from_number: str
    agent_id: str | None
    agent_version: int | str | None
    destinations: DestinationRule
    concurrency_limit: int
    metadata: dict[str, Any]
    call_timeout_seconds: float
    poll_interval_seconds: float
    stop_calls_on_timeout: bool
    rules: _DialRules
    monitor: MonitorMode = "poll"
    warnings: list[str] = field(default_factory=list)
    from_numbers: list[str] = field(default_factory=list)
    destinations_by_number: dict[str, DestinationRule] = field(default_factory=dict)
    shard: int = 1
    shard_count: int = 1
    call_log_level: int = logging.DEBUG


@dataclass
class _DialRules:
    """Who may be called when: windows, deadline, redials and do-not-call lists."""

    redial: RedialPolicy
    suppression: Suppression
    window: CallingWindow | None = None
    zone_variable: str | None = None
    deadline: datetime | None = None
    honor_internal_dnc: bool = False


@dataclass(frozen=True)
class _Due:
    """A call still due when the campaign's deadline comes, or that never can be.

    `when` is the moment it would have been placed; None when its calling window
    never opens in all of the recipient's zones.
    """

    when: datetime | None


@task(name="load-contacts", cache_policy=NO_CACHE)
def load_contact_list(
    contacts: str | os.PathLike[str] | Sequence[dict[str, Any]],
    phone_column: str | None = None,
    default_region: str = "US",
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ContactList:
    """Read and normalise a contact list; bad rows are reported, not raised.

    Example:
        ```python
        contact_list = load_contact_list("contacts.csv", default_region="GB")
        ```
    """
    logger = get_run_logger()
    contact_list = load_contacts(
        contacts,
        phone_column=phone_column,
        default_region=default_region,
        encoding=encoding,
        delimiter=delimiter,
    )
    logger.info(
        "Loaded %d rows from %s: %d to dial, %d rejected, %d duplicate(s)",
        contact_list.total_rows,
        contact_list.source,
        len(contact_list.contacts),
        len(contact_list.rejected),
        len(contact_list.duplicates),
    )
    for warning in contact_list.warnings:
        logger.warning("%s", warning)
    return contact_list


@flow(name="retell-outbound-campaign", log_prints=False)
async def outbound_campaign(
    contacts: str,
    from_number: str | None = None,
    credentials: RetellCredentials | str | None = None,
    cps: int = 1,
    max_concurrency: int | None = None,
    agent_id: str | None = None,
    agent_version: int | str | None = None,
    outbound_agents: list[AgentWeight] | None = None,
    default_region: str = "US",
    phone_column: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    campaign_id: str | None = None,
    metadata: dict[str, str] | None = None,
    call_timeout_seconds: float = 3600.0,
    poll_interval_seconds: float = 2.0,
    stop_calls_on_timeout: bool = True,
    monitor: MonitorMode = "poll",
    from_numbers: list[str] | None = None,
    shard: int = 1,
    shard_count: int = 1,
    calling_window: CallingWindow | None = None,
    deadline: datetime | None = None,
    max_attempts: int = 1,
    redial_on: list[str] | None = None,
    redial_delay_seconds: float = 1800.0,
    suppression_file: str | None = None,
    suppression_block: str | None = None,
    honor_internal_dnc: bool = False,
    log_each_call: bool = False,
) -> CampaignResult:
    """Call every valid contact of a list and report what became of every row.

    Rows are loaded and normalised to E.164; rows that cannot be dialled are
    reported with their row number and reason, and repeats of a number are dialled
    once. Calls are placed at `cps` calls per second, held by the Prefect rate limit
    `retell-cps-<number>`, with at most `max_concurrency` live at once, held by the
    limit `retell-concurrency`; both are created when missing and can be changed in
    the Prefect UI. Each call is followed to its final status. The flow publishes a
    progress artifact while it dials, then a table of results and a summary.

    Before anything is dialled, numbers on the suppression file or block are
    reported `suppressed`, and destinations the from-number may not call are
    `rejected`. With a calling window, each contact is called only while the
    window is open on their own clock; a contact outside it waits, without
    holding a concurrency slot, and the waiting contacts are logged and shown in
    the artifact `retell-campaign-waiting`. With `max_attempts` above 1, a call
    that ends for a reason in `redial_on` is placed again after
    `redial_delay_seconds`, each time as a call of its own.

    Several numbers (`from_numbers`) each get their own rate limit at `cps`, and
    each call goes out on whichever number that may call its destination frees
    first, so the rates add up. A long list can be split into `shard_count` flow
    runs, on as many workers, that share the limits through the Prefect server.

    Args:
        contacts: Path of a CSV or TSV contact list. A path, not the rows: Prefect
            stores and shows flow parameters in full, and the list is personal
            data.
        from_number: The account's number to call from, in E.164. May be left
            empty when `from_numbers` names the numbers.
        credentials: A saved RetellCredentials block, or its name. None reads
            RETELL_API_KEY and RETELL_BASE_URL from the environment.
        cps: Calls per second, at most what the number's provider allows
            (Twilio 5, Telnyx 16, custom telephony concurrency / 20).
        max_concurrency: Calls live at once for this campaign; None uses the
            account's limit.
        agent_id: Agent for every call of this campaign, overriding the number's
            outbound agents for these calls only; None keeps the number's.
        agent_version: Version of that agent: a number, a tag, "latest" or
            "latest_published"; None leaves the choice to Retell.
        outbound_agents: Weighted agents to bind to the number before dialling
            (weights sum to 1); this changes the number for later calls too.
        default_region: Country of numbers written without a country code, as
            a two-letter ISO code (US, GB, DE, ...).
        phone_column: Column holding the number; None finds it by its name
            (Phone, Mobile, Tel, ...).
        encoding: The file's text encoding; None finds it from the file's bytes
            (UTF-8 with or without a byte-order mark, UTF-16, Windows-1252).
        delimiter: The field separator; None finds it from the file (comma,
            semicolon, tab, ...).
        campaign_id: A stable name for this campaign; run again under the same
            name, it resumes without dialling anyone twice. None derives it from
            the list's content, the from-number and the agent.
        metadata: Text values added to the metadata of every call, which Retell
            keeps with the call and sends back in its webhooks.
        call_timeout_seconds: Longest time, in seconds, to follow one call before
            reporting it as timed out.
        poll_interval_seconds: Shortest pause, in seconds, between two reads of
            the live calls. Calls are read in batches, each more rarely as it
            ages: first after 5 times this, then at most 60 times this apart.
        stop_calls_on_timeout: Stop a call still live when its wait runs out.
        monitor: How each call is followed to its end. `poll` reads live calls
            from Retell; `events` waits for the call events that
            `prefect-retell webhooks serve` turns Retell's webhooks into, and
            reads a call from Retell only if its event has not come by
            `call_timeout_seconds`; `none` places the calls and does not follow
            them, so their rows end as placed (`registered`) and the campaign
            holds a concurrency slot only while it creates each call.
        from_numbers: More of the account's numbers to call from, beside
            `from_number`. Each is checked before dialling (it belongs to the
            account, its provider allows `cps`, the countries it may call) and
            is paced at `cps` under its own limit. A contact's calls are found
            on resume whichever number placed them.
        shard: Which share of the list this run dials, from 1 to `shard_count`.
            Contacts are shared out by their number in E.164, not their row, so
            the same list split the same way gives every shard the same contacts
            in any order, and no contact is in two shards. Rows that cannot be
            dialled are reported by shard 1.
        shard_count: How many flow runs share the list; 1 dials all of it. Give
            the shards the same list and settings, so that they derive the same
            campaign id (or pass the same `campaign_id`). `max_concurrency`
            applies to each shard; the Prefect limits hold for all of them.
        calling_window: Hours and days each recipient may be called, on their own
            clock (time zone from a column, the number, or the default time zone).
            Empty: any time.
        deadline: No call is placed from this moment on (with a time zone, such
            as 2026-03-09T18:00:00Z); contacts still due are reported with the
            time they would have been called. Empty: the campaign waits as long
            as its windows and redials need.
        max_attempts: Most calls per contact that reach the phone network, the
            first included; 1 places no redial.
        redial_on: Disconnection reasons that lead to a redial. Empty:
            dial_no_answer, dial_busy and voicemail_reached.
        redial_delay_seconds: Pause between a call's end and its redial, at
            least 10 seconds; the calling window applies too.
        suppression_file: Path of a do-not-call list: one number a line, or a
            CSV file with a phone column. Its numbers are never dialled.
        suppression_block: Name of a saved SuppressionList block whose numbers
            are never dialled.
        honor_internal_dnc: Ask Retell to refuse calls to numbers on the
            account's own do-not-call list; such rows are reported suppressed.
        log_each_call: Log a line at INFO as each call is created and as it
            ends. Off, those lines are at DEBUG, and the run's log shows the
            campaign's progress (at most every 2 seconds) instead: a line per
            call is thousands of lines in the Prefect UI, and writing and
            sending them takes CPU time a campaign at 16 CPS needs to keep its
            pace.

    Returns:
        One `ContactResult` per input row, in input order; for a shard, the rows
        of its share.

    Raises:
        RetellConfigurationError: A setting cannot work; raised before any call.

    Example:
        ```python
        result = await outbound_campaign(
            "reminders.csv", from_number="+16505550100", credentials="retell", cps=5
        )
        print(result.counts)
        ```
    """
    logger = get_run_logger()
    started_at = datetime.now(timezone.utc)
    _check_settings(cps, max_concurrency, call_timeout_seconds, poll_interval_seconds)
    _check_metadata(metadata)
    numbers = _numbers_to_call_from(from_number, from_numbers)
    _check_shard(shard, shard_count)
    _check_deadline(deadline)
    redial = RedialPolicy.from_parameters(redial_on, max_attempts, redial_delay_seconds)
    retell = await resolve_credentials(credentials)
    contact_list = load_contact_list(
        contacts, phone_column, default_region, encoding, delimiter
    )
    rules = _DialRules(
        redial=redial,
        suppression=await load_suppression(
            suppression_file, suppression_block, default_region
        ),
        window=calling_window,
        zone_variable=_zone_variable(contact_list, calling_window),
        deadline=deadline,
        honor_internal_dnc=honor_internal_dnc,
    )
    campaign_id = campaign_id or derived_campaign_id(
        contacts, numbers, agent_id, agent_version
    )
    logger.info("Campaign id: %s", campaign_id)
    contact_list = _share_of(contact_list, shard, shard_count, logger)
    async with shared_client(retell) as client:
        plan = await _plan_campaign(
            retell,
            client,
            contact_list,
            from_numbers=numbers,
            campaign_id=campaign_id,
            cps=cps,
            max_concurrency=max_concurrency,
            agent_id=agent_id,
            agent_version=agent_version,
            outbound_agents=outbound_agents,
            metadata=metadata or {},
            call_timeout_seconds=call_timeout_seconds,
            poll_interval_seconds=poll_interval_seconds,
            stop_calls_on_timeout=stop_calls_on_timeout,
            monitor=monitor,
            rules=rules,
            shard=shard,
            shard_count=shard_count,
            call_log_level=logging.INFO if log_each_call else logging.DEBUG,
        )
        dialler = _Dialler(retell, client, plan, cps=cps, logger=logger)
        called = await dialler.run(contact_list)
    rows = _all_rows(contact_list, called)
    result = CampaignResult(
        campaign_id=campaign_id,
        from_number=plan.from_number,
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
        rows=rows,
        warnings=contact_list.warnings + plan.warnings,
    )
    await _publish(result, plan)
    logger.info("Campaign %s done: %s", campaign_id, _counts_text(result.counts))
    return result


def derived_campaign_id(
    contacts: str | os.PathLike[str],
    from_number: str | Sequence[str],
    agent_id: str | None,
    agent_version: int | str | None,
) -> str:
    """A campaign's identity from what it dials: the list's content and the caller.

    The same list from the same number (or set of numbers, in any order) is the
    same campaign, so running it again after a crash resumes it instead of
    dialling everyone a second time. To call the same list again on purpose, give
    the run a new campaign_id. A shard is not part of the identity: every shard
    of a campaign derives the same id.
    """
    if not isinstance(from_number, str):
        from_number = ",".join(sorted(set(from_number)))
    digest = hashlib.sha256()
    try:
        with open(contacts, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        # The loader has already said what is wrong with the file.
        digest.update(os.fsencode(contacts))
    digest.update(f"|{from_number}|{agent_id}|{agent_version}".encode())
    return f"campaign-{digest.hexdigest()[:16]}"


# Retell documents 50 kB of metadata per call; the campaign adds its own keys.
_METADATA_LIMIT_BYTES = 50_000
_OWN_METADATA_BYTES = 400


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    """Refuse metadata that would make Retell refuse every call."""
    if not metadata:
        return
    try:
        size = len(json.dumps(metadata, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise RetellConfigurationError(
            f"metadata cannot be sent as JSON: {exc}; nothing was dialled."
        ) from exc
    room = _METADATA_LIMIT_BYTES - _OWN_METADATA_BYTES
    if size > room:
        raise RetellConfigurationError(
            f"metadata is {size} bytes as JSON, over the {room} bytes left of "
            f"Retell's {_METADATA_LIMIT_BYTES}-byte limit per call; nothing was "
            "dialled."
        )


def _check_deadline(deadline: datetime | None) -> None:
    """Refuse a deadline whose moment depends on the machine's time zone."""
    if deadline is not None and deadline.utcoffset() is None:
        raise RetellConfigurationError(
            f"deadline {deadline.isoformat()} has no time zone; write it with one, "
            "such as 2026-03-09T18:00:00Z or 2026-03-09T13:00:00-05:00. Nothing "
            "was dialled."
        )


def _zone_variable(
    contact_list: ContactList, window: CallingWindow | None
) -> str | None:
    """The variable holding the calling window's time zone column, if it names one."""
    if window is None or not window.timezone_column:
        return None
    try:
        return timezone_variable(contact_list.variable_names, window.timezone_column)
    except ValueError as exc:
        raise RetellConfigurationError(f"{exc}; nothing was dialled.") from exc


def _check_settings(
    cps: int,
    max_concurrency: int | None,
    call_timeout_seconds: float,
    poll_interval_seconds: float,
) -> None:
    """Refuse settings that cannot work before anything, a limit included, changes."""
    problems = []
    if cps < 1:
        problems.append(f"cps must be at least 1, not {cps}")
    if max_concurrency is not None and max_concurrency < 1:
        problems.append(f"max_concurrency must be at least 1, not {max_concurrency}")
    if call_timeout_seconds <= 0:
        problems.append("call_timeout_seconds must be more than 0")
    if poll_interval_seconds <= 0:
        problems.append("poll_interval_seconds must be more than 0")
    if problems:
        raise RetellConfigurationError("; ".join(problems) + "; nothing was dialled.")


def _numbers_to_call_from(
    from_number: str | None, from_numbers: Sequence[str] | None
) -> list[str]:
    """The campaign's from-numbers, in the order given, each once."""
    numbers = list(
        dict.fromkeys([*([from_number] if from_number else []), *(from_numbers or [])])
    )
    if not numbers:
        raise RetellConfigurationError(
            "Give from_number or from_numbers: the campaign has no number to call "
            "from; nothing was dialled."
        )
    return numbers


def _check_shard(shard: int, shard_count: int) -> None:
    if shard_count < 1 or not 1 <= shard <= shard_count:
        raise RetellConfigurationError(
            f"shard must be from 1 to shard_count and shard_count at least 1, not "
            f"shard {shard} of {shard_count}; nothing was dialled."
        )


def shard_of(to_number: str, shard_count: int) -> int:
    """The shard, from 1 to `shard_count`, that dials a number in E.164.

    A hash of the number, not its row: the share does not move when the list is
    reordered or edited, and a number is in exactly one shard.
    """
    digest = hashlib.sha256(to_number.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count + 1


def _share_of(
    contact_list: ContactList, shard: int, shard_count: int, logger: Any
) -> ContactList:
    """The rows one shard reports: its contacts, their repeats, and (shard 1) the
    rows that cannot be dialled."""
    if shard_count == 1:
        return contact_list
    contacts = [
        c for c in contact_list.contacts if shard_of(c.to_number, shard_count) == shard
    ]
    duplicates = [
        d
        for d in contact_list.duplicates
        if shard_of(d.to_number, shard_count) == shard
    ]
    rejected = list(contact_list.rejected) if shard == 1 else []
    logger.info(
        "Shard %d of %d: %d of the list's %d contacts are this shard's to dial",
        shard,
        shard_count,
        len(contacts),
        len(contact_list.contacts),
    )
    return contact_list.model_copy(
        update={
            "contacts": contacts,
            "duplicates": duplicates,
            "rejected": rejected,
            "total_rows": len(contacts) + len(duplicates) + len(rejected),
        }
    )


async def _plan_campaign(
    retell: RetellCredentials,
    client: RetellClient,
    contact_list: ContactList,
    *,
    from_numbers: list[str],
    campaign_id: str,
    cps: int,
    max_concurrency: int | None,
    agent_id: str | None,
    agent_version: int | str | None,
    outbound_agents: list[AgentWeight] | None,
    **settings: Any,
) -> _Plan:
    """Check the numbers, agent, rate and limits; bind agents; create the limits."""
    logger = get_run_logger()
    account = await client.get_concurrency()
    numbers = await _checked_numbers(client, from_numbers, cps, account)
    if outbound_agents:
        numbers = [
            await bind_agents(retell, each, outbound_agents=outbound_agents)
            for each in from_numbers
        ]
    warnings: list[str] = []
    # One agent for every call is checked once; otherwise each number's own.
    for number in numbers[:1] if agent_id else numbers:
        found = await _check_variables(
            client, number, agent_id, agent_version, contact_list
        )
        warnings += [warning for warning in found if warning not in warnings]
    for warning in warnings:
        logger.warning("%s", warning)
    for each in from_numbers:
        await ensure_limit(
            rate_limit_name(each),
            limit=cps,
            slot_decay_per_second=float(cps),
            logger=logger,
        )
    # The shared limit stands for the account's concurrency: created from Retell's
    # figure, then left as the user sets it. max_concurrency caps this campaign.
    shared = await ensure_limit(
        concurrency_limit_name(),
        limit=account.concurrency_limit or 20,
        slot_decay_per_second=0.0,
        logger=logger,
        keep_existing_value=True,
    )
    limit = min(max_concurrency or shared.limit, shared.limit)
    rules: _DialRules = settings["rules"]
    by_number = {
        each: destination_rule(number)
        for each, number in zip(from_numbers, numbers, strict=True)
    }
    notes = [
        note
        for each, number in zip(from_numbers, numbers, strict=True)
        for note in by_number[each].warnings(number)
    ]
    notes += list(rules.redial.warnings) + rules.suppression.warnings
    for note in notes:
        logger.warning("%s", note)
    return _Plan(
        campaign_id=campaign_id,
        from_number=from_numbers[0],
        agent_id=agent_id,
        agent_version=agent_version,
        destinations=_combined_rule(list(by_number.values())),
        concurrency_limit=limit,
        warnings=warnings + notes,
        from_numbers=list(from_numbers),
        destinations_by_number=by_number,
        **settings,
    )


async def _checked_numbers(
    client: RetellClient, from_numbers: list[str], cps: int, account
) -> list[PhoneNumber]:
    """Every from-number, checked to be the account's and to allow `cps`."""
    numbers = []
    for each in from_numbers:
        number = await _own_number(client, each)
        ceiling = max_cps(number, account.concurrency_limit)
        if ceiling is not None and cps > ceiling:
            # With several numbers, say which; one needs no naming.
            which = (
                f" ({mask_phone_number(each, always=True)})"
                if len(from_numbers) > 1
                else ""
            )
            raise RetellConfigurationError(
                f"cps={cps} is above the {ceiling} calls per second that a "
                f"{number.phone_number_type} number allows{which}; nothing was "
                "dialled."
            )
        numbers.append(number)
    return numbers


def _combined_rule(rules: list[DestinationRule]) -> DestinationRule:
    """The countries at least one of the campaign's numbers may call."""
    if len(rules) == 1:
        return rules[0]
    if any(rule.countries is None for rule in rules):
        return DestinationRule(None)
    return DestinationRule(frozenset().union(*(rule.countries for rule in rules)))


async def _own_number(client: RetellClient, from_number: str):
    try:
        return await client.get_phone_number(from_number)
    except RetellNotFoundError as exc:
        if not re.fullmatch(r"\+[1-9]\d{6,14}", from_number.strip()):
            raise RetellConfigurationError(
                "from_number must be written in E.164, a + and the country code "
                "then the digits, such as +14155550100; nothing was dialled."
            ) from exc
        raise RetellConfigurationError(
            f"from_number {mask_phone_number(from_number)} is not a phone number of "
            "this Retell account; nothing was dialled."
        ) from exc


async def _check_variables(
    client: RetellClient,
    number,
    agent_id: str | None,
    agent_version: int | str | None,
    contact_list: ContactList,
) -> list[str]:
    """Warn about prompt variables that no column fills.

    Retell leaves an unfilled `{{variable}}` in the prompt as it is, so the agent
    would read it out. Only Retell LLM agents can be checked this way.
    """
    agent_ids = (
        [agent_id]
        if agent_id
        else [entry.agent_id for entry in number.outbound_agents or []]
    )
    if not agent_ids:
        raise RetellConfigurationError(
            "The from-number has no outbound agent and no agent_id was given; "
            "bind one with outbound_agents or pass agent_id. Nothing was dialled."
        )
    names = set(contact_list.variable_names.values()) | {"extension"}
    warnings = []
    for each in agent_ids:
        try:
            agent = await client.get_agent(each, agent_version if agent_id else None)
        except RetellNotFoundError as exc:
            raise RetellConfigurationError(
                f"Agent {each!r} does not exist on this account; nothing was dialled."
            ) from exc
        engine = agent.response_engine or {}
        if engine.get("type") != "retell-llm" or not engine.get("llm_id"):
            continue
        llm = await client.get_retell_llm(engine["llm_id"])
        used = set(
            _VARIABLE.findall(f"{llm.general_prompt or ''} {llm.begin_message or ''}")
        )
        missing = sorted(used - names - _SYSTEM_VARIABLES)
        if missing:
            warnings.append(
                f"Agent {each!r} uses prompt variables that no column provides: "
                f"{', '.join(missing)}; the agent would see them as written."
            )
    return warnings


class _Dialler:
    """Places and follows the calls of one campaign.

    Calls are placed and followed with the client directly, not as one Prefect task
    run per call: on a SQLite-backed Prefect server (the embedded one among them)
    the writes of thousands of task runs collide with the limit updates, and each
    collision stalls dispatch for seconds. Every call is in the results table.

    Each contact has a lane that waits for its calling window (and a redial's
    delay) holding nothing, then takes a concurrency slot and its turn in the
    calls-per-second pacing, places one call and follows it to its end.
    """

    def __init__(
        self,
        retell: RetellCredentials,
        client: RetellClient,
        plan: _Plan,
        *,
        cps: int,
        logger: Any,
    ) -> None:
        self.retell = retell
        self.client = client
        self.plan = plan
        self.rules = plan.rules
        self.logger = logger
        numbers = plan.from_numbers or [plan.from_number]
        self.rotation = PacerRotation(
            {
                number: CallPacer(
                    cps, rate_limit_name(number), key=number, logger=logger
                )
                for number in numbers
            }
        )
        self.slots = SlotPool(
            concurrency_limit_name(),
            plan.concurrency_limit,
            chunk=max(self.rotation.cps, 5),
        )
        self.watcher: CallEventWatcher | None = None
        self.placed = 0
        self.finished = 0
        self.total = 0
        self.zones: dict[int, RecipientZone] = {}
        self.waiting: dict[int, _Waiting] = {}
        self.waiting_changes = 0
        self._placed_at: dict[str, datetime] = {}
        self.record = CampaignRecord(plan.campaign_id, plan.shard, plan.shard_count)

    async def run(self, contact_list: ContactList) -> dict[int, ContactResult]:
        """Dial every contact that may be called; return results by row."""
        results: dict[int, ContactResult] = {}
        to_dial = []
        now = campaign_clock().now()
        for contact in contact_list.contacts:
            refused = self._screen(contact, now)
            if refused is None:
                to_dial.append(contact)
            else:
                results[contact.row] = refused
        self.total = len(to_dial)
        self._log_screening(list(results.values()))
        await self.record.load()
        self.previous = await self._previous_calls()
        self.logger.info(
            "Campaign has %d contacts to call at %d calls per second, at most %d "
            "live; %d of them were called by earlier runs and are not dialled again",
            self.total,
            self.rotation.cps,
            self.plan.concurrency_limit,
            sum(
                1
                for contact in to_dial
                if contact.to_number in self.previous
                or self.record.get(contact.to_number) is not None
            ),
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.plan.monitor == "events" and to_dial:
                    # Subscribed before the first call, so no event is missed.
                    self.watcher = await stack.enter_async_context(
                        CallEventWatcher(
                            campaign_id=self.plan.campaign_id, logger=self.logger
                        )
                    )
                finished = await self._run_lanes(to_dial)
                if self.watcher is not None:
                    await self._attach_analyses(finished)
        finally:
            # Whatever ended the run, the rows finished so far are kept.
            await self.keep_record()
        results.update({row.row: row for row in finished})
        return results

    async def keep_record(self) -> None:
        """Write the rows finished since the last write to the campaign's record.

        A failed write costs only the shortcut: a resumed run finds those
        contacts' calls in Retell's list instead. It is logged, and the rows
        are written with the next part.
        """
        try:
            await self.record.flush()
        except Exception as exc:
            self.logger.warning(
                "Could not write finished rows to Prefect's result store (%s); a "
                "resumed run finds their calls in Retell's list instead",
                type(exc).__name__,
            )

    async def _attach_analyses(self, rows: list[ContactResult]) -> None:
        """Give rows the analysis that came in `retell.call.analyzed` after the end.

        A call's wait ends with `retell.call.ended`, which carries no analysis;
        Retell sends it separately, seconds later. Rows of connected calls wait
        for it here, together and for a short while, not holding any slot.
        """
        missing = {
            row.call_id: row
            for row in rows
            if row.call_id
            and row.call_status in ("ended", "not_connected")
            and row.call_successful is None
        }
        deadline = time.monotonic() + _ANALYSIS_GRACE_SECONDS
        while missing:
            for call_id in list(missing):
                analysis = self.watcher.analyses.get(call_id)
                if analysis is not None:
                    missing.pop(call_id).call_successful = analysis.call_successful
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if missing:
            self.logger.info(
                "%d call(s) had no analysis event within %g s; their "
                "call_successful is left empty",
                len(missing),
                _ANALYSIS_GRACE_SECONDS,
            )

    async def _run_lanes(self, to_dial: list[Contact]) -> list[ContactResult]:
        progress = _Progress(self)
        await progress.start()
        lanes = [asyncio.create_task(self._lane(contact)) for contact in to_dial]
        try:
            return await asyncio.gather(*lanes)
        except BaseException:
            # An error that ends the campaign (a revoked key) stops every lane
            # before the client closes, rather than leaving them to fail one by one.
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            raise
        finally:
            await self.rotation.close()
            await self.slots.close()
            await progress.stop()
            self._log_pacing()

    def _log_pacing(self) -> None:
        for number, pacer in self.rotation.pacers.items():
            self.logger.info(
                "Pacing of %s: %s",
                mask_phone_number(number, always=True),
                pacer.stats.describe(),
            )

    def _numbers_for(self, contact: Contact) -> list[str]:
        """The campaign's numbers that may call this contact's country."""
        return [
            number
            for number, rule in self.plan.destinations_by_number.items()
            if rule.problem(contact.to_number) is None
        ] or [self.plan.from_number]

    def _screen(self, contact: Contact, now: datetime) -> ContactResult | None:
        """The result of a contact that must not be dialled; None when it may be."""
        if contact.to_number in self.rules.suppression:
            return _row(contact, "suppressed", reason=self.rules.suppression.reason())
        problem = self.plan.destinations.problem(contact.to_number)
        if problem:
            return _rejected(contact, problem)
        if self.rules.window is None:
            return None
        zone = recipient_zone(
            contact, self.rules.window, self.rules.zone_variable, now=now
        )
        if isinstance(zone, str):
            return _rejected(contact, zone)
        self.zones[contact.row] = zone
        return None

    def _log_screening(self, refused: list[ContactResult]) -> None:
        """Say how many contacts are left out, and how unclear time zones are read."""
        outcomes = collections.Counter(row.outcome for row in refused)
        if outcomes["suppressed"]:
            self.logger.info(
                "%d contact(s) not dialled: on the do-not-call list",
                outcomes["suppressed"],
            )
        if outcomes["rejected"]:
            self.logger.info(
                "%d contact(s) not dialled: a destination this number may not call, "
                "or no calling time known; each reason is in the results",
                outcomes["rejected"],
            )
        sources = collections.Counter(zone.source for zone in self.zones.values())
        if sources["default_timezone"]:
            self.logger.info(
                "%d contact(s) have numbers without a single time zone; their "
                "calling window is read in default_timezone %s",
                sources["default_timezone"],
                self.rules.window.default_timezone,
            )
        if sources["every zone of the number"]:
            self.logger.info(
                "%d contact(s) have numbers that may be in several time zones; "
                "they are called only while the window is open in all of them",
                sources["every zone of the number"],
            )

    async def _lane(self, contact: Contact) -> ContactResult:
        try:
            result = await self._recorded_call(contact)
        finally:
            self._stop_waiting(contact)
        zone = self.zones.get(contact.row)
        if zone is not None and result.time_zone is None:
            result = result.model_copy(update={"time_zone": zone.label})
        self.finished += 1
        return result

    async def _recorded_call(self, contact: Contact) -> ContactResult:
        """A contact's result from Prefect's record of an earlier run, or a call.

        A contact whose calls reached their end, redials included, goes into the
        campaign's record in Prefect's result store (see `CampaignRecord`); a
        resumed run reads it back without asking Retell anything. A contact
        with a call still due at the deadline is not recorded, so that a later
        run places it.
        """
        recorded = self.record.get(contact.to_number)
        if recorded is not None:
            self.placed += 1
            if contact.row and recorded.row != contact.row:
                return recorded.model_copy(update={"row": contact.row})
            return recorded
        result = await self._call(contact)
        if result.outcome in _RECORDED_OUTCOMES and result.next_call_at is None:
            self.record.add(result)
        return result

    async def _previous_calls(self) -> dict[str, dict[int, PhoneCall]]:
        """Calls an earlier run of this campaign placed, by destination and attempt.

        Retell keeps an idempotency key for an hour only; calls are also found by
        the campaign named in their metadata, however old they are, and whatever
        number placed them (a number may have been dropped from the campaign
        since). A shard takes up the calls of its own share only.
        """
        criteria = {
            "metadata": [
                {
                    "key": "prefect_retell_campaign",
                    "type": "string",
                    "op": "eq",
                    "value": self.plan.campaign_id,
                }
            ]
        }
        found: dict[str, dict[int, PhoneCall]] = {}
        async for call in self.client.iter_calls(criteria, page_size=1000):
            # Any of the campaign's numbers may have placed it; the shard's own
            # contacts only.
            if call.to_number and self._in_shard(call.to_number):
                calls = found.setdefault(call.to_number, {})
                calls.setdefault(_attempt_number(call), call)
        if found:
            self.logger.info(
                "Resuming campaign %s: %d contact(s) already have calls from earlier "
                "runs; they are followed, not dialled again",
                self.plan.campaign_id,
                len(found),
            )
        return found

    def _in_shard(self, to_number: str) -> bool:
        plan = self.plan
        return (
            plan.shard_count == 1 or shard_of(to_number, plan.shard_count) == plan.shard
        )

    async def _call(self, contact: Contact) -> ContactResult:
        """Every call one contact gets: the first, capacity retries and redials.

        Attempt n is always the same call: taken up when an earlier run placed
        it, else placed under attempt n's idempotency key. A resumed campaign so
        neither places an attempt twice nor forgets one it made, and counts
        earlier attempts towards max_attempts.
        """
        earlier = self.previous.get(contact.to_number, {})
        attempts: list[CallAttempt] = []
        attempt, not_before, call = 1, None, None
        while True:
            if attempt in earlier:
                outcome = await self._resume(contact, earlier[attempt], attempt)
            else:
                outcome = await self._dial(contact, attempt, not_before)
            if isinstance(outcome, _Due):
                return self._still_due(contact, outcome, call, attempts)
            if isinstance(outcome, ContactResult):
                outcome.attempts = attempts + [
                    self._stamped(each) for each in outcome.attempts
                ]
                return outcome
            call = outcome
            attempts.append(
                CallAttempt.from_call(
                    attempt, call, self._placed_at.pop(call.call_id, None)
                )
            )
            step = self._next_step(call, attempts)
            if attempt + 1 in earlier:
                # An earlier run already placed the next call: take it up as it is.
                not_before = None
            elif step is None:
                return self._final(contact, call, attempts)
            else:
                not_before = await self._pause(contact, call, attempts, step)
            attempt += 1

    def _stamped(self, attempt: CallAttempt) -> CallAttempt:
        placed_at = self._placed_at.pop(attempt.call_id, None)
        return attempt.model_copy(update={"placed_at": placed_at})

    def _next_step(
        self, call: PhoneCall, attempts: list[CallAttempt]
    ) -> tuple[str, float] | None:
        """What follows a finished call: ("capacity" | "redial", pause), or None."""
        if call.disconnection_reason == CAPACITY_REASON:
            streak = _capacity_streak(attempts)
            if streak < _MAX_ATTEMPTS:
                return ("capacity", _RETRY_PAUSE_SECONDS * streak)
            return None
        if self.rules.redial.redials(call, _dials(attempts)):
            return ("redial", self.rules.redial.delay_seconds)
        return None

    async def _pause(
        self,
        contact: Contact,
        call: PhoneCall,
        attempts: list[CallAttempt],
        step: tuple[str, float],
    ) -> datetime | None:
        """Wait out a capacity retry's pause; for a redial, return when it is due."""
        kind, seconds = step
        if kind == "capacity":
            # Real seconds: the account's live calls end in real time.
            await asyncio.sleep(seconds)
            return None
        # Counted from now: for a call an earlier run placed, that is later than
        # its end, so a resumed redial may come late but never early. Reading the
        # call's end_timestamp would lift this, on the wall clock only.
        due = campaign_clock().now() + timedelta(seconds=seconds)
        self.logger.info(
            "Row %d (%s): call ended %s; calling again at %s at the earliest "
            "(call %d of at most %d)",
            contact.row,
            mask_phone_number(contact.to_number),
            call.disconnection_reason,
            _utc_text(due),
            _dials(attempts) + 1,
            self.rules.redial.max_attempts,
        )
        return due

    def _final(
        self, contact: Contact, call: PhoneCall, attempts: list[CallAttempt]
    ) -> ContactResult:
        result = _called(contact, call, attempts)
        if call.disconnection_reason != CAPACITY_REASON:
            return result
        which = (
            f"every one of {_MAX_ATTEMPTS}"
            if len(attempts) == _MAX_ATTEMPTS
            else f"the last {_MAX_ATTEMPTS} of {len(attempts)}"
        )
        result.outcome = "failed"
        result.reason = (
            f"{which} attempts ended with concurrency_limit_reached; raise the "
            "account's concurrency or lower max_concurrency"
        )
        return result

    def _still_due(
        self,
        contact: Contact,
        due: _Due,
        call: PhoneCall | None,
        attempts: list[CallAttempt],
    ) -> ContactResult:
        """The result of a contact whose next call could not be placed in time."""
        when = (
            f"was due at {_utc_text(due.when)}"
            if due.when
            else "has no moment in the next eight days at which its calling window "
            "is open in all of its time zones"
        )
        after = " after the campaign's deadline" if due.when else ""
        again = (
            "; run the campaign again with the same campaign_id and a later deadline "
            "to place it"
            if due.when
            else ""
        )
        if call is None:
            return _row(
                contact,
                "waiting",
                reason=f"not dialled: its first call {when}{after}{again}",
                next_call_at=due.when,
            )
        result = _called(contact, call, attempts)
        result.next_call_at = due.when
        result.reason = f"call {_dials(attempts) + 1} {when}{after}{again}"
        return result

    async def _dial(
        self, contact: Contact, attempt: int, not_before: datetime | None
    ) -> PhoneCall | ContactResult | _Due:
        """Wait, holding no slot, until the contact may be called; then call."""
        while True:
            due = await self._wait_until_callable(contact, not_before)
            if due is not None:
                return due
            outcome = await self._attempt(contact, attempt)
            if outcome is not None:
                return outcome
            # The window closed while the call waited for a slot and its turn.

    async def _wait_until_callable(
        self, contact: Contact, not_before: datetime | None
    ) -> _Due | None:
        """Sleep until the contact's window is open (and a redial is due).

        Returns None when the contact may be called now, or a `_Due` when that
        moment falls at or after the deadline, or never comes.
        """
        clock = campaign_clock()
        while True:
            now = clock.now()
            earliest = max(now, not_before) if not_before else now
            opens = self._opening(contact, earliest)
            deadline = self.rules.deadline
            if opens is None or (deadline is not None and opens >= deadline):
                return _Due(opens)
            if opens <= now:
                self._stop_waiting(contact)
                return None
            why = "redial" if opens == not_before else "calling window"
            self._start_waiting(contact, opens, why)
            await clock.sleep_until(opens)

    def _opening(self, contact: Contact, moment: datetime) -> datetime | None:
        """The first moment from `moment` on at which the contact's window is open."""
        zone = self.zones.get(contact.row)
        if self.rules.window is None or zone is None:
            return moment
        return self.rules.window.next_opening(moment, zone.zones)

    def _callable_now(self, contact: Contact) -> bool:
        """Whether the contact may be called at this very moment."""
        now = campaign_clock().now()
        deadline = self.rules.deadline
        if deadline is not None and now >= deadline:
            return False
        return self._opening(contact, now) == now

    def _start_waiting(self, contact: Contact, opens: datetime, why: str) -> None:
        current = self.waiting.get(contact.row)
        if current is not None and current.opens == opens:
            return
        zone = self.zones.get(contact.row)
        entry = _Waiting(contact.row, contact.to_number, opens, why, zone)
        self.waiting[contact.row] = entry
        self.waiting_changes += 1
        self.logger.info(
            "Row %d (%s) waits for its %s: called at %s at the earliest (%s)",
            contact.row,
            mask_phone_number(contact.to_number),
            why,
            _utc_text(opens),
            entry.local_text,
        )

    def _stop_waiting(self, contact: Contact) -> None:
        if self.waiting.pop(contact.row, None) is not None:
            self.waiting_changes += 1

    async def _resume(
        self, contact: Contact, call: PhoneCall, attempt: int
    ) -> PhoneCall | ContactResult:
        """Take up a call an earlier run placed: its result, or follow it to its end."""
        if attempt == 1:
            self.placed += 1
        if call.is_final or self.plan.monitor == "none":
            return call
        await self.slots.acquire()
        try:
            return await self._follow(contact, call, attempt)
        finally:
            await self.slots.release()

    async def _attempt(
        self, contact: Contact, attempt: int
    ) -> PhoneCall | ContactResult | None:
        """One call, created and followed; a ContactResult when it went wrong.

        None when nothing was placed because the contact's window closed (or the
        deadline came) while the call waited for a slot and its turn.
        """
        await self.slots.acquire()
        try:
            call = await self._create_in_turn(contact, attempt)
            if call is None or isinstance(call, ContactResult):
                return call
            if attempt == 1:
                self.placed += 1
            if self.plan.monitor == "none":
                return call
            return await self._follow(contact, call, attempt)
        finally:
            await self.slots.release()

    async def _create_in_turn(
        self, contact: Contact, attempt: int
    ) -> PhoneCall | ContactResult | None:
        """Create the call in a turn of the pacer; None if its window closed.

        A create that Retell refuses with 429 (its calls per second or the
        account's concurrency) waits the backoff, then a turn of its own again,
        rather than being sent again by the client outside the pacing, where at
        full CPS it would be refused once more and take another call's place.
        """
        policy = self.client.retry
        for refused in itertools.count():
            turn = await self.rotation.turn(self._numbers_for(contact))
            if not self._callable_now(contact):
                # The window closed while this call waited for its turn: the turn
                # is spent without a call, which can only slow the next one.
                turn.leaving()
                turn.answered()
                return None
            request = self._request(contact, attempt, turn.number)
            placed_at = campaign_clock().now()
            turn.leaving()
            try:
                call = await self._create(contact, request)
            except RetellRateLimitError as exc:
                if refused + 1 >= policy.max_attempts:
                    return _unplaced(
                        contact,
                        "failed",
                        f"{exc}; refused {refused + 1} times, in as many turns",
                    )
                pause = policy.wait_seconds(refused, exc)
                why = exc.retell_message or f"HTTP {exc.status_code}"
            else:
                if isinstance(call, PhoneCall):
                    self._placed_at[call.call_id] = placed_at
                return call
            finally:
                # The pacer holds the next calls until this one is answered.
                turn.answered()
            self.logger.warning(
                "Retell refused the call to %s for now (%s); it waits %.1f s, then "
                "for a turn of its own",
                mask_phone_number(contact.to_number),
                why,
                pause,
            )
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _follow(
        self, contact: Contact, call: PhoneCall, attempt: int
    ) -> PhoneCall | ContactResult:
        try:
            if self.watcher is not None:
                return await follow_call_by_events(
                    self.client,
                    self.watcher,
                    call.call_id,
                    timeout_seconds=self.plan.call_timeout_seconds,
                    poll_interval_seconds=self.plan.poll_interval_seconds,
                    stop_on_timeout=self.plan.stop_calls_on_timeout,
                    logger=self.logger,
                    log_level=self.plan.call_log_level,
                )
            return await self._poller.wait(
                call.call_id,
                timeout_seconds=self.plan.call_timeout_seconds,
                stop_on_timeout=self.plan.stop_calls_on_timeout,
            )
        except RetellCallTimeoutError as exc:
            return _timed_out(contact, call, attempt, exc)
        except RetellAuthenticationError:
            raise  # Every other call would fail the same way.
        except RetellError as exc:
            # One call that cannot be followed must not fail the campaign and
            # lose the record of every call already placed.
            return _unfollowed(contact, call, attempt, exc)

    @functools.cached_property
    def _poller(self) -> CallPoller:
        """One poller follows all the campaign's live calls, in batches.

        Its loop runs only while calls are followed, so nothing needs closing.
        """
        schedule = PollSchedule.with_min_gap(self.plan.poll_interval_seconds)
        return CallPoller(
            self.client,
            schedule=schedule,
            logger=self.logger,
            call_log_level=self.plan.call_log_level,
        )

    async def _create(
        self, contact: Contact, request: PhoneCallRequest
    ) -> PhoneCall | ContactResult:
        try:
            call = await place_call(
                self.client,
                request,
                self.logger,
                self.plan.call_log_level,
                retry_rate_limited=False,
            )
            return self._check_replay(contact, request, call)
        except RetellAuthenticationError:
            raise  # Every other call would fail the same way.
        except (RetellConnectionError, RetellServerError) as exc:
            found = await self._find_placed(request)
            if found is not None:
                return found
            return _unplaced(contact, "unknown", f"{exc}; no call was found for it")
        except RetellRateLimitError:
            raise  # Sent again in a turn of its own: see _create_in_turn.
        except RetellValidationError as exc:
            if self.rules.honor_internal_dnc and _is_dnc_refusal(exc):
                return _unplaced(
                    contact,
                    "suppressed",
                    "Retell refused the call because the number is on the "
                    f"account's do-not-call list (honor_internal_dnc): {exc}",
                )
            return _unplaced(contact, "failed", str(exc))
        except RetellAPIError as exc:
            return _unplaced(contact, "failed", str(exc))

    @staticmethod
    def _check_replay(
        contact: Contact, request: PhoneCallRequest, call: PhoneCall
    ) -> PhoneCall | ContactResult:
        """Refuse a call that Retell returned for another number under this key."""
        if call.to_number in (None, request.to_number):
            return call
        return _unplaced(
            contact,
            "failed",
            f"Retell returned call {call.call_id}, placed to another number, for "
            "this call's idempotency key; it was not dialled. Use a new campaign_id.",
        )

    async def _find_placed(self, request: PhoneCallRequest) -> PhoneCall | None:
        """Look for a call that a request without an answer may have placed."""
        key = request.metadata["prefect_retell_idempotency_key"]
        criteria = {
            "metadata": [
                {
                    "key": "prefect_retell_idempotency_key",
                    "type": "string",
                    "op": "eq",
                    "value": key,
                }
            ]
        }
        try:
            page = await self.client.list_calls_page(criteria, limit=1)
        except RetellAPIError:
            return None
        return page.items[0] if page.items else None

    def _request(
        self, contact: Contact, attempt: int, from_number: str
    ) -> PhoneCallRequest:
        key = _idempotency_key(self.plan.campaign_id, contact.to_number, attempt)
        variables = dict(contact.variables)
        if contact.extension:
            variables.setdefault("extension", contact.extension)
        return PhoneCallRequest(
            from_number=from_number,
            to_number=contact.to_number,
            override_agent_id=self.plan.agent_id,
            override_agent_version=self.plan.agent_version,
            retell_llm_dynamic_variables=variables or None,
            honor_internal_dnc=True if self.rules.honor_internal_dnc else None,
            metadata={
                **self.plan.metadata,
                "prefect_retell_campaign": self.plan.campaign_id,
                "prefect_retell_row": str(contact.row),
                "prefect_retell_attempt": str(attempt),
                "prefect_retell_idempotency_key": key,
                "prefect_flow_run_id": str(flow_run.get_id() or ""),
            },
            idempotency_key=key,
        )


class _Progress:
    """A progress artifact and a log line that move while calls are placed.

    While contacts wait for their calling window or a redial, the description of
    the progress artifact says how many and until when, and the artifact
    `retell-campaign-waiting` lists them (numbers masked) with the time each will
    be called.
    """

    def __init__(self, dialler: _Dialler) -> None:
        self.dialler = dialler
        self.artifact_id = None
        self._task: asyncio.Task[None] | None = None
        self._last: tuple[float, int] = (-1.0, -1)
        self._published_changes = 0

    async def start(self) -> None:
        plan = self.dialler.plan
        self.artifact_id = await acreate_progress_artifact(
            progress=0.0,
            key="retell-campaign-progress" + _shard_suffix(plan),
            description=f"Share of the {_shard_text(plan)}calls placed so far.",
        )
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._update(final=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_PROGRESS_EVERY_SECONDS)
            await self._update(final=False)
            await self.dialler.keep_record()

    async def _update(self, *, final: bool) -> None:
        dialler = self.dialler
        share = 100.0 if not dialler.total else 100.0 * dialler.placed / dialler.total
        state = (share, dialler.waiting_changes)
        if state == self._last and not final:
            return
        self._last = state
        waiting = _waiting_text(dialler.waiting)
        if self.artifact_id:
            await aupdate_progress_artifact(
                self.artifact_id,
                progress=share,
                description=f"Share of the campaign's calls placed so far{waiting}.",
            )
        await self._publish_waiting()
        if dialler.plan.monitor == "none":
            # Calls are not followed: none of them is known to have finished.
            dialler.logger.info(
                "Placed %d of %d calls (not followed: monitor none)%s",
                dialler.placed,
                dialler.total,
                waiting,
            )
            return
        dialler.logger.info(
            "Placed %d of %d calls; %d finished%s",
            dialler.placed,
            dialler.total,
            dialler.finished,
            waiting,
        )

    async def _publish_waiting(self) -> None:
        """Publish the waiting contacts when they changed since the last time."""
        changes = self.dialler.waiting_changes
        if changes == self._published_changes:
            return
        self._published_changes = changes
        await acreate_markdown_artifact(
            key="retell-campaign-waiting",
            markdown=_waiting_markdown(self.dialler.waiting.values()),
            description="Contacts waiting for their calling window or a redial.",
        )


def _waiting_text(waiting: dict[int, _Waiting]) -> str:
    if not waiting:
        return ""
    first = min(entry.opens for entry in waiting.values())
    return f"; {len(waiting)} waiting, the next called at {_utc_text(first)}"


def _waiting_markdown(waiting: Iterable[_Waiting], most: int = 200) -> str:
    entries = sorted(waiting, key=lambda entry: (entry.opens, entry.row))
    if not entries:
        return "No contact is waiting.\n"
    lines = [
        f"{len(entries)} contact(s) waiting.",
        "",
        "| Row | Number | Waits for | Called at (UTC) | Local time |",
        "|---:|---|---|---|---|",
    ]
    lines += [
        f"| {entry.row} | {mask_phone_number(entry.to_number, always=True)} | "
        f"{entry.why} | {_utc_text(entry.opens)} | {entry.local_text} |"
        for entry in entries[:most]
    ]
    if len(entries) > most:
        lines.append(f"\nAnd {len(entries) - most} more.")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Waiting:
    """A contact waiting for its calling window or its redial."""

    row: int
    to_number: str
    opens: datetime
    why: str
    zone: RecipientZone | None

    @property
    def local_text(self) -> str:
        """The moment on the recipient's clock, or the zones that decide it."""
        if self.zone is None:
            return "no calling window"
        if len(self.zone.names) > 1:
            return f"open in all of {self.zone.label}"
        local = self.opens.astimezone(self.zone.zones[0])
        return f"{local:%Y-%m-%d %H:%M %Z} in {self.zone.names[0]}"


def _is_dnc_refusal(exc: RetellAPIError) -> bool:
    # Retell documents a 400 for a do-not-call hit but not its message; any 400
    # that speaks of do-not-call while honor_internal_dnc is on is taken as one.
    text = (exc.retell_message or "").casefold()
    return exc.status_code == 400 and any(
        word in text for word in ("do-not-call", "do not call", "dnc")
    )


def _dials(attempts: list[CallAttempt]) -> int:
    """Calls that reached the phone network: all but those refused for capacity."""
    return sum(1 for each in attempts if each.disconnection_reason != CAPACITY_REASON)


def _capacity_streak(attempts: list[CallAttempt]) -> int:
    """How many of the latest attempts in a row ended for lack of capacity."""
    streak = 0
    for attempt in reversed(attempts):
        if attempt.disconnection_reason != CAPACITY_REASON:
            break
        streak += 1
    return streak


def _utc_text(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _attempt_number(call: PhoneCall) -> int:
    try:
        return int((call.metadata or {}).get("prefect_retell_attempt", 1))
    except (TypeError, ValueError):
        return 1


def _idempotency_key(campaign_id: str, to_number: str, attempt: int) -> str:
    # The same campaign, destination and attempt always give the same key, so
    # that a resumed or retried run gets the call already placed back from
    # Retell. The destination is part of it, not the row: a list edited between
    # two runs shifts rows, and must neither skip a new contact nor dial an old
    # one again. The from-number is not: with several numbers, a resumed run may
    # give the attempt to another number, and must still get the same call back.
    text = f"{campaign_id}|{to_number}|{attempt}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"prefect-retell-{digest[:40]}"


def _row(contact: Contact, outcome: str, **fields: Any) -> ContactResult:
    """A contact's result, carrying its number, warnings and columns."""
    return ContactResult(
        row=contact.row,
        outcome=outcome,
        to_number=contact.to_number,
        raw_phone=contact.raw_phone,
        warnings=list(contact.warnings),
        variables=dict(contact.variables),
        **fields,
    )


def _called(
    contact: Contact, call: PhoneCall, attempts: list[CallAttempt]
) -> ContactResult:
    analysis = call.call_analysis
    return _row(
        contact,
        "called",
        call_id=call.call_id,
        call_status=call.call_status,
        disconnection_reason=call.disconnection_reason,
        duration_ms=call.duration_ms,
        cost_cents=call.call_cost.combined_cost if call.call_cost else None,
        call_successful=analysis.call_successful if analysis else None,
        attempts=attempts,
    )


def _timed_out(
    contact: Contact, call: PhoneCall, attempt: int, exc: RetellCallTimeoutError
) -> ContactResult:
    attempt_record = CallAttempt(
        attempt=attempt, call_id=call.call_id, call_status=exc.last_status
    )
    return _row(
        contact,
        "timed_out",
        reason=str(exc),
        call_id=call.call_id,
        call_status=exc.last_status,
        attempts=[attempt_record],
    )


def _unfollowed(
    contact: Contact, call: PhoneCall, attempt: int, exc: Exception
) -> ContactResult:
    reason = (
        f"call {call.call_id} was placed but could not be followed to its end, "
        f"and it was not dialled again: {exc}"
    )
    return _row(
        contact,
        "unknown",
        reason=reason,
        call_id=call.call_id,
        attempts=[CallAttempt(attempt=attempt, call_id=call.call_id)],
    )


def _unplaced(contact: Contact, outcome: str, reason: str) -> ContactResult:
    return _row(contact, outcome, reason=reason)


def _rejected(contact: Contact, reason: str) -> ContactResult:
    return _row(contact, "rejected", reason=reason)


def _all_rows(
    contact_list: ContactList, called: dict[int, ContactResult]
) -> list[ContactResult]:
    rows = dict(called)
    for bad in contact_list.rejected:
        rows[bad.row] = ContactResult(
            row=bad.row,
            outcome="rejected",
            raw_phone=bad.raw_phone,
            reason=bad.reason,
            variables=dict(bad.variables),
        )
    for dup in contact_list.duplicates:
        rows[dup.row] = ContactResult(
            row=dup.row,
            outcome="duplicate",
            to_number=dup.to_number,
            raw_phone=dup.raw_phone,
            duplicate_of=dup.duplicate_of,
            reason=_duplicate_reason(dup, called.get(dup.duplicate_of)),
            variables=dict(dup.variables),
        )
    return [rows[row] for row in sorted(rows)]


# What became of the row a duplicate repeats, said from the duplicate's side: the
# duplicate is never dialled itself, so its reason must not claim a call that the
# kept row did not get (a suppressed row, say).
_KEPT_ROW_FATES = {
    "called": "which is dialled instead",
    "timed_out": "which is dialled instead",
    "unknown": "whose call may have been placed; this row is not dialled",
    "suppressed": "which is on the do-not-call list; neither row is dialled",
    "rejected": "which is rejected; neither row is dialled",
    "waiting": "which waits for its calling window; this row is not dialled separately",
    "failed": "whose call Retell refused to place; this row is not dialled separately",
}


def _duplicate_reason(dup, kept: ContactResult | None) -> str:
    fate = "which stands for this row; this row is not dialled"
    if kept is not None:
        fate = _KEPT_ROW_FATES.get(
            kept.outcome, f"which is {kept.outcome}; this row is not dialled"
        )
    text = f"same number as row {dup.duplicate_of}, {fate}"
    if dup.differences:
        text += "; differing columns: " + ", ".join(sorted(dup.differences))
    return text


def _shard_suffix(plan: _Plan) -> str:
    """What a shard adds to its artifacts' keys: one key per shard in the UI."""
    if plan.shard_count == 1:
        return ""
    return f"-shard-{plan.shard}-of-{plan.shard_count}"


def _shard_text(plan: _Plan) -> str:
    if plan.shard_count == 1:
        return "campaign's "
    return f"shard {plan.shard} of {plan.shard_count}'s "


async def _publish(result: CampaignResult, plan: _Plan) -> None:
    shard = ""
    markdown = result.summary_markdown()
    if plan.shard_count > 1:
        shard = f", shard {plan.shard} of {plan.shard_count}"
        markdown = (
            f"**Shard {plan.shard} of {plan.shard_count}**: the rows of this "
            "shard's share of the list.\n\n" + markdown
        )
    # Prefect refuses to publish the event of a table of some thousands of rows,
    # so a large campaign's table shows its first rows and says where the rest are.
    table, left_out = result.artifact_table()
    description = f"One row per contact of campaign {result.campaign_id}{shard}."
    if left_out:
        note = _left_out_note(len(table), left_out)
        description += " " + note
        markdown += "\n" + note + "\n"
        get_run_logger().info("Results table artifact: %s", note)
    await acreate_table_artifact(
        key="retell-campaign-results" + _shard_suffix(plan),
        table=table,
        description=description,
    )
    await acreate_markdown_artifact(
        key="retell-campaign-summary" + _shard_suffix(plan),
        markdown=markdown,
        description=f"Summary of campaign {result.campaign_id}{shard}.",
    )


def _left_out_note(shown: int, left_out: int) -> str:
    return (
        f"The results table shows the first {shown} of {shown + left_out} rows; "
        f"{left_out} are left out to keep the artifact within the size Prefect "
        "publishes. Every row is in the flow run's return value (the "
        "CampaignResult's rows) and in the file `prefect-retell campaign "
        "--results` writes."
    )


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {key}" for key, value in sorted(counts.items()))
