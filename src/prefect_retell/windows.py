"""Calling windows: the hours and days a recipient may be called, in their own time.

A window is read on the recipient's wall clock, never on the server's or in UTC:
09:00–20:00 means nine in the morning where the phone rings, whatever the
offset that day (daylight saving included). The recipient's time zone comes from,
in this order:

1. the contact's time zone column, when the campaign names one and the cell is
   filled (an IANA name such as `America/New_York`);
2. the number itself, through `phonenumbers`' time zone data, when that gives
   exactly one zone (a New York landline);
3. the campaign's `default_timezone`, when the number spans several zones (a
   toll-free number, an area code across two zones, a mobile number without
   geography);
4. otherwise every zone the number may be in: the window must be open in all of
   them at once, the most restrictive reading. When those windows never overlap,
   the contact cannot be placed in time, and it is reported, not guessed.

Example:
    >>> from datetime import datetime, timezone
    >>> from zoneinfo import ZoneInfo
    >>> window = CallingWindow(start="09:00", end="20:00")
    >>> moment = datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)
    >>> window.next_opening(moment, [ZoneInfo("America/New_York")])
    datetime.datetime(2026, 3, 8, 13, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefect_retell.contacts import Contact

__all__ = [
    "WEEKDAYS",
    "CallingWindow",
    "RecipientZone",
    "Weekday",
    "number_time_zones",
    "recipient_zone",
    "timezone_variable",
]

Weekday = Literal[
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
]
WEEKDAYS: tuple[Weekday, ...] = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
"""Day names in `date.weekday()` order, as Retell's batch calls spell them."""

_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
# A week and a day: every allowed weekday comes round once, with room for a
# daylight-saving change in between.
_HORIZON_DAYS = 8
_UNKNOWN_ZONE = "Etc/Unknown"


class CallingWindow(BaseModel):
    """When recipients may be called, on their own clocks.

    The window is `[start, end)` on each allowed day; it does not cross midnight.
    A window that starts inside a daylight-saving gap (02:30 on the night clocks
    go forward) opens at that time read in the old offset, up to an hour late on
    that one day, never early.

    Example:
        Weekdays from nine to eight, Eastern time for numbers that do not say:
        ```python
        window = CallingWindow(
            start="09:00", end="20:00",
            days=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
            default_timezone="America/New_York",
        )
        ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(
        default="09:00",
        description="First minute a call may start, recipient's local time (HH:MM).",
    )
    end: str = Field(
        default="20:00",
        description=(
            "Minute from which no call may start, recipient's local time (HH:MM, "
            "24:00 for midnight); later than start."
        ),
    )
    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS),
        min_length=1,
        description="Days, in the recipient's time zone, on which calls may start.",
    )
    default_timezone: str | None = Field(
        default=None,
        description=(
            "IANA time zone (such as America/New_York) for numbers that span "
            "several zones or none, like toll-free and many mobile numbers. Empty: "
            "such numbers are called only when the window is open in every zone "
            "they may be in."
        ),
    )
    timezone_column: str | None = Field(
        default=None,
        description=(
            "Column of the contact list holding each recipient's IANA time zone; "
            "a filled cell wins over the zone read from the number."
        ),
    )

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        value = value.strip()
        if not _CLOCK_TIME.match(value):
            raise ValueError(f"{value!r} is not a time of day written as HH:MM")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if _zone(value.strip()) is None:
            raise ValueError(
                f"{value!r} is not an IANA time zone name (such as America/New_York)"
            )
        return value.strip()

    @model_validator(mode="after")
    def _start_before_end(self) -> CallingWindow:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(
                f"start {self.start} must be earlier than end {self.end}; a window "
                "does not cross midnight"
            )
        return self

    def is_open(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Whether a call may start at `moment` for a recipient in `zone`."""
        local = moment.astimezone(zone)
        if WEEKDAYS[local.weekday()] not in self.days:
            return False
        minute = local.hour * 60 + local.minute + local.second / 60
        return _minutes(self.start) <= minute < _minutes(self.end)

    def is_open_everywhere(self, moment: datetime, zones: Sequence[ZoneInfo]) -> bool:
        """Whether the window is open at `moment` in every one of `zones`."""
        return all(self.is_open(moment, zone) for zone in zones)

    def next_opening(
        self, moment: datetime, zones: Sequence[ZoneInfo]
    ) -> datetime | None:
        """The first moment at or after `moment` open in every zone, in UTC.

        None when no such moment comes within eight days: the zones' windows never
        overlap.
        """
        if self.is_open_everywhere(moment, zones):
            return moment.astimezone(timezone.utc)
        # Where several windows overlap, the overlap begins where one of them
        # opens, so those openings are the only candidates.
        candidates = sorted(
            opening
            for zone in zones
            for opening in self._openings(moment, zone)
            if opening > moment
        )
        for candidate in candidates:
            if self.is_open_everywhere(candidate, zones):
                return candidate
        return None

    def _openings(self, moment: datetime, zone: ZoneInfo) -> list[datetime]:
        """The window's start on each allowed local day of the horizon, in UTC."""
        first = moment.astimezone(zone).date() - timedelta(days=1)
        days = (first + timedelta(days=offset) for offset in range(_HORIZON_DAYS + 2))
        return [
            _local_start(day, self.start, zone)
            for day in days
            if WEEKDAYS[day.weekday()] in self.days
        ]

    def describe(self) -> str:
        """The window in words, for log lines and reasons."""
        days = "every day" if len(self.days) == 7 else ", ".join(self.days)
        return f"{self.start}–{self.end} local time, {days}"


@dataclass(frozen=True)
class RecipientZone:
    """The time zone(s) whose clock decides when a contact may be called.

    Attributes:
        names: IANA names; with several, the window must be open in all of them.
        source: Where they come from: "column", "number", "default_timezone" or
            "every zone of the number".
    """

    names: tuple[str, ...]
    source: str

    @property
    def zones(self) -> list[ZoneInfo]:
        """The zones as `ZoneInfo` objects."""
        return [ZoneInfo(name) for name in self.names]

    @property
    def label(self) -> str:
        """A short name for tables: one zone, or the first and last of several."""
        if len(self.names) == 1:
            return self.names[0]
        return f"{len(self.names)} zones ({self.names[0]} … {self.names[-1]})"


def number_time_zones(to_number: str) -> tuple[str, ...]:
    """The IANA zones `phonenumbers` gives for a number, those this machine knows.

    Empty when the number has no known geography.
    """
    parsed = phonenumbers.parse(to_number)
    names = number_timezones.time_zones_for_number(parsed)
    return tuple(name for name in names if name != _UNKNOWN_ZONE and _zone(name))


def recipient_zone(
    contact: Contact,
    window: CallingWindow,
    zone_variable: str | None = None,
    *,
    now: datetime,
) -> RecipientZone | str:
    """Whose clock decides when `contact` may be called, or why nobody's can.

    Args:
        contact: The contact.
        window: The campaign's calling window.
        zone_variable: Variable name of the time zone column, if one is used.
        now: The campaign's current time, to check that the window ever opens.

    Returns:
        A `RecipientZone`, or the reason the contact cannot be placed in time.
    """
    cell = (contact.variables.get(zone_variable, "") if zone_variable else "").strip()
    if cell:
        if _zone(cell) is None:
            return (
                f"time zone {cell!r} in column {window.timezone_column!r} is not an "
                "IANA time zone name (such as America/New_York); not dialled"
            )
        return RecipientZone((cell,), "column")
    names = number_time_zones(contact.to_number)
    if len(names) == 1:
        return RecipientZone(names, "number")
    if window.default_timezone:
        return RecipientZone((window.default_timezone,), "default_timezone")
    if not names:
        return (
            "no time zone is known for this number; set the calling window's "
            "default_timezone or a time zone column; not dialled"
        )
    zone = RecipientZone(names, "every zone of the number")
    if window.next_opening(now, zone.zones) is None:
        return (
            f"the number may be in any of {len(names)} time zones ({names[0]} … "
            f"{names[-1]}), and the window {window.describe()} is never open in all "
            "of them at once; set the calling window's default_timezone or a time "
            "zone column; not dialled"
        )
    return zone


def timezone_variable(variable_names: Mapping[str, str], column: str) -> str:
    """The variable name under which a contact list holds the time zone column.

    Args:
        variable_names: The contact list's header -> variable name mapping.
        column: The header as the user wrote it; case, spaces and punctuation
            are forgiven.

    Raises:
        ValueError: No column of that name; the message lists the columns.
    """
    if column.strip() in variable_names:
        return variable_names[column.strip()]
    wanted = _loose(column)
    for header, name in variable_names.items():
        if _loose(header) == wanted:
            return name
    found = ", ".join(repr(header) for header in variable_names) or "none"
    raise ValueError(
        f"the contact list has no time zone column {column!r}; columns found "
        f"besides the phone column: {found}"
    )


def _loose(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())


def _minutes(clock_time: str) -> int:
    hours, minutes = clock_time.split(":")
    return int(hours) * 60 + int(minutes)


def _local_start(day: date, clock_time: str, zone: ZoneInfo) -> datetime:
    minutes = _minutes(clock_time)
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(timezone.utc)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
