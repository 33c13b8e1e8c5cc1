"""Do-not-call lists: numbers a campaign must never dial.

A suppression list comes from a file (one number a line, or a CSV with a phone
column, as exported from a CRM) or from a saved `SuppressionList` block, or
both. Its numbers are normalised exactly as contacts are, so `(415) 555-0123` on
the list stops `+1 415 555 0123` in the contacts. A campaign checks every contact
against it before anything is dialled; a match is reported `suppressed`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from prefect_retell.contacts import (
    _MINUS_SIGNS,
    ContactsError,
    load_contacts,
    normalize_phone,
)
from prefect_retell.errors import RetellConfigurationError

__all__ = ["Suppression", "SuppressionList", "load_suppression"]

_MOST_LISTED_PROBLEMS = 10


class SuppressionList(Block):
    """Phone numbers that outbound campaigns must never call.

    Numbers may be written as people write them; each is normalised to E.164
    with `default_region` before it is compared with a contact's number.

    Example:
        Save a list once, then name it in every campaign:
        ```python
        from prefect_retell import SuppressionList

        SuppressionList(numbers=["+14155550123", "(212) 555-0199"]).save("dnc")
        # outbound_campaign(..., suppression_block="dnc")
        ```
    """

    _block_type_name = "Retell Suppression List"
    _block_type_slug = "retell-suppression-list"
    _logo_url = "https://avatars.githubusercontent.com/u/128401473"
    _description = "Phone numbers that Retell outbound campaigns never dial."

    numbers: list[str] = Field(
        default_factory=list,
        description="Numbers never to call, in E.164 or as written in your region.",
    )
    default_region: str = Field(
        default="US",
        description="Country (ISO code) of numbers written without one.",
    )


@dataclass
class Suppression:
    """The numbers a campaign may not dial, and where they came from.

    Attributes:
        numbers: E.164 numbers.
        sources: The file and block names, for reasons and log lines.
        warnings: Entries that are not numbers, and so suppress nothing.
    """

    numbers: frozenset[str] = frozenset()
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def reason(self) -> str:
        """Why a listed contact is not dialled."""
        return f"on the do-not-call list ({' and '.join(self.sources)}); not dialled"

    def __contains__(self, to_number: object) -> bool:
        return to_number in self.numbers


async def load_suppression(
    path: str | os.PathLike[str] | None,
    block_name: str | None,
    default_region: str = "US",
) -> Suppression:
    """Read a campaign's suppression file and block into one set of numbers.

    Args:
        path: A text file with one number a line (lines starting with # are
            comments), or a CSV file whose phone column is found by name.
        block_name: Name of a saved `SuppressionList` block.
        default_region: Region of the file's numbers written without a country
            code.

    Raises:
        RetellConfigurationError: The file cannot be read or the block does not
            exist; a campaign must not start without its do-not-call list.
    """
    suppression = Suppression()
    if path:
        numbers, problems = _read_file(Path(path), default_region)
        if not numbers:
            # An empty list is far likelier a wrong or truncated file than a
            # campaign that means to suppress nobody.
            raise RetellConfigurationError(
                f"suppression file '{Path(path).name}' holds no valid number"
                + (f" ({'; '.join(problems[:3])})" if problems else "")
                + "; nothing was dialled."
            )
        _add(suppression, f"suppression file '{Path(path).name}'", numbers, problems)
    if block_name:
        block = await _load_block(block_name)
        numbers, problems = _normalise(
            enumerate(block.numbers, 1), block.default_region
        )
        _add(suppression, f"suppression block '{block_name}'", numbers, problems)
    return suppression


def _add(
    suppression: Suppression, source: str, numbers: set[str], problems: list[str]
) -> None:
    suppression.numbers = suppression.numbers | numbers
    suppression.sources.append(source)
    if problems:
        shown = problems[:_MOST_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        tail = f", and {more} more" if more else ""
        count = (
            "1 entry is not a valid number"
            if len(problems) == 1
            else (f"{len(problems)} entries are not valid numbers")
        )
        suppression.warnings.append(
            f"{source}: {count} and suppress{'es' if len(problems) == 1 else ''} "
            f"nothing ({'; '.join(shown)}{tail})"
        )


async def _load_block(name: str) -> SuppressionList:
    try:
        return await SuppressionList.aload(name)
    except ValueError as exc:
        raise RetellConfigurationError(
            f"suppression block {name!r} cannot be loaded ({exc}); nothing was dialled."
        ) from exc


def _read_file(path: Path, region: str) -> tuple[set[str], list[str]]:
    """Numbers of a suppression file: a CSV with a phone column, or bare lines."""
    if path.is_dir():
        raise RetellConfigurationError(
            f"suppression file '{path}' is a folder, not a file; nothing was dialled."
        )
    if not path.is_file():
        raise RetellConfigurationError(
            f"suppression file '{path}' does not exist; nothing was dialled."
        )
    try:
        listed = load_contacts(path, default_region=region)
    except ContactsError:
        # No phone header (a bare list of numbers), or nothing the contact loader
        # reads: read it line by line, which refuses what it cannot decode.
        return _read_lines(path, region)
    numbers = {contact.to_number for contact in listed.contacts}
    problems = []
    for row in listed.rejected:
        if not row.raw_phone and row.reason == "no phone number":
            continue
        signed = normalize_phone(_blocking_text(row.raw_phone or ""), region)
        if signed.e164:
            numbers.add(signed.e164)
        else:
            problems.append(f"row {row.row}: {row.reason}")
    return numbers, problems


def _read_lines(path: Path, region: str) -> tuple[set[str], list[str]]:
    """Numbers of a file without a phone header: one a line, comments with #."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RetellConfigurationError(
            f"suppression file '{path.name}' cannot be read ({exc}); nothing was "
            "dialled."
        ) from exc
    lines = (
        # A comment may also end a line: "+1 415 555 0102  # asked on 3 May".
        (number, line.split("#")[0].split(",")[0].strip())
        for number, line in enumerate(text.splitlines(), 1)
    )
    return _normalise(
        ((number, cell) for number, cell in lines if cell and cell[0] != "#"),
        region,
        unit="line",
    )


def _normalise(
    entries: Iterable[tuple[int, str]], region: str, unit: str = "entry"
) -> tuple[set[str], list[str]]:
    numbers: set[str] = set()
    problems: list[str] = []
    for where, raw in entries:
        result = normalize_phone(_blocking_text(str(raw)), region)
        if result.e164:
            numbers.add(result.e164)
        else:
            # The entry itself is not repeated: it may be most of a number.
            problems.append(f"{unit} {where}: {result.reason}")
    return numbers, problems


def _blocking_text(raw: str) -> str:
    """An entry's text without a leading minus sign.

    A contact list refuses a number written with a sign, as the digits meant
    are unsure; a do-not-call entry blocks those digits all the same: a list
    that blocks one number too many is safe, one that blocks too few is not.
    """
    return raw.strip().lstrip("".join(_MINUS_SIGNS))
