"""Load contact lists for outbound calls from CSV files or lists of mappings.

Contact lists come out of CRMs and spreadsheets: byte-order marks, Windows-1252
umlauts, semicolons with decimal commas, numbers that went through a float, letters
typed for digits, extensions, notes in brackets. `load_contacts` reads such a list
without guessing: every row ends up in exactly one of three places, and one bad row
never stops the others.

    ContactList
    ├── contacts    one per distinct valid E.164 number: dialled
    ├── rejected    no number, or one that is not valid: each with a reason
    └── duplicates  a number already seen in an earlier row: not dialled again

Only a problem with the file as a whole (missing, empty, header only, undecodable,
no phone column, a double quote never closed) raises `ContactsError`.
docs/bad-input.md lists every kind of bad input and what the user sees.

Numbers are checked with `phonenumbers.is_valid_number` and written with
`phonenumbers.format_number(..., E164)`; nothing here builds E.164 by joining strings,
guesses a country or re-adds a dropped digit. Loading contacts needs no network and
imports nothing of Prefect.

Example:
    >>> from prefect_retell.contacts import load_contacts
    >>> rows = [{"Phone": "(415) 555-0123", "First Name": "Ada"}]
    >>> contacts = load_contacts(rows)
    >>> contacts.contacts[0].to_number, contacts.contacts[0].variables
    ('+14155550123', {'first_name': 'Ada'})
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import numbers
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from pydantic import BaseModel, ConfigDict

from prefect_retell.privacy import mask_phone_number

__all__ = [
    "PHONE_HEADER_ALIASES",
    "SAMPLE_CONTACTS",
    "Contact",
    "ContactList",
    "ContactsError",
    "DuplicateRow",
    "NormalizedPhone",
    "RejectedRow",
    "load_contacts",
    "normalize_phone",
    "to_variable_name",
]

SAMPLE_CONTACTS = Path(__file__).parent / "data" / "sample-contacts.csv"
"""A fictitious demo list shipped with the package (valid, duplicate and bad rows)."""

PHONE_HEADER_ALIASES: tuple[str, ...] = (
    "phone",
    "phonenumber",
    "phoneno",
    "mobile",
    "mobilephone",
    "mobilenumber",
    "cell",
    "cellphone",
    "tel",
    "telephone",
    "telefon",
    "telefono",
    "telefone",
    "telephonenumber",
    "telefonnummer",
    "rufnummer",
    "handy",
    "handynummer",
    "mobilnummer",
    "mobiltelefon",
    "celular",
    "number",
    "tonumber",
    "msisdn",
    "contactnumber",
    "primaryphone",
    "workphone",
)
"""Normalised header names taken as the phone column, in priority order."""

LIST_SOURCE = "<list>"
_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_RECORDS = 20
_NO_NUMBER = "no phone number"
_PLACEHOLDERS = frozenset(
    {"-", "--", "---", "?", "n/a", "na", "n.a.", "#n/a", "k.a.", "none", "null"}
    | {"nil", "nan", "unknown"}
)
# Spreadsheets show long numbers as 1.41556E+10; the exponent stays short.
_SCIENTIFIC = re.compile(r"(\d+)(?:[.,](\d+))?[eE]([+-]?\d{1,3})")
_FLOAT_TAIL = re.compile(r"(\+?\d+)([.,]0+)")
_EXTENSION = re.compile(
    r"(?:\s*(?:ext(?:ension)?\.?|extn\.?|x|#)\s*:?\s*|;ext=)(\d{1,10})\s*$",
    re.IGNORECASE,
)
_TRAILING_NOTE = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]\s*$")
# Excel's way to keep a number as text: ="+14155550123" or ="0415...".
_TEXT_FORMULA = re.compile(r'=\s*"([^"]*)"')
# Any other formula: =A1*2, =HYPERLINK(...), @cmd, +SUM(...), -A1. A '+' or '-'
# before digits, a space or a bracket ("+(44) 20 ...") starts a number, not this.
_FORMULA = re.compile(r"[=@]|[+-]\s*[^\W\d_]")
# What a formula that failed shows; #N/A is a placeholder for "no number".
_SPREADSHEET_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#SPILL!"}
    | {"#CALC!", "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!"}
)
_PUNCTUATION = frozenset("+-./()\u2010\u2011\u2012\u2013\u2014\u2212")
_MINUS_SIGNS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")
# Longer international numbers do not exist (E.164 allows 15 digits).
_MAX_EXPANDED_DIGITS = 17


class ContactsError(ValueError):
    """A contact list that cannot be read at all.

    The message names the file and what is wrong with it: it does not exist, is
    empty, has a header but no data rows, cannot be decoded (it is in neither
    UTF-8 nor Windows-1252 and no encoding was given), has no phone column
    (the columns found are listed), or has a double quote that is never closed
    (the row, line and column are named) or a stray one in its header.
    Problems with single rows never raise; they end up in `ContactList.rejected`.
    """


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Contact(_Frozen):
    """A row to call: its number in E.164 and its dynamic variables.

    Attributes:
        row: 1-based data row number; the first row after the header is 1.
        to_number: the number in E.164, as `phonenumbers` formats it.
        raw_phone: the phone cell as read, surrounding whitespace stripped.
        variables: every other column by variable name, values as strings.
        extension: an extension split off the number; E.164 cannot dial it, so it
            is also kept in `variables` for the agent.
        warnings: what was changed to reach `to_number`.
    """

    row: int
    to_number: str
    raw_phone: str
    variables: dict[str, str]
    extension: str | None = None
    warnings: list[str] = []


class RejectedRow(_Frozen):
    """A row that is not called, and why (for example "no phone number")."""

    row: int
    raw_phone: str
    reason: str
    variables: dict[str, str]


class DuplicateRow(_Frozen):
    """A row whose number an earlier row already has; only the first is called.

    Attributes:
        row: 1-based data row number of this row.
        raw_phone: the phone cell as read.
        to_number: the E.164 number both rows share.
        duplicate_of: row number of the first row with this number (the one kept).
        differences: variables whose value differs from the kept row, as
            name -> (kept value, this row's value); nothing is merged.
        variables: this row's own columns, kept so that no value is lost.
    """

    row: int
    raw_phone: str
    to_number: str
    duplicate_of: int
    differences: dict[str, tuple[str, str]]
    variables: dict[str, str] = {}


class ContactList(_Frozen):
    """Everything read from one contact list.

    Every data row is in exactly one of `contacts`, `rejected` or `duplicates`, so
    their lengths add up to `total_rows`.

    Attributes:
        source: the file name (without its folder), or "<list>" for mappings.
        phone_column: the header of the phone column, as found.
        columns: all headers, as found (byte-order mark and whitespace removed).
        variable_names: header -> variable name for every column but the phone
            column. A header that is empty or repeats an earlier one is keyed as
            "<header> (column N)" so that no column is lost from the mapping.
        contacts: rows to call, one per distinct number, in file order.
        rejected: rows without a valid number.
        duplicates: rows repeating an earlier row's number.
        warnings: file-level notes (encoding guessed, values beyond the header).
        total_rows: data rows read; blank lines are not data rows.
    """

    source: str
    phone_column: str
    columns: list[str]
    variable_names: dict[str, str]
    contacts: list[Contact]
    rejected: list[RejectedRow]
    duplicates: list[DuplicateRow]
    warnings: list[str]
    total_rows: int


class NormalizedPhone(NamedTuple):
    """What `normalize_phone` makes of one cell; unpacks as a 4-tuple.

    Exactly one of `e164` and `reason` is set.

    Attributes:
        e164: the number in E.164, or None when it is rejected.
        extension: digits of an extension split off the number, if any.
        reason: why the cell cannot be dialled, or None.
        warnings: what was changed to reach `e164` (a dropped ".0", a note).
    """

    e164: str | None
    extension: str | None
    reason: str | None
    warnings: list[str]


# --- Variable names ---------------------------------------------------------------


def to_variable_name(header: str) -> str:
    """Turn a column header into a snake_case dynamic variable name.

    Accents are removed and letters casefolded; runs of anything that is not a
    letter or digit become one underscore, and camelCase words are split. A name
    starting with a digit gets the prefix "column_" so that it can be used in a
    prompt template. A header with no letters or digits gives "", which the loader
    replaces with "column_N" (N the 1-based column position).

    Args:
        header: a header as found in the file.

    Returns:
        The variable name, or "" when nothing usable is left.

    Examples:
        >>> to_variable_name("First Name"), to_variable_name("Betrag offen")
        ('first_name', 'betrag_offen')
        >>> to_variable_name("Téléphone"), to_variable_name("2nd Phone")
        ('telephone', 'column_2nd_phone')
    """
    text = re.sub(r"(?<=[^\W_])(?=[A-Z][a-z])|(?<=[a-z\d])(?=[A-Z])", "_", header)
    text = _strip_accents(text.casefold())
    name = "_".join("".join(c if c.isalnum() else " " for c in text).split())
    return f"column_{name}" if name[:1].isdigit() else name


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _header_key(header: str) -> str:
    return "".join(c for c in _strip_accents(header.casefold()) if c.isalnum())


def _unique_name(base: str, taken: set[str]) -> str:
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    return name


# --- Phone numbers ----------------------------------------------------------------


def normalize_phone(raw: str, default_region: str = "US") -> NormalizedPhone:
    """Turn one phone cell into an E.164 number, or say why it cannot be dialled.

    Handled: `tel:` URIs; extensions (`x204`, `ext. 12`, `;ext=7`, `#9`), which are
    split off and returned, never appended; a trailing note in brackets such as
    `(cell)`, which is dropped with a warning; a `.0` left by a float; full-precision
    scientific notation, expanded exactly with a warning; Excel's text-forcing
    formula `="+14155550123"`, whose value is read with a warning; international
    prefixes (`00`, `011`) as `phonenumbers` reads them for `default_region`.

    Rejected: empty cells and placeholders (N/A, none, null, -); any other
    spreadsheet formula (`=A1*2`, `+SUM(A1)`, `@cmd`; a `+` before digits is a
    number) and error values such as `#REF!`; letters anywhere else (never turned
    into keypad digits); a leading minus sign (`-4155550123`, a negative number
    or a typo, which phonenumbers would skip); scientific notation that lost
    digits; anything `phonenumbers.is_valid_number` does not accept.

    Args:
        raw: the cell as read.
        default_region: ISO 3166 region code for numbers written without a country
            code, e.g. "US" or "DE".

    Returns:
        A `NormalizedPhone`; exactly one of `e164` and `reason` is set.

    Raises:
        ValueError: `default_region` is not a region code `phonenumbers` knows.

    Examples:
        >>> normalize_phone("415.555.0123 ext. 12")
        NormalizedPhone(e164='+14155550123', extension='12', reason=None, warnings=[])
        >>> normalize_phone("415-555-CALL").reason
        "contains letters 'C', 'A', 'L' (letters are never read as keypad digits)"
    """
    return _normalize(raw, _check_region(default_region))


def _check_region(region: str) -> str:
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        hint = " (the United Kingdom is 'GB')" if code == "UK" else ""
        raise ValueError(
            f"default_region {region!r} is not an ISO 3166 region code that "
            f"phonenumbers knows{hint}; use for example 'US' or 'DE'"
        )
    return code


def _normalize(raw: str, region: str) -> NormalizedPhone:
    text = raw.strip()
    if text.casefold() in _PLACEHOLDERS:
        return _rejected(_NO_NUMBER)
    if _FORMULA.match(text):
        return _normalize_formula(text, region)
    if text.upper() in _SPREADSHEET_ERRORS:
        return _rejected(
            f"the spreadsheet error {text.upper()}, not a number; correct the "
            "formula in the sheet"
        )
    if text[:4].casefold() == "tel:":
        return _normalize_tel_uri(text[4:], region)
    if _SCIENTIFIC.fullmatch(text):
        return _normalize_scientific(text, region)

    if tail := _FLOAT_TAIL.fullmatch(text):
        warning = f"{tail.group(2)!r} dropped from a number that went through a float"
        return _dial_numeric(tail.group(1), region, [warning])
    text, extension, notes = _split_suffixes(text)
    warnings = [f"note {note!r} removed from the number" for note in notes]
    return _dial(text, region, extension, warnings)


def _rejected(reason: str) -> NormalizedPhone:
    return NormalizedPhone(None, None, reason, [])


def _normalize_formula(text: str, region: str) -> NormalizedPhone:
    """Read the value inside Excel's text-forcing ="..."; refuse any other formula.

    A CSV holds what a formula showed only if the sheet was saved with values;
    from a formula itself the number cannot be known, so nothing is computed.
    """
    forced = _TEXT_FORMULA.fullmatch(text)
    if forced is None:
        return _rejected(
            "a spreadsheet formula, not a number; save the sheet with its values "
            "rather than its formulas"
        )
    result = _normalize(forced.group(1), region)
    if result.e164 is None:
        return result
    warning = 'read the value inside the spreadsheet formula ="..."'
    return result._replace(warnings=[warning, *result.warnings])


def _normalize_tel_uri(rest: str, region: str) -> NormalizedPhone:
    # RFC 3966: tel:+1-415-555-0123;ext=7. Other parameters (phone-context, isub)
    # would change which number is meant, so they are refused rather than dropped.
    number, *params = rest.split(";")
    extension = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().casefold() == "ext" and value.strip().isdigit():
            extension = value.strip()
        else:
            return _rejected(f"tel: URI parameter {name.strip()!r} is not supported")
    return _dial(number.strip(), region, extension, [])


def _normalize_scientific(text: str, region: str) -> NormalizedPhone:
    whole, fraction, exponent = _SCIENTIFIC.fullmatch(text).groups()
    digits = whole + (fraction or "")
    # `point` is where the decimal point lands: the length of the whole number.
    point = len(whole) + int(exponent)
    if point > _MAX_EXPANDED_DIGITS:
        return _rejected(
            "scientific notation of a number too long to be a phone number"
        )
    if point > len(digits):
        return _rejected(
            f"scientific notation, digits lost: only {len(digits.lstrip('0'))} of "
            f"the number's {point} digits are in the cell; export the phone column "
            "as text"
        )
    if point <= 0 or digits[point:].strip("0"):
        return _rejected("scientific notation with a fraction is not a phone number")
    warning = "expanded from scientific notation, all digits present"
    return _dial_numeric(digits[:point].lstrip("0"), region, [warning])


def _dial_numeric(digits: str, region: str, warnings: list[str]) -> NormalizedPhone:
    """Dial digits that went through a spreadsheet number, which drops a '+'.

    Read for the default region first. Only if that is not a valid number is the
    '+' a number cell cannot hold put back (DE "14155550142.0" is +1 415...);
    phonenumbers still decides whether that is valid, and a warning says so.
    """
    result = _dial(digits, region, None, warnings)
    if result.e164 or digits.startswith("+"):
        return result
    international = _dial(f"+{digits}", region, None, warnings)
    if international.e164 is None:
        return result
    restored = "read as an international number: a number cell drops the leading '+'"
    return international._replace(warnings=[*warnings, restored])


def _split_suffixes(text: str) -> tuple[str, str | None, list[str]]:
    """Split trailing extensions and bracketed notes, in whatever order they come."""
    notes: list[str] = []
    extension = None
    while True:
        note = _TRAILING_NOTE.search(text)
        if note and any(c.isalpha() for c in note.group(1)):
            notes.insert(0, note.group(0).strip())
            text = text[: note.start()]
            continue
        ext = None if extension else _EXTENSION.search(text)
        if ext is None:
            return text.strip(), extension, notes
        extension, text = ext.group(1), text[: ext.start()]


def _dial(
    text: str, region: str, extension: str | None, warnings: list[str]
) -> NormalizedPhone:
    reason = _character_problem(text)
    if reason:
        return _rejected(reason)
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return _rejected(_parse_failure(exc))
    if not phonenumbers.is_valid_number(number):
        return _rejected(_invalid_reason(number, text, region))

    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if not _reparses_to_itself(e164):
        return _rejected("the number cannot be written reliably in E.164")
    return NormalizedPhone(e164, extension or number.extension or None, None, warnings)


def _character_problem(text: str) -> str | None:
    letters = list(dict.fromkeys(c for c in text if c.isalpha()))
    if letters:
        named = ", ".join(repr(c) for c in letters)
        return f"contains letters {named} (letters are never read as keypad digits)"
    odd = [c for c in text if not (c.isdecimal() or c.isspace() or c in _PUNCTUATION)]
    if odd:
        named = ", ".join(repr(c) for c in dict.fromkeys(odd))
        return f"contains characters that are not part of a phone number: {named}"
    if not any(c.isdecimal() for c in text):
        return _NO_NUMBER
    if text[:1] in _MINUS_SIGNS:
        # phonenumbers skips a leading '-' and dials the rest; but a sign means
        # the cell went through a number (a negative value) or was mistyped, and
        # which digits were meant is then unsure, so the row is refused.
        return (
            f"starts with a minus sign {text[0]!r}, as a negative number does; a "
            "phone number has no sign: remove it if the digits are right"
        )
    if "+" in text.lstrip("+") or text.count("+") > 1:
        return "has a '+' that is not at the start of the number"
    return None


_PARSE_FAILURES = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the dialling prefix",
    NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    NumberParseException.TOO_LONG: "too long to be a phone number",
}

_POSSIBILITY_HINTS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing area code?",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.IS_POSSIBLE: "no such number range",
}


def _parse_failure(exc: NumberParseException) -> str:
    return _PARSE_FAILURES.get(exc.error_type, "not a phone number")


def _invalid_reason(number: phonenumbers.PhoneNumber, text: str, region: str) -> str:
    possibility = phonenumbers.is_possible_number_with_reason(number)
    hint = _POSSIBILITY_HINTS.get(possibility, "no such number range")
    own_code = phonenumbers.country_code_for_region(region)
    if text.startswith("+") or number.country_code != own_code:
        return f"not a valid number for country code +{number.country_code} ({hint})"
    if possibility == ValidationResult.TOO_LONG:
        # A national number from elsewhere (a UK 020 in a US file) lands here; the
        # loader must not guess its country, but the user can add it.
        hint += "; write a number from another country with + and its country code"
    return f"not a valid number for region {region} ({hint})"


def _reparses_to_itself(e164: str) -> bool:
    try:
        again = phonenumbers.parse(e164, None)
    except NumberParseException:
        return False
    return phonenumbers.format_number(again, PhoneNumberFormat.E164) == e164


# --- Reading files ----------------------------------------------------------------


class _Record(NamedTuple):
    """One record as read, before it is given row numbers.

    Cells read from a file are strings; cells of mappings are the values given. A
    blank line comes as [] and still takes a row number. `line` is the file line
    the record starts on (0 for mappings); `lines` holds the lines as written when
    the record spans several (a quoted cell with line breaks), else it is empty.
    """

    cells: Sequence[object]
    line: int = 0
    lines: tuple[str, ...] = ()


class _Table(NamedTuple):
    source: str
    headers: list[str]
    rows: Iterable[_Record]
    warnings: list[str]
    # The file's field separator; None for mappings.
    delimiter: str | None = None


def _read_file(path: Path, encoding: str | None, delimiter: str | None) -> _Table:
    data = _read_bytes(path)
    text, warnings = _decode(data, path, encoding)
    if not text.strip():
        blank = ": it holds only blank lines and spaces" if text else ""
        raise ContactsError(f"contact file '{path}' is empty{blank}")
    delimiter = delimiter or _delimiter_for(path, text)
    records = _csv_records(text, delimiter, path)
    header = _first_record(records)
    if header is None:
        raise ContactsError(f"contact file '{path}' is empty")
    _check_header_quotes(header, delimiter, path)
    return _Table(path.name, list(header.cells), records, warnings, delimiter)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ContactsError(f"contact file '{path}' does not exist")
    if path.is_dir():
        raise ContactsError(f"contact file '{path}' is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContactsError(f"contact file '{path}' cannot be read: {exc}") from exc


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode(data: bytes, path: Path, encoding: str | None) -> tuple[str, list[str]]:
    """Decode by the caller's encoding, a BOM, strict UTF-8 or else cp1252."""
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is not None:
        return _decode_as(data, path, encoding), []
    if data.startswith(b"PK\x03\x04"):
        raise ContactsError(
            f"contact file '{path}' is an Excel workbook or other zip file, not CSV "
            "text; save it as 'CSV UTF-8'"
        )
    if b"\x00" in data:
        raise ContactsError(
            f"contact file '{path}' contains NUL bytes: it is binary, or UTF-16 "
            "without a byte-order mark; save it as 'CSV UTF-8' or name its encoding"
        )
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        not_utf8 = _where(data, exc.start)
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        # cp1252 leaves five bytes undefined, so the file is in some third
        # encoding; any further guess would send garbled names to the agent.
        raise ContactsError(
            f"contact file '{path}' is neither UTF-8 nor Windows-1252: "
            f"{_where(data, exc.start)} means nothing in either; save it as "
            "'CSV UTF-8', or name its encoding (encoding= in Python)"
        ) from exc
    warning = (
        f"{path.name} is not UTF-8 ({not_utf8}); read it as cp1252, the usual "
        "Windows spreadsheet encoding; check that accented letters look right"
    )
    return text, [warning]


def _where(data: bytes, offset: int) -> str:
    """Name a byte and its line, for a message about an encoding."""
    line = data[:offset].count(b"\n") + 1
    return f"byte 0x{data[offset]:02X} on line {line}"


def _decode_as(data: bytes, path: Path, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError as exc:
        raise ContactsError(
            f"contact file '{path}' cannot be read: encoding {encoding!r} is unknown "
            "to Python; use a codec name such as 'utf-8', 'cp1252' or 'utf-16'"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ContactsError(
            f"contact file '{path}' cannot be decoded as {encoding}: {exc.reason} "
            f"at byte {exc.start}"
        ) from exc


def _delimiter_for(path: Path, text: str) -> str:
    if path.suffix.casefold() in (".tsv", ".tab"):
        return "\t"
    return _sniff_delimiter(text)


def _sniff_delimiter(text: str) -> str:
    """Pick the delimiter that splits the header and agrees with the rows.

    csv.Sniffer is fooled by commas inside quotes and by decimal commas; counting
    fields with a quote-aware reader is not. In "Telefon;Betrag" + "+49 1;120,50"
    only the semicolon splits the header, and it gives 2 fields in both lines.
    A one-column file splits nowhere; then the delimiter that leaves most rows in
    one piece wins.
    """
    return max(_DELIMITERS, key=lambda delimiter: _sniff_score(text, delimiter))


def _sniff_score(text: str, delimiter: str) -> tuple[bool, int, int]:
    reader = csv.reader(io.StringIO(text[:65536], newline=""), delimiter=delimiter)
    try:
        counts = [
            len(record) for record in islice(reader, _SNIFF_RECORDS + 1) if record
        ]
    except csv.Error:
        return (False, -1, 0)
    header, rows = counts[0], counts[1:]
    return (header > 1, sum(count == header for count in rows), header)


# The csv module refuses cells over 128 KiB by default, which would stop a whole
# list at one pasted-in note; 16 MiB keeps every real cell readable.
_FIELD_SIZE_LIMIT = 16 * 1024 * 1024


def _csv_records(text: str, delimiter: str, path: Path) -> Iterator[_Record]:
    """The file's records, each with the line it starts on (and its lines, if many).

    The csv module reads one line at a time and asks for the next only while a
    quoted cell is open, so the lines it took for a record are exactly the
    record's lines as written.
    """
    if len(delimiter) != 1:
        raise ContactsError(f"delimiter must be one character, not {delimiter!r}")
    if csv.field_size_limit() < _FIELD_SIZE_LIMIT:
        csv.field_size_limit(_FIELD_SIZE_LIMIT)
    taken: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            taken.append(line)
            yield line

    reader = csv.reader(lines(), delimiter=delimiter)
    first_line = 1
    try:
        for cells in reader:
            spanned = tuple(taken) if len(taken) > 1 else ()
            yield _Record([] if _spaces_only(cells) else cells, first_line, spanned)
            first_line += len(taken)
            taken.clear()
    except csv.Error as exc:
        raise ContactsError(
            f"contact file '{path}' is not readable as CSV near line "
            f"{reader.line_num}: {exc}"
        ) from exc


def _spaces_only(record: list[str]) -> bool:
    """Whether a record is a line of spaces or tabs and no delimiter.

    Such a line holds nothing, like a blank one, and is read as one: a file whose
    only data line is spaces has a header but no data rows. A line of delimiters
    (`,,`) is a row of empty cells instead, and so is `""`, which is how the csv
    module writes a row of one empty cell; both are rejected as empty rows.
    """
    return len(record) == 1 and record[0] != "" and not record[0].strip()


def _first_record(records: Iterator[_Record]) -> _Record | None:
    return next((record for record in records if record.cells), None)


def _read_mappings(rows: Iterable[Mapping[object, object]]) -> _Table:
    rows = list(rows)
    if not rows:
        raise ContactsError("the contact list is empty: it has no rows")
    for number, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise TypeError(
                f"row {number} of the contact list is a {type(row).__name__}, not a "
                "mapping of column name to value"
            )
    headers = list(dict.fromkeys(str(key) for row in rows for key in row))
    # Values stay as given: the builder turns them into text and says where it
    # converted a number, and it reads a number in the phone column as one.
    records = (
        _Record([row.get(key) for key in headers])
        for row in ({str(k): v for k, v in row.items()} for row in rows)
    )
    return _Table(LIST_SOURCE, headers, records, [])


# --- Quotes that swallow rows ------------------------------------------------------


class _Quote(NamedTuple):
    """A quoted cell of one record that crosses a line break.

    Attributes:
        field: its 0-based column.
        opens: index, in the record's lines, of the line where it opens.
        closes: index of the line where it closes; None if it never does.
        end: offset of the closing quote in that line.
    """

    field: int
    opens: int
    closes: int | None
    end: int


def _quotes_across_lines(lines: Sequence[str], delimiter: str) -> list[_Quote]:
    """Find a record's quoted cells that cross line breaks, as the csv module does.

    The rules are those of its default dialect: a double quote opens a quoted cell
    only as the cell's first character; inside one, `""` stands for a quote and
    any other quote closes the cell.
    """
    found: list[_Quote] = []
    field, opens, quoted, at_start = 0, 0, False, True
    for number, line in enumerate(lines):
        offset = 0
        while offset < len(line):
            char = line[offset]
            if quoted and char == '"':
                if line.startswith('"', offset + 1):
                    offset += 2
                    continue
                quoted = False
                if number > opens:
                    found.append(_Quote(field, opens, number, offset))
            elif not quoted and char == '"' and at_start:
                quoted, opens = True, number
            elif not quoted and char == delimiter:
                field += 1
            at_start = not quoted and char == delimiter
            offset += 1
    if quoted:
        found.append(_Quote(field, opens, None, 0))
    return found


def _swallowed(lines: Sequence[str], quote: _Quote) -> list[str]:
    """The text a quoted cell took from the lines after the one it opens on."""
    if quote.closes is None:
        return list(lines[quote.opens + 1 :])
    return [*lines[quote.opens + 1 : quote.closes], lines[quote.closes][: quote.end]]


def _split_line(line: str, delimiter: str) -> list[str]:
    """One line's cells, read as if no quote had been left open before it."""
    try:
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return [line]
    return [] if _spaces_only(cells) else cells


def _check_header_quotes(header: _Record, delimiter: str, path: Path) -> None:
    """Refuse a header whose quoted name takes in lines that look like rows.

    A name may hold a line break ("First\\nName" from a spreadsheet); a name that
    runs to the end of the file, or takes in a line with a cell that looks like a
    phone number, is a stray quote, and the columns can no longer be known.
    """
    for quote in _quotes_across_lines(header.lines, delimiter):
        taken = _swallowed(header.lines, quote)
        if any(text.strip() for text in taken) and (
            quote.closes is None
            or any(
                _looks_like_number(cell)
                for text in taken
                for cell in _split_line(text, delimiter)
            )
        ):
            last = header.line + (
                len(header.lines) - 1 if quote.closes is None else quote.closes
            )
            closing = "is never closed"
            if quote.closes is not None:
                closing = f"closes only on line {last}"
            opens = header.line + quote.opens
            raise ContactsError(
                f"contact file '{path.name}' has a stray double quote in its header: "
                f"it opens column {quote.field + 1} on line {opens} and {closing}, "
                f"so {_lines_text(opens + 1, last)} {_are(opens + 1, last)} read as "
                "part of the header. Close or remove the quote and load the file again"
            )


def _lines_text(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first} to {last}"


def _are(first: int, last: int) -> str:
    return "is" if first == last else "are"


class _StrayQuotes:
    """Find quoted cells that swallowed whole rows, and say what became of them.

    A CSV cell in double quotes may hold line breaks, so an opening quote that is
    never closed (`415-555-0101,"Ada`) makes the csv module read every later line
    into that one cell: the rows there vanish without a word. What happens
    instead is what loses no row and dials nothing from a guess:

    - The quote is never closed and takes in anything but blank lines: the file
      is refused, naming the row, line and column. Everything after the quote
      is then one cell, and which of its lines are rows cannot be known. Loading
      on would dial the rows before it and reject all after it; and once the
      user fixes the quote, the file (and so the campaign id derived from it)
      changes, so the rerun would call those first rows again.
    - The quote closes later, and a line it takes in looks like a row of its own
      (it splits into cells and has a valid number in the phone column): each
      line it spans is read as a row of its own and rejected, naming the row
      that opens the quote, with its text kept; the rows after it load as
      usual. As for a row with mixed delimiters, dialling the re-read lines
      would rest on a guess of where the cell was meant to end.
    - Otherwise the cell is a note with line breaks, and read as one.

    Known gap: a stray quote that closes later and takes in only rows without a
    valid number (`N/A,Bo`) is not told apart from a note with line breaks, so
    those rows are read into the opening row's cell.
    """

    def __init__(
        self, headers: list[str], phone_index: int, region: str, table: _Table
    ) -> None:
        self.headers, self.phone_index, self.region = headers, phone_index, region
        self.delimiter = table.delimiter or ","
        self.source = table.source
        self.warnings: list[str] = []

    def rows(
        self, record: _Record, first_row: int
    ) -> list[tuple[Sequence[object], str | None]]:
        """The record's rows (cells and a reason to reject, if any), in order."""
        if not record.lines:
            return [(record.cells, None)]
        for quote in _quotes_across_lines(record.lines, self.delimiter):
            taken = _swallowed(record.lines, quote)
            if quote.closes is None:
                # Only blank lines taken in: the cell's value is not in doubt.
                if any(text.strip() for text in taken):
                    raise ContactsError(self._refusal(record, first_row, quote))
            elif any(self._looks_like_row(text) for text in taken):
                return self._split(record, first_row, quote)
        return [(record.cells, None)]

    def _looks_like_row(self, text: str) -> bool:
        cells = _split_line(text, self.delimiter)
        if len(cells) <= self.phone_index or len(cells) < min(2, len(self.headers)):
            return False
        return _normalize(cells[self.phone_index], self.region).e164 is not None

    def _split(
        self, record: _Record, first_row: int, quote: _Quote
    ) -> list[tuple[Sequence[object], str | None]]:
        opener = first_row + quote.opens
        column = _column_label(self.headers, quote.field)
        closes = record.line + quote.closes
        last_row = first_row + len(record.lines) - 1
        self.warnings.append(
            f"a stray double quote: row {opener} opens one in {column} on line "
            f"{record.line + quote.opens} that closes only on line {closes}; rows "
            f"{first_row} to {last_row} are rejected, with their text kept. Close "
            "or remove the quote and load the file again"
        )
        opening = (
            f"opens a double quote in {column} that closes only on line {closes}, "
            "taking in the rows up to it; not dialled: close or remove the quote"
        )
        # Lines before the opener belong to an earlier cell with line breaks in
        # the same record; they are rejected with the same words, which fit
        # them less well, as that mix is rare.
        inside = (
            f"inside the double quote that row {opener} opens in {column} and that "
            f"closes only on line {closes}; not dialled: close or remove that quote"
        )
        return [
            (
                _split_line(line, self.delimiter),
                opening if first_row + offset == opener else inside,
            )
            for offset, line in enumerate(record.lines)
        ]

    def _refusal(self, record: _Record, first_row: int, quote: _Quote) -> str:
        opens = record.line + quote.opens
        last = record.line + len(record.lines) - 1
        return (
            f"contact file '{self.source}' has a double quote that is never "
            f"closed: row {first_row + quote.opens} opens it in "
            f"{_column_label(self.headers, quote.field)} on line {opens}, so "
            f"{_lines_text(opens + 1, last)}, to the end of the file, "
            f"{_are(opens + 1, last)} read into that one cell and the rows there "
            "cannot be told apart. Close or remove the quote and load the file again"
        )


# --- Building the contact list ----------------------------------------------------


def load_contacts(
    source: str | os.PathLike[str] | Iterable[Mapping[str, object]],
    *,
    phone_column: str | None = None,
    default_region: str = "US",
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ContactList:
    """Read a contact list and sort every row into contacts, rejected, duplicates.

    Every cell is read as text and stripped of surrounding whitespace; nothing is
    type-inferred. The phone column is found by name (see `PHONE_HEADER_ALIASES`)
    unless given. Every other column becomes a dynamic variable named by
    `to_variable_name`; repeated names get "_2", "_3"; an empty header gives
    "column_N"; values beyond the header's width are kept as "extra_1", ... with
    a file-level warning; missing trailing cells are "". Rows are numbered from 1,
    the first row after the header. The first row with a number is called; later
    rows with the same E.164 number are reported as duplicates. A row that is
    short because it uses another delimiter than the header is rejected saying so.
    A stray double quote that swallows rows is reported, never silently read as
    one cell: see the quote rules in docs/bad-input.md.

    Values of mappings that are not strings are converted with `str()` (Retell's
    dynamic variables are strings), and a file-level warning names each column
    and the rows where that happened, without the values; None and NaN are
    missing values and become "" silently. In the phone column an int is read
    like a spreadsheet's number cell (a dropped '+' may be restored, with a
    warning), a whole float like its ".0" text, and a bool, a negative number or
    a fraction is rejected.

    Args:
        source: a path to a CSV or TSV file, or an iterable of mappings (for
            example a list of dicts) with the same column semantics. A `str` is
            always a path.
        phone_column: the header of the phone column, if not found by name.
        default_region: region for numbers without a country code, e.g. "DE".
        encoding: the file's encoding; by default a byte-order mark decides, else
            UTF-8, else cp1252 (with a warning); a file in neither is refused.
        delimiter: the field separator; by default tab for .tsv/.tab files, else
            the one of `,` `;` tab `|` whose field counts agree from row to row.

    Returns:
        The `ContactList`; `len(contacts) + len(rejected) + len(duplicates)` equals
        `total_rows`.

    Raises:
        ContactsError: the file does not exist, is empty, has a header but no data
            rows, cannot be decoded or parsed, has no (or not the given) phone
            column, or has a double quote that is never closed, which would take
            in every row after it.
        ValueError: `default_region` is not a region code.

    Example:
        >>> contacts = load_contacts("crm-export.csv")  # doctest: +SKIP
        >>> [contact.to_number for contact in contacts.contacts][:1]  # doctest: +SKIP
        ['+14155550101']
    """
    region = _check_region(default_region)
    if isinstance(source, (str, os.PathLike)):
        table = _read_file(Path(source), encoding, delimiter)
    else:
        table = _read_mappings(source)
    return _build(table, phone_column, region)


def _build(table: _Table, phone_column: str | None, region: str) -> ContactList:
    headers = [header.replace("\ufeff", "").strip() for header in table.headers]
    phone_index = _phone_index(headers, phone_column, table.source)
    builder = _Builder(headers, phone_index, region, table.delimiter)
    quotes = _StrayQuotes(headers, phone_index, region, table)
    row = 0
    for record in table.rows:
        for cells, problem in quotes.rows(record, row + 1):
            row += 1
            builder.add(row, cells, problem)
    if builder.total_rows == 0:
        raise ContactsError(
            f"contact file '{table.source}' has a header but no data rows"
        )
    warnings = _header_warnings(headers, phone_index, builder.columns, phone_column)
    return builder.result(table.source, table.warnings + warnings + quotes.warnings)


def _phone_index(headers: list[str], wanted: str | None, source: str) -> int:
    keys = [_header_key(header) for header in headers]
    if wanted is None:
        index = next((keys.index(a) for a in PHONE_HEADER_ALIASES if a in keys), None)
        missing = "no phone column"
    elif wanted.strip() in headers:
        index, missing = headers.index(wanted.strip()), ""
    else:
        # Forgive case, spaces and accents ("phone number" for "Phone Number").
        key = _header_key(wanted)
        index = keys.index(key) if key in keys else None
        missing = f"no column {wanted!r}"
    if index is not None:
        return index
    # A header that is a phone number means the file has no header row; the
    # message is logged, so such a header is shown masked.
    numbers = [header for header in headers if _looks_like_number(header)]
    found = (
        ", ".join(
            repr(
                mask_phone_number(header, always=True) if header in numbers else header
            )
            for header in headers
        )
        or "none"
    )
    where = "the contact list" if source == LIST_SOURCE else f"contact file '{source}'"
    hint = (
        "; its first line holds a phone number, so it seems to have no header row: "
        "add one, such as 'Phone'"
        if numbers
        else ". Name the phone column (phone_column in Python, --phone-column on "
        "the command line) or rename it to 'Phone'"
    )
    raise ContactsError(f"{where} has {missing}; columns found: {found}{hint}")


def _looks_like_number(text: str) -> bool:
    digits = sum(char.isdigit() for char in text)
    return digits >= 7 and digits >= len(text.strip()) * 0.6


class _Column(NamedTuple):
    index: int
    key: str
    name: str


def _variable_columns(headers: list[str], phone_index: int) -> list[_Column]:
    columns: list[_Column] = []
    keys: set[str] = set()
    for index, header in enumerate(headers):
        if index == phone_index:
            continue
        key = header
        if not header or header in keys:
            key = f"{header} (column {index + 1})".strip()
        base = to_variable_name(header) or f"column_{index + 1}"
        name = _unique_name(base, {column.name for column in columns})
        columns.append(_Column(index, key, name))
        keys.add(key)
    return columns


def _header_warnings(
    headers: list[str], phone_index: int, columns: list[_Column], wanted: str | None
) -> list[str]:
    """Say which column is dialled when several could be, and which names clash."""
    warnings = [_other_phone_columns(headers, phone_index, columns, wanted)]
    groups: dict[str, list[_Column]] = {}
    for column in columns:
        base = to_variable_name(headers[column.index])
        # A header that is a number (no header row) would put it in a log line.
        if base and not _looks_like_number(headers[column.index]):
            groups.setdefault(base, []).append(column)
    warnings += [
        f"{_and(_column_label(headers, c.index) for c in group)} give the same "
        f"variable name {base!r}: they are sent as "
        f"{_and(repr(c.name) for c in group)}"
        for base, group in groups.items()
        if len(group) > 1
    ]
    return [warning for warning in warnings if warning]


def _other_phone_columns(
    headers: list[str], phone_index: int, columns: list[_Column], wanted: str | None
) -> str:
    """A warning naming the columns besides the phone column that may hold numbers.

    Those are columns with the phone column's own name (`Phone,Name,Phone`) and,
    unless the caller named the phone column, any other phone-like name
    (`Mobile,Phone`): only one column is dialled, and the user should know which.
    """
    if _looks_like_number(headers[phone_index]):
        return ""  # no header row; its variable names would show the number
    keys = [_header_key(header) for header in headers]
    others = [
        column
        for column in columns
        if keys[column.index] == keys[phone_index]
        or (wanted is None and keys[column.index] in PHONE_HEADER_ALIASES)
    ]
    if not others:
        return ""
    indexes = sorted([phone_index, *(column.index for column in others)])
    numbers = _and(str(column.index + 1) for column in others)
    plural = "s" if len(others) > 1 else ""
    verb = "are" if len(others) > 1 else "is"
    return (
        f"{len(indexes)} columns could hold the number to dial, "
        f"{_and(_column_label(headers, index) for index in indexes)}: column "
        f"{phone_index + 1} is dialled; column{plural} {numbers} {verb} kept as "
        f"variable{plural} {_and(repr(column.name) for column in others)} and not "
        "dialled. To dial another, name it with phone_column (--phone-column on "
        "the command line) or rename the columns"
    )


def _column_label(headers: list[str], index: int) -> str:
    """A column for a message, which may be logged: a header that is a number
    (a file without a header row) is masked."""
    if index >= len(headers) or not headers[index]:
        return f"column {index + 1}"
    header = headers[index]
    if _looks_like_number(header):
        header = mask_phone_number(header, always=True)
    return f"{header!r} (column {index + 1})"


def _and(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]]))


class _Builder:
    """Sorts numbered rows into contacts, rejected rows and duplicates.

    Cells come as strings from files and as the values given from mappings.
    """

    def __init__(
        self,
        headers: list[str],
        phone_index: int,
        region: str,
        delimiter: str | None = None,
    ) -> None:
        self.headers, self.phone_index, self.region = headers, phone_index, region
        self.delimiter = delimiter
        self.columns = _variable_columns(headers, phone_index)
        self.taken = {column.name for column in self.columns}
        self.extension_name = _unique_name("extension", self.taken)
        self.taken.add(self.extension_name)
        self.contacts: list[Contact] = []
        self.rejected: list[RejectedRow] = []
        self.duplicates: list[DuplicateRow] = []
        self.first_seen: dict[str, Contact] = {}
        self.extra_rows: list[int] = []
        self.blank_rows: list[int] = []
        # column index -> (row, type name) of each value that was not a string
        self.converted: dict[int, list[tuple[int, str]]] = {}
        # a delimiter other than the file's -> rows that use it
        self.mixed: dict[str, list[int]] = {}
        self.total_rows = 0

    def add(
        self, row: int, values: Sequence[object], problem: str | None = None
    ) -> None:
        """Sort one data row; an empty list stands for a blank line.

        A `problem` rejects the row with that reason whatever its number.
        """
        if not values:
            self.blank_rows.append(row)
            return
        self.total_rows += 1
        cells = [self._text(row, index, value) for index, value in enumerate(values)]
        has_phone = self.phone_index < len(cells)
        phone = cells[self.phone_index] if has_phone else ""
        variables, warnings = self._variables(row, cells)
        if problem is not None:
            self._reject(row, phone, problem, variables, True)
            return

        value = values[self.phone_index] if has_phone else ""
        result = _normalize_value(value, phone, self.region)
        if result.e164 is None:
            reason = self._mixed_delimiters(row, cells) or result.reason
            self._reject(row, phone, reason, variables, any(cells))
        else:
            self._accept(row, phone, result, variables, warnings)

    def _text(self, row: int, index: int, value: object) -> str:
        """A cell as stripped text; a value that is not a string is noted."""
        if isinstance(value, str):
            return value.strip()
        # None is a missing value; so is NaN, which pandas puts in empty cells.
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        self.converted.setdefault(index, []).append((row, type(value).__name__))
        return str(value).strip()

    def _mixed_delimiters(self, row: int, cells: list[str]) -> str | None:
        """Say so when a short row splits at another delimiter to the header's width.

        The whole line then sits in one or two cells; re-splitting it would be a
        guess, so the row is rejected with the reason and keeps what it holds.
        """
        if self.delimiter is None or len(cells) >= len(self.headers):
            return None
        line = self.delimiter.join(cells)
        for other in _DELIMITERS:
            values = line.split(other)
            while len(values) > len(self.headers) and not values[-1].strip():
                values.pop()
            if other != self.delimiter and len(values) == len(self.headers):
                self.mixed.setdefault(other, []).append(row)
                return (
                    f"mixed delimiters: this row separates its values with {other!r}, "
                    f"the header with {self.delimiter!r}; save the file with one "
                    "delimiter"
                )
        return None

    def _variables(
        self, row: int, cells: list[str]
    ) -> tuple[dict[str, str], list[str]]:
        padded = cells + [""] * (len(self.headers) - len(cells))
        variables = {column.name: padded[column.index] for column in self.columns}
        extras = padded[len(self.headers) :]
        while extras and not extras[-1]:
            # A trailing delimiter (common in spreadsheet exports) adds no value.
            extras.pop()
        if not extras:
            return variables, []

        self.extra_rows.append(row)
        names = _extra_names(len(extras), self.taken)
        variables.update(zip(names, extras, strict=True))
        return variables, [
            f"value beyond the named columns kept as variable {name!r}"
            for name in names
        ]

    def _reject(
        self,
        row: int,
        phone: str,
        reason: str,
        variables: dict[str, str],
        has_values: bool,
    ) -> None:
        if not has_values:
            reason = f"{_NO_NUMBER} (the row is empty)"
        rejected = RejectedRow(
            row=row, raw_phone=phone, reason=reason, variables=variables
        )
        self.rejected.append(rejected)

    def _accept(
        self,
        row: int,
        phone: str,
        result: NormalizedPhone,
        variables: dict[str, str],
        warnings: list[str],
    ) -> None:
        warnings = result.warnings + warnings
        if result.extension:
            variables[self.extension_name] = result.extension
            warnings.insert(0, self._extension_warning(result.extension))
        kept = self.first_seen.get(result.e164)
        if kept is not None:
            self.duplicates.append(_duplicate(row, phone, kept, variables))
            return

        contact = Contact(
            row=row,
            to_number=result.e164,
            raw_phone=phone,
            variables=variables,
            extension=result.extension,
            warnings=warnings,
        )
        self.first_seen[result.e164] = contact
        self.contacts.append(contact)

    def _extension_warning(self, extension: str) -> str:
        return (
            f"extension {extension} is not dialled; kept as variable "
            f"{self.extension_name!r}"
        )

    def result(self, source: str, warnings: list[str]) -> ContactList:
        """The finished list, with file-level warnings after the reader's."""
        return ContactList(
            source=source,
            phone_column=self.headers[self.phone_index],
            columns=self.headers,
            variable_names={column.key: column.name for column in self.columns},
            contacts=self.contacts,
            rejected=self.rejected,
            duplicates=self.duplicates,
            warnings=warnings + self._row_warnings(),
            total_rows=self.total_rows,
        )

    def _row_warnings(self) -> list[str]:
        warnings = []
        if self.extra_rows:
            warnings.append(
                f"values beyond the {len(self.headers)} named columns in "
                f"{_rows_text(self.extra_rows)}; kept as variables extra_1, ..."
            )
        if self.blank_rows:
            warnings.append(f"blank lines skipped: {_rows_text(self.blank_rows)}")
        warnings.extend(
            f"mixed delimiters: {_rows_text(rows)} separated by {other!r}, the "
            f"header by {self.delimiter!r}; rejected, with their text kept"
            for other, rows in self.mixed.items()
        )
        return warnings + self._conversion_warnings()

    def _conversion_warnings(self) -> list[str]:
        # Values stay out of the text: warnings are logged, and values may be
        # numbers or personal details.
        warnings = []
        for index, found in self.converted.items():
            kinds = ", ".join(dict.fromkeys(kind for _, kind in found))
            rows = list(dict.fromkeys(row for row, _ in found))
            use = "read as the text str() gives"
            if index != self.phone_index:
                use = "sent as the text str() gives: dynamic variables are strings"
            warnings.append(
                f"column {self.headers[index]!r} holds {kinds} values, not text, in "
                f"{_rows_text(rows)}; {use}"
            )
        return warnings


def _normalize_value(value: object, text: str, region: str) -> NormalizedPhone:
    """Normalise a phone cell, reading a number given as int or float as one."""
    if isinstance(value, bool):
        return _rejected("a bool (True or False), not a phone number")
    if not text or not isinstance(value, numbers.Real):
        return _normalize(text, region)
    whole = isinstance(value, numbers.Integral) or float(value).is_integer()
    if value < 0 or not whole:
        return _rejected(
            f"a number ({type(value).__name__}) that is not whole and positive, so "
            "not a phone number"
        )
    if not isinstance(value, numbers.Integral):
        return _normalize(text, region)  # "14155550123.0": the '.0' case
    # An int went through a number type, which drops a leading '+' just as a
    # spreadsheet's number cell does.
    return _dial_numeric(text, region, [])


def _extra_names(count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    for index in range(1, count + 1):
        names.append(_unique_name(f"extra_{index}", taken | set(names)))
    return names


def _rows_text(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(row) for row in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}{more}"


def _duplicate(
    row: int, phone: str, kept: Contact, variables: dict[str, str]
) -> DuplicateRow:
    names = dict.fromkeys([*kept.variables, *variables])
    differences = {
        name: (kept.variables.get(name, ""), variables.get(name, ""))
        for name in names
        if kept.variables.get(name, "") != variables.get(name, "")
    }
    return DuplicateRow(
        row=row,
        raw_phone=phone,
        to_number=kept.to_number,
        duplicate_of=kept.row,
        differences=differences,
        variables=dict(variables),
    )
