"""Calling windows read on the recipient's clock (F14), and contacts that wait for them.

The unit tests check the window arithmetic; the campaign tests run real flows
against the sandbox on a `ScaledClock` that starts at F14's moments and runs an
hour of campaign time in a few real seconds, and read the sandbox's record of
when each call was created.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from pydantic import ValidationError

from flow_support import TWILIO, contacts_file, run_campaign
from prefect_retell import CallingWindow, RetellConfigurationError, outbound_campaign
from prefect_retell.clock import ScaledClock, use_clock
from prefect_retell.contacts import Contact
from prefect_retell.sandbox import Outcome
from prefect_retell.windows import RecipientZone, recipient_zone

UTC = timezone.utc
NEW_YORK = "+12125550123"
NEW_YORK_2 = "+12125550124"
LOS_ANGELES = "+14155550123"
TOLL_FREE = "+18005550199"
TOKYO = "+81312345678"
IDAHO = "+12085550123"  # area code 208: America/Boise and America/Los_Angeles

WINDOW = CallingWindow(start="09:00", end="20:00")


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _contact(number: str, **variables: str) -> Contact:
    return Contact(row=1, to_number=number, raw_phone=number, variables=variables)


def _zones(*names: str) -> list[ZoneInfo]:
    return [ZoneInfo(name) for name in names]


# --- the window arithmetic ----------------------------------------------------------


def test_dst_morning_opens_at_nine_eastern_daylight_time():
    """F14: at 01:30 EST on the DST day, a 09:00 window opens at 13:00Z, not 14:00Z."""
    opens = WINDOW.next_opening(_utc(2026, 3, 8, 6, 30), _zones("America/New_York"))
    assert opens == _utc(2026, 3, 8, 13, 0)


def test_window_already_open_opens_now():
    """F14: 09:30 PDT in July is inside 09:00–20:00 Los Angeles time."""
    now = _utc(2026, 7, 15, 16, 30)
    assert WINDOW.next_opening(now, _zones("America/Los_Angeles")) == now


def test_evening_before_dst_end_defers_to_next_morning_in_standard_time():
    """F14: 20:30 EDT on Oct 31 waits for 09:00 EST on Nov 1, which is 14:00Z."""
    opens = WINDOW.next_opening(_utc(2026, 11, 1, 0, 30), _zones("America/New_York"))
    assert opens == _utc(2026, 11, 1, 14, 0)


def test_end_is_exclusive():
    """A call may not start at the window's end minute."""
    assert not WINDOW.is_open(_utc(2026, 7, 16, 0, 0), ZoneInfo("America/New_York"))
    assert WINDOW.is_open(_utc(2026, 7, 15, 23, 59), ZoneInfo("America/New_York"))


def test_weekdays_only_skip_the_weekend_across_a_dst_change():
    """Friday 18:30 EST with Monday–Friday 09–17 opens Monday 09:00 EDT (13:00Z)."""
    weekdays = CallingWindow(
        start="09:00",
        end="17:00",
        days=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    )
    opens = weekdays.next_opening(_utc(2026, 3, 6, 23, 30), _zones("America/New_York"))
    assert opens == _utc(2026, 3, 9, 13, 0)


def test_two_zones_open_when_both_are_open():
    """An Idaho number (Boise and Los Angeles) waits for 09:00 in the later zone."""
    zone = recipient_zone(_contact(IDAHO), WINDOW, now=_utc(2026, 3, 8, 6, 30))
    assert zone == RecipientZone(
        ("America/Boise", "America/Los_Angeles"), "every zone of the number"
    )
    assert WINDOW.next_opening(_utc(2026, 3, 8, 6, 30), zone.zones) == _utc(
        2026, 3, 8, 16, 0
    )


def test_number_with_one_zone_uses_it():
    """A New York number is read in America/New_York, whatever the default."""
    window = CallingWindow(default_timezone="America/Chicago")
    zone = recipient_zone(_contact(NEW_YORK), window, now=_utc(2026, 3, 8, 6, 30))
    assert zone == RecipientZone(("America/New_York",), "number")


def test_toll_free_uses_the_default_time_zone():
    """F14: a toll-free number (42 candidate zones) is read in default_timezone."""
    window = CallingWindow(default_timezone="America/Chicago")
    zone = recipient_zone(_contact(TOLL_FREE), window, now=_utc(2026, 3, 8, 6, 30))
    assert zone == RecipientZone(("America/Chicago",), "default_timezone")


def test_toll_free_without_a_default_is_refused_saying_why():
    """Without default_timezone, a toll-free number's zones never share 09–20."""
    reason = recipient_zone(_contact(TOLL_FREE), WINDOW, now=_utc(2026, 3, 8, 6, 30))
    assert reason == (
        "the number may be in any of 42 time zones (America/Adak … Pacific/Saipan), "
        "and the window 09:00–20:00 local time, every day is never open in all of "
        "them at once; set the calling window's default_timezone or a time zone "
        "column; not dialled"
    )


def test_time_zone_column_wins_over_the_number():
    """A filled time zone cell decides, even for a number with one zone."""
    window = CallingWindow(timezone_column="Time Zone")
    contact = _contact(NEW_YORK, time_zone="Europe/Berlin")
    zone = recipient_zone(contact, window, "time_zone", now=_utc(2026, 3, 8, 6, 30))
    assert zone == RecipientZone(("Europe/Berlin",), "column")


def test_time_zone_column_with_an_unknown_name_is_refused():
    """A cell that is not an IANA name is reported, not guessed."""
    window = CallingWindow(timezone_column="Time Zone")
    contact = _contact(NEW_YORK, time_zone="EST5")
    reason = recipient_zone(contact, window, "time_zone", now=_utc(2026, 3, 8, 6, 30))
    assert reason == (
        "time zone 'EST5' in column 'Time Zone' is not an IANA time zone name (such "
        "as America/New_York); not dialled"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "20:00", "end": "09:00"}, "start 20:00 must be earlier than end"),
        ({"start": "9am"}, "'9am' is not a time of day written as HH:MM"),
        ({"default_timezone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA time"),
        ({"days": []}, "at least 1 item"),
    ],
)
def test_window_settings_that_cannot_work_are_refused(fields, message):
    """Reversed hours, bad times, unknown zones and no days are refused."""
    with pytest.raises(ValidationError, match=message):
        CallingWindow(**fields)


# --- campaigns on a scaled clock ---------------------------------------------------

# One real second is half an hour of campaign time.
CLOCK_SCALE = 1 / 1800
QUICK = Outcome(kind="answered", ring_seconds=1, talk_seconds=5)


def _placed_at(run, clock: ScaledClock, number: str) -> list[datetime]:
    """When the sandbox created each call to `number`, on the campaign's clock."""
    return [clock.at(call["created_at"]) for call in run.calls_to(number)]


@pytest.fixture(scope="module")
async def dst_morning(prefect_server, sandbox_server):
    """F14 on 2026-03-08 at 06:30Z (01:30 EST, the DST day), one concurrency slot.

    New York and Los Angeles are outside 09–20; the toll-free number is read in
    Chicago time; Tokyo (15:30 JST) is inside.
    """
    sandbox_server.sandbox.reset()
    for number in (NEW_YORK, LOS_ANGELES, TOLL_FREE, TOKYO):
        sandbox_server.sandbox.set_outcome(number, QUICK)
    clock = ScaledClock(_utc(2026, 3, 8, 6, 30), time_scale=CLOCK_SCALE)
    window = CallingWindow(default_timezone="America/Chicago")
    with use_clock(clock):
        run = await run_campaign(
            sandbox_server,
            contacts=[{"phone": n} for n in (NEW_YORK, LOS_ANGELES, TOLL_FREE, TOKYO)],
            from_number=TWILIO,
            cps=5,
            max_concurrency=1,
            calling_window=window.model_dump(),
        )
    return run, clock


def test_new_york_is_first_dialled_at_nine_eastern_daylight_time(dst_morning):
    """F14: +12125550123 is dialled once, not before 13:00Z (09:00 EDT)."""
    run, clock = dst_morning
    [placed] = _placed_at(run, clock, NEW_YORK)
    assert _utc(2026, 3, 8, 13, 0) <= placed < _utc(2026, 3, 8, 14, 0)


def test_los_angeles_waits_for_nine_pacific_daylight_time(dst_morning):
    """Los Angeles, on the same DST morning, is dialled from 16:00Z (09:00 PDT)."""
    run, clock = dst_morning
    [placed] = _placed_at(run, clock, LOS_ANGELES)
    assert placed >= _utc(2026, 3, 8, 16, 0)


def test_toll_free_number_is_dialled_in_the_default_time_zone(dst_morning):
    """F14: the toll-free number waits for 09:00 CDT (14:00Z), and says its zone."""
    run, clock = dst_morning
    [placed] = _placed_at(run, clock, TOLL_FREE)
    assert placed >= _utc(2026, 3, 8, 14, 0)
    assert run.row(3).time_zone == "America/Chicago"


def test_contact_inside_its_window_does_not_wait_for_the_others(dst_morning):
    """Tokyo is dialled at once: waiting contacts hold none of the one slot."""
    run, clock = dst_morning
    [placed] = _placed_at(run, clock, TOKYO)
    assert placed < _utc(2026, 3, 8, 8, 0)


def test_every_contact_is_called_once_with_its_time_zone(dst_morning):
    """All four rows end called, each with one attempt and the zone it was read in."""
    run, _ = dst_morning
    assert [
        (row.outcome, len(row.attempts), row.time_zone) for row in run.result.rows
    ] == [
        ("called", 1, "America/New_York"),
        ("called", 1, "America/Los_Angeles"),
        ("called", 1, "America/Chicago"),
        ("called", 1, "Asia/Tokyo"),
    ]


def test_attempts_record_when_they_were_placed(dst_morning):
    """A row's attempt carries its campaign-clock time, inside the window."""
    run, _ = dst_morning
    [attempt] = run.row(1).attempts
    assert attempt.placed_at >= _utc(2026, 3, 8, 13, 0)


async def test_waiting_contacts_are_published_with_masked_numbers(dst_morning):
    """The waiting artifact listed New York, masked, with 13:00 UTC / 09:00 EDT."""
    run, _ = dst_morning
    async with get_client() as client:
        versions = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["retell-campaign-waiting"])
            ),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.flow_run_id])),
        )
    texts = [version.data for version in versions]
    line = (
        "| 1 | +*******0123 | calling window | 2026-03-08 13:00:00 UTC | "
        "2026-03-08 09:00 EDT in America/New_York |"
    )
    assert any(line in text for text in texts)
    assert not any(NEW_YORK in text for text in texts)


async def test_waiting_contact_is_logged_with_its_masked_number(
    prefect_server, sandbox, caplog
):
    """F14: the log says when +12125550124 will be called, its number masked."""
    caplog.set_level(logging.INFO, logger="prefect")
    sandbox.sandbox.set_outcome(NEW_YORK_2, QUICK)
    clock = ScaledClock(_utc(2026, 11, 1, 0, 30), time_scale=1 / 7200)
    with use_clock(clock):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": NEW_YORK_2}],
            from_number=TWILIO,
            calling_window=WINDOW.model_dump(),
        )

    [placed] = _placed_at(run, clock, NEW_YORK_2)
    assert placed >= _utc(2026, 11, 1, 14, 0)
    assert (
        "Row 1 (+*******0124) waits for its calling window: called at 2026-11-01 "
        "14:00:00 UTC at the earliest (2026-11-01 09:00 EST in America/New_York)"
    ) in caplog.messages
    assert not any(NEW_YORK_2 in message for message in caplog.messages)


async def test_contact_inside_its_window_is_dialled_at_once(prefect_server, sandbox):
    """F14: +14155550123 at 09:30 PDT in July is dialled without waiting."""
    sandbox.sandbox.set_outcome(LOS_ANGELES, QUICK)
    # A simulated minute a real second: on a loaded machine the flow may take
    # seconds from its first look at the clock to the call, which at
    # CLOCK_SCALE would be most of an hour.
    clock = ScaledClock(_utc(2026, 7, 15, 16, 30), time_scale=1 / 60)
    with use_clock(clock):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": LOS_ANGELES}],
            from_number=TWILIO,
            calling_window=WINDOW.model_dump(),
        )

    [placed] = _placed_at(run, clock, LOS_ANGELES)
    assert placed < _utc(2026, 7, 15, 16, 30) + timedelta(minutes=30)


async def test_window_after_the_deadline_is_reported_not_dialled(
    prefect_server, sandbox
):
    """A Friday-evening contact whose window opens after Saturday's deadline waits.

    Its row says `waiting`, with the Monday 09:00 EDT it would be called at.
    """
    clock = ScaledClock(_utc(2026, 3, 6, 23, 30), time_scale=CLOCK_SCALE)
    weekdays = CallingWindow(
        end="17:00", days=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    )
    with use_clock(clock):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": NEW_YORK}],
            from_number=TWILIO,
            calling_window=weekdays.model_dump(),
            deadline=_utc(2026, 3, 7, 12, 0),
        )

    row = run.row(1)
    assert (row.outcome, row.next_call_at, row.attempts) == (
        "waiting",
        _utc(2026, 3, 9, 13, 0),
        [],
    )
    assert row.reason == (
        "not dialled: its first call was due at 2026-03-09 13:00:00 UTC after the "
        "campaign's deadline; run the campaign again with the same campaign_id and "
        "a later deadline to place it"
    )
    assert run.calls_to(NEW_YORK) == []


async def test_toll_free_without_default_zone_is_rejected_before_dialling(
    prefect_server, sandbox
):
    """F14: without default_timezone the toll-free row is rejected, saying why."""
    sandbox.sandbox.set_outcome(LOS_ANGELES, QUICK)
    with use_clock(ScaledClock(_utc(2026, 7, 15, 16, 30), time_scale=CLOCK_SCALE)):
        run = await run_campaign(
            sandbox,
            contacts=[{"phone": TOLL_FREE}, {"phone": LOS_ANGELES}],
            from_number=TWILIO,
            calling_window=WINDOW.model_dump(),
        )

    row = run.row(1)
    assert row.outcome == "rejected"
    assert row.reason.startswith("the number may be in any of 42 time zones")
    assert run.calls_to(TOLL_FREE) == []
    assert run.row(2).outcome == "called"


async def test_time_zone_column_missing_from_the_file_refuses_the_campaign(
    prefect_server, sandbox, credentials
):
    """A timezone_column the list does not have is refused, listing the columns."""
    window = CallingWindow(timezone_column="Zone")
    with pytest.raises(RetellConfigurationError) as caught:
        await outbound_campaign(
            contacts=contacts_file([{"phone": LOS_ANGELES, "name": "Ada"}]),
            from_number=TWILIO,
            credentials=credentials,
            calling_window=window.model_dump(),
        )

    assert str(caught.value) == (
        "the contact list has no time zone column 'Zone'; columns found besides the "
        "phone column: 'name'; nothing was dialled."
    )
    assert sandbox.sandbox.stats()["calls"] == []


async def test_deadline_without_a_time_zone_refuses_the_campaign(
    prefect_server, sandbox, credentials
):
    """A deadline whose moment depends on the machine's zone is refused."""
    with pytest.raises(RetellConfigurationError) as caught:
        await outbound_campaign(
            contacts=contacts_file([{"phone": LOS_ANGELES}]),
            from_number=TWILIO,
            credentials=credentials,
            deadline=datetime(2026, 3, 9, 18, 0),
        )

    assert str(caught.value) == (
        "deadline 2026-03-09T18:00:00 has no time zone; write it with one, such as "
        "2026-03-09T18:00:00Z or 2026-03-09T13:00:00-05:00. Nothing was dialled."
    )
    assert sandbox.sandbox.stats()["calls"] == []
