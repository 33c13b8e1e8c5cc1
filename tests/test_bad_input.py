"""The bad-input catalogue (docs/bad-input.md): one test per line of its table.

Each test gives one kind of bad input, asserts the exact message the user sees and
that nothing else was lost: the other rows still load, or, for a campaign, nothing
was dialled. The campaign checks that tests/test_campaign.py already covers (a
from-number not on the account, an unknown agent, cps above the provider's
maximum) are named in the table, not repeated here.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError

from flow_support import CREATE_ROUTE, TWILIO, credentials_for, run_campaign
from prefect_retell import RetellConfigurationError, outbound_campaign
from prefect_retell.contacts import ContactList, ContactsError, load_contacts

FORMULA_REASON = (
    "a spreadsheet formula, not a number; save the sheet with its values rather "
    "than its formulas"
)


def write(directory: Path, data: str | bytes, name: str = "contacts.csv") -> Path:
    """Write text (as UTF-8) or bytes to a new file, without newline translation."""
    path = directory / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def csv_text(rows: list[list[str]]) -> str:
    """Rows written by the csv module, which quotes what needs quoting."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def refused(path: Path, **options) -> str:
    """The ContactsError message for a file that must not load."""
    with pytest.raises(ContactsError) as caught:
        load_contacts(path, **options)
    return str(caught.value)


def by_row(contacts: ContactList) -> dict[int, object]:
    """Every row of a result by its row number, whichever list holds it."""
    rows = [*contacts.contacts, *contacts.rejected, *contacts.duplicates]
    return {row.row: row for row in rows}


def dialled(contacts: ContactList) -> list[str]:
    """The numbers that would be called, in row order."""
    return [contact.to_number for contact in contacts.contacts]


# --- files refused as a whole ------------------------------------------------------


def test_empty_file_is_refused(tmp_path):
    """A file of 0 bytes is refused as empty, naming the file."""
    path = write(tmp_path, b"")
    assert refused(path) == f"contact file '{path}' is empty"


def test_file_of_blank_lines_is_refused(tmp_path):
    """A file of blank lines and spaces is refused, saying that is all it holds."""
    path = write(tmp_path, "\r\n\n   \n")
    assert refused(path) == (
        f"contact file '{path}' is empty: it holds only blank lines and spaces"
    )


def test_header_followed_by_blank_lines_is_refused_as_header_only(tmp_path):
    """A header and blank lines is refused as having no data rows."""
    path = write(tmp_path, "Phone,Name\r\n\r\n\r\n")
    assert refused(path) == "contact file 'contacts.csv' has a header but no data rows"


@pytest.mark.parametrize("line", ["   ", " \t ", '"  "'])
def test_header_and_a_line_of_spaces_is_refused_as_header_only(tmp_path, line):
    """A data line of only spaces or tabs is blank: no data rows."""
    path = write(tmp_path, f"Phone,Name\r\n{line}\r\n")
    assert refused(path) == "contact file 'contacts.csv' has a header but no data rows"


def test_line_of_spaces_between_rows_is_skipped_like_a_blank_line(tmp_path):
    """A line of spaces among rows is skipped and warned about, not rejected."""
    result = load_contacts(write(tmp_path, "Phone\n415-555-0123\n   \n212-555-0123\n"))
    assert (dialled(result), result.rejected) == (["+14155550123", "+12125550123"], [])
    assert (result.total_rows, result.warnings) == (2, ["blank lines skipped: row 2"])


def test_utf16_without_byte_order_mark_is_refused(tmp_path):
    """UTF-16 without a BOM is refused by its NUL bytes, with what to do."""
    path = write(tmp_path, "Phone,Name\n415-555-0123,Ada\n".encode("utf-16-le"))
    assert refused(path) == (
        f"contact file '{path}' contains NUL bytes: it is binary, or UTF-16 without "
        "a byte-order mark; save it as 'CSV UTF-8' or name its encoding"
    )
    assert dialled(load_contacts(path, encoding="utf-16-le")) == ["+14155550123"]


def test_file_in_neither_utf8_nor_cp1252_is_refused_naming_line(tmp_path):
    """Byte 0x81 (undefined in cp1252) refuses the file, naming byte and line."""
    path = write(tmp_path, b"Phone,Name\n415-555-0123,Ada\n415-555-0124,Bo\x81\n")
    assert refused(path) == (
        f"contact file '{path}' is neither UTF-8 nor Windows-1252: byte 0x81 on "
        "line 3 means nothing in either; save it as 'CSV UTF-8', or name its "
        "encoding (encoding= in Python)"
    )


def test_unknown_encoding_name_is_refused_naming_the_file(tmp_path):
    """encoding='klingon' is refused naming the file and real codec names."""
    path = write(tmp_path, "Phone\n415-555-0123\n")
    assert refused(path, encoding="klingon") == (
        f"contact file '{path}' cannot be read: encoding 'klingon' is unknown to "
        "Python; use a codec name such as 'utf-8', 'cp1252' or 'utf-16'"
    )


@pytest.mark.parametrize("after", ["415-555-0102,Bo\n", "N/A,Bo\n,Cy\n"])
def test_quote_never_closed_refuses_the_file_naming_row_line_column(tmp_path, after):
    """`415-555-0101,"Ada` would take in every later row: the file is refused."""
    path = write(tmp_path, f'Phone,Name\n415-555-0123,Ann\n415-555-0101,"Ada\n{after}')
    last = 3 + after.count("\n")
    lines = "line 4" if last == 4 else f"lines 4 to {last}"
    verb = "is" if last == 4 else "are"
    assert refused(path) == (
        "contact file 'contacts.csv' has a double quote that is never closed: row 2 "
        f"opens it in 'Name' (column 2) on line 3, so {lines}, to the end of the "
        f"file, {verb} read into that one cell and the rows there cannot be told "
        "apart. Close or remove the quote and load the file again"
    )


def test_quote_never_closed_over_blank_lines_only_is_read(tmp_path):
    """A quote left open over trailing blank lines leaves no doubt: row dialled."""
    result = load_contacts(write(tmp_path, 'Phone,Name\n415-555-0101,"Ada\n\n\n'))
    assert dialled(result) == ["+14155550101"]
    assert result.contacts[0].variables == {"name": "Ada"}


def test_stray_quote_in_the_header_is_refused(tmp_path):
    """`Phone,"Name` would read the rows into the header: the file is refused."""
    path = write(tmp_path, 'Phone,"Name\n415-555-0101,Ada\n415-555-0102,Bo\n')
    assert refused(path) == (
        "contact file 'contacts.csv' has a stray double quote in its header: it "
        "opens column 2 on line 1 and is never closed, so lines 2 to 3 are read as "
        "part of the header. Close or remove the quote and load the file again"
    )
    path = write(tmp_path, 'Phone,"Name\n415-555-0101,Ada"\n415-555-0102,Bo\n')
    assert refused(path) == (
        "contact file 'contacts.csv' has a stray double quote in its header: it "
        "opens column 2 on line 1 and closes only on line 2, so line 2 is read as "
        "part of the header. Close or remove the quote and load the file again"
    )


def test_list_without_phone_column_says_none_found():
    """Rows given as mappings with no columns at all: 'columns found: none'."""
    with pytest.raises(ContactsError) as caught:
        load_contacts([{}])
    assert str(caught.value) == (
        "the contact list has no phone column; columns found: none. Name the phone "
        "column (phone_column in Python, --phone-column on the command line) or "
        "rename it to 'Phone'"
    )


# --- files read with a warning ----------------------------------------------------


def test_cp1252_file_loads_with_warning_naming_the_first_byte(tmp_path):
    """A Windows-1252 file loads whole; the warning names where it is not UTF-8."""
    text = "Phone,Name\n415-555-0123,Ada\n415-555-0124,Jürgen\n"
    result = load_contacts(write(tmp_path, text.encode("cp1252")))
    assert result.warnings == [
        "contacts.csv is not UTF-8 (byte 0xFC on line 3); read it as cp1252, the "
        "usual Windows spreadsheet encoding; check that accented letters look right"
    ]
    assert dialled(result) == ["+14155550123", "+14155550124"]
    assert result.contacts[1].variables == {"name": "Jürgen"}


def test_repeated_phone_column_is_warned_about_naming_the_one_dialled(tmp_path):
    """`Phone,Name,Name,Phone`: column 1 is dialled, and the warnings say so."""
    text = "Phone,Name,Name,Phone\n415-555-0123,Ada,Lovelace,415-555-0199\n"
    result = load_contacts(write(tmp_path, text))
    assert result.warnings == [
        "2 columns could hold the number to dial, 'Phone' (column 1) and 'Phone' "
        "(column 4): column 1 is dialled; column 4 is kept as variable 'phone' and "
        "not dialled. To dial another, name it with phone_column (--phone-column on "
        "the command line) or rename the columns",
        "'Name' (column 2) and 'Name' (column 3) give the same variable name "
        "'name': they are sent as 'name' and 'name_2'",
    ]
    assert dialled(result) == ["+14155550123"]
    assert result.contacts[0].variables["phone"] == "415-555-0199"


def test_mobile_and_phone_columns_are_warned_about_naming_the_one_dialled(tmp_path):
    """`Mobile,Phone`: Phone outranks Mobile, and a warning names both."""
    text = "Mobile,Phone,Name\n415-555-0123,415-555-0124,Ada\n"
    result = load_contacts(write(tmp_path, text))
    assert result.warnings == [
        "2 columns could hold the number to dial, 'Mobile' (column 1) and 'Phone' "
        "(column 2): column 2 is dialled; column 1 is kept as variable 'mobile' and "
        "not dialled. To dial another, name it with phone_column (--phone-column on "
        "the command line) or rename the columns"
    ]
    assert dialled(result) == ["+14155550124"]


def test_phone_column_named_by_the_caller_leaves_other_phone_names_alone(tmp_path):
    """With phone_column="Mobile" the choice is the caller's: no warning."""
    text = "Mobile,Phone,Name\n415-555-0123,415-555-0124,Ada\n"
    result = load_contacts(write(tmp_path, text), phone_column="Mobile")
    assert (dialled(result), result.warnings) == (["+14155550123"], [])


# --- rows rejected, the others kept -----------------------------------------------


def test_row_with_other_delimiter_is_rejected_as_mixed_delimiters(tmp_path):
    """A ';' row in a ',' file is rejected saying so; its text and the rest stay."""
    text = "Phone,Name,City\n415-555-0123,Ada,SF\n415-555-0124;Bo;LA\n"
    text += "415-555-0125,Cy,NY\n"
    result = load_contacts(write(tmp_path, text))
    [row] = result.rejected
    assert (row.row, row.raw_phone) == (2, "415-555-0124;Bo;LA")
    assert row.reason == (
        "mixed delimiters: this row separates its values with ';', the header "
        "with ','; save the file with one delimiter"
    )
    assert result.warnings == [
        "mixed delimiters: row 2 separated by ';', the header by ','; rejected, "
        "with their text kept"
    ]
    assert dialled(result) == ["+14155550123", "+14155550125"]


STRAY_QUOTE_CLOSED_LATER = (
    "Phone,Name\n"
    '415-555-0101,"Ada\n'
    "415-555-0102,Bo\n"
    '415-555-0103,Cy"\n'
    "415-555-0104,Di\n"
)


def test_stray_quote_closed_later_rejects_each_row_it_takes_in(tmp_path):
    """Rows read into a stray quote's cell are each rejected; later rows load."""
    result = load_contacts(write(tmp_path, STRAY_QUOTE_CLOSED_LATER))
    inside = (
        "inside the double quote that row 1 opens in 'Name' (column 2) and that "
        "closes only on line 4; not dialled: close or remove that quote"
    )
    assert [(r.row, r.raw_phone, r.reason) for r in result.rejected] == [
        (
            1,
            "415-555-0101",
            "opens a double quote in 'Name' (column 2) that closes only on line 4, "
            "taking in the rows up to it; not dialled: close or remove the quote",
        ),
        (2, "415-555-0102", inside),
        (3, "415-555-0103", inside),
    ]
    assert [r.variables for r in result.rejected] == [
        {"name": "Ada"},
        {"name": "Bo"},
        {"name": 'Cy"'},
    ]
    assert result.warnings == [
        "a stray double quote: row 1 opens one in 'Name' (column 2) on line 2 that "
        "closes only on line 4; rows 1 to 3 are rejected, with their text kept. "
        "Close or remove the quote and load the file again"
    ]
    assert (dialled(result), sorted(by_row(result))) == (["+14155550104"], [1, 2, 3, 4])


def test_excel_text_formula_is_read_with_a_warning(tmp_path):
    """`="+14155550123"` (Excel's text-forcing formula) dials the inner number."""
    text = 'Phone,Name\n="+14155550123",Ada\n="(415) 555-0124",Bo\n'
    result = load_contacts(write(tmp_path, text))
    assert dialled(result) == ["+14155550123", "+14155550124"]
    warning = 'read the value inside the spreadsheet formula ="..."'
    assert [contact.warnings for contact in result.contacts] == [[warning]] * 2
    assert result.contacts[0].raw_phone == '="+14155550123"'


@pytest.mark.parametrize(
    "cell", ["=A1*2", '=HYPERLINK("tel:+14155550125")', "+SUM(A1:A2)", "@cmd"]
)
def test_other_formula_is_rejected_but_plus_number_is_not(tmp_path, cell):
    """Any other formula is rejected as one; `+14155550126` is a number."""
    rows = [["Phone", "Name"], [cell, "Ada"], ["+14155550126", "Bo"]]
    result = load_contacts(write(tmp_path, csv_text(rows)))
    [row] = result.rejected
    assert (row.raw_phone, row.reason, row.variables) == (
        cell,
        FORMULA_REASON,
        {"name": "Ada"},
    )
    assert dialled(result) == ["+14155550126"]


def test_spreadsheet_error_value_is_rejected_by_name(tmp_path):
    """`#REF!` left by a broken formula is rejected naming the error."""
    result = load_contacts(write(tmp_path, "Phone\n#REF!\n415-555-0123\n"))
    assert [(r.row, r.reason) for r in result.rejected] == [
        (
            1,
            "the spreadsheet error #REF!, not a number; correct the formula in "
            "the sheet",
        )
    ]
    assert dialled(result) == ["+14155550123"]


def test_scientific_notation_that_lost_digits_is_rejected(tmp_path):
    """`1.41556E+10` is rejected: digits lost, never guessed."""
    result = load_contacts(write(tmp_path, "Phone\n1.41556E+10\n415-555-0123\n"))
    assert [(r.row, r.reason) for r in result.rejected] == [
        (
            1,
            "scientific notation, digits lost: only 6 of the number's 11 digits are "
            "in the cell; export the phone column as text",
        )
    ]
    assert dialled(result) == ["+14155550123"]


def test_scientific_notation_with_every_digit_is_expanded_with_warning(tmp_path):
    """`1.4155550125E+10` holds every digit: dialled, with a warning."""
    [contact] = load_contacts(write(tmp_path, "Phone\n1.4155550125E+10\n")).contacts
    assert contact.to_number == "+14155550125"
    assert contact.warnings == ["expanded from scientific notation, all digits present"]


def test_float_tail_is_dropped_with_warning(tmp_path):
    """`14155550123.0` is dialled as +14155550123 once the `.0` is dropped."""
    [contact] = load_contacts(write(tmp_path, "Phone\n14155550123.0\n")).contacts
    assert contact.to_number == "+14155550123"
    assert contact.warnings == ["'.0' dropped from a number that went through a float"]


def test_extension_is_kept_as_a_variable_not_dialled(tmp_path):
    """`415-555-0123 x204` dials the bare number; 204 becomes a variable."""
    result = load_contacts(write(tmp_path, "Phone,Name\n415-555-0123 x204,Ada\n"))
    [contact] = result.contacts
    assert (contact.to_number, contact.variables) == (
        "+14155550123",
        {"name": "Ada", "extension": "204"},
    )
    assert contact.warnings == [
        "extension 204 is not dialled; kept as variable 'extension'"
    ]


def test_letters_in_a_number_are_named_not_keypad_converted(tmp_path):
    """`415-555-CALL` is rejected naming the letters; the next row loads."""
    result = load_contacts(write(tmp_path, "Phone\n415-555-CALL\n415-555-0123\n"))
    assert [(r.row, r.reason) for r in result.rejected] == [
        (1, "contains letters 'C', 'A', 'L' (letters are never read as keypad digits)")
    ]
    assert dialled(result) == ["+14155550123"]


@pytest.mark.parametrize("cell", ["-4155550103", "- 415 555 0103", "\u22124155550103"])
def test_leading_minus_sign_is_rejected_not_dialled(tmp_path, cell):
    """`-4155550103` reads like a negative number: rejected, naming its row."""
    rows = [["Phone", "Name"], ["415-555-0102", "Ada"], [cell, "Bo"]]
    result = load_contacts(write(tmp_path, csv_text(rows)))
    assert [(r.row, r.raw_phone, r.reason) for r in result.rejected] == [
        (
            2,
            cell,
            f"starts with a minus sign {cell[0]!r}, as a negative number does; a "
            "phone number has no sign: remove it if the digits are right",
        )
    ]
    assert dialled(result) == ["+14155550102"]


# --- rows given as Python mappings -----------------------------------------------


def test_non_string_variable_values_are_converted_and_named():
    """Ints, floats and bools become strings; a warning names column and rows."""
    rows = [
        {"phone": "415-555-0123", "Balance": 42, "Paid": True},
        {"phone": "415-555-0124", "Balance": 7.5, "Paid": "no"},
    ]
    result = load_contacts(rows)
    assert [contact.variables for contact in result.contacts] == [
        {"balance": "42", "paid": "True"},
        {"balance": "7.5", "paid": "no"},
    ]
    assert result.warnings == [
        "column 'Balance' holds int, float values, not text, in rows 1, 2; sent as "
        "the text str() gives: dynamic variables are strings",
        "column 'Paid' holds bool values, not text, in row 1; sent as the text "
        "str() gives: dynamic variables are strings",
    ]


def test_none_and_nan_values_become_empty_without_warning():
    """None and NaN (pandas' empty cell) are missing values: "" and no warning."""
    rows = [{"phone": "415-555-0123", "note": None, "due": math.nan}]
    result = load_contacts(rows)
    assert result.contacts[0].variables == {"note": "", "due": ""}
    assert result.warnings == []


def test_numbers_in_the_phone_column_are_read_like_number_cells():
    """An int or whole float phone dials; a fraction or bool is rejected."""
    rows = [
        {"phone": 4155550123},
        {"phone": 4155550124.0},
        {"phone": 4915123456789},
        {"phone": 4155550125.5},
        {"phone": True},
    ]
    result = load_contacts(rows)
    assert dialled(result) == ["+14155550123", "+14155550124", "+4915123456789"]
    assert [c.warnings for c in result.contacts] == [
        [],
        ["'.0' dropped from a number that went through a float"],
        ["read as an international number: a number cell drops the leading '+'"],
    ]
    assert [(r.row, r.reason) for r in result.rejected] == [
        (4, "a number (float) that is not whole and positive, so not a phone number"),
        (5, "a bool (True or False), not a phone number"),
    ]
    assert result.warnings == [
        "column 'phone' holds int, float, bool values, not text, in rows 1, 2, 3, "
        "4, 5; read as the text str() gives"
    ]


# --- campaigns: refused before dialling, or bad rows reported -------------------


async def _refused_campaign(sandbox, path: Path, kind: type, **parameters) -> str:
    """Run a campaign that must fail before dialling; return its error message."""
    with pytest.raises(kind) as caught:
        await outbound_campaign(
            contacts=str(path),
            from_number=TWILIO,
            credentials=credentials_for(sandbox),
            **parameters,
        )
    assert sandbox.sandbox.stats()["calls"] == []
    assert CREATE_ROUTE not in sandbox.sandbox.stats()["requests"]
    return str(caught.value)


async def test_campaign_refuses_metadata_over_retells_limit(
    prefect_server, sandbox, tmp_path
):
    """50 kB of metadata leaves no room for the campaign's keys: nothing dialled."""
    path = write(tmp_path, "Phone\n+14155550123\n")
    message = await _refused_campaign(
        sandbox, path, RetellConfigurationError, metadata={"note": "x" * 50_000}
    )
    assert message == (
        "metadata is 50012 bytes as JSON, over the 49600 bytes left of Retell's "
        "50000-byte limit per call; nothing was dialled."
    )


async def test_campaign_refuses_cps_zero(prefect_server, sandbox, tmp_path):
    """cps=0 is refused before anything happens: nothing dialled."""
    path = write(tmp_path, "Phone\n+14155550123\n")
    message = await _refused_campaign(sandbox, path, RetellConfigurationError, cps=0)
    assert message == "cps must be at least 1, not 0; nothing was dialled."


async def test_campaign_refuses_non_string_metadata_value(
    prefect_server, sandbox, tmp_path
):
    """A metadata value that is not a string fails parameter checks, naming it."""
    path = write(tmp_path, "Phone\n+14155550123\n")
    message = await _refused_campaign(
        sandbox, path, ParameterTypeError, metadata={"batch": 5}
    )
    assert message == (
        "Flow run received invalid parameters:\n"
        " - metadata.batch: Input should be a valid string"
    )


async def test_campaign_refuses_a_file_without_phone_column(
    prefect_server, sandbox, tmp_path
):
    """A refused file stops the campaign with the loader's message: nothing dialled."""
    path = write(tmp_path, "Name,Email\nAda,ada@example.com\n")
    message = await _refused_campaign(sandbox, path, ContactsError)
    assert message == (
        "contact file 'contacts.csv' has no phone column; columns found: 'Name', "
        "'Email'. Name the phone column (phone_column in Python, --phone-column on "
        "the command line) or rename it to 'Phone'"
    )


async def test_campaign_reports_every_bad_row_and_dials_the_rest(
    prefect_server, sandbox, tmp_path
):
    """Bad rows come back rejected with their reasons; only good rows are dialled."""
    text = (
        "Phone,Name\n"
        "415-555-0131,Ada\n"
        "=A1*2,Bo\n"
        "415-555-0132;Cy\n"
        "1.41556E+10,Di\n"
        "415-555-CALL,Ed\n"
        '="+14155550133",Fay\n'
    )
    run = await run_campaign(
        sandbox, contacts=str(write(tmp_path, text)), from_number=TWILIO, cps=5
    )

    outcomes = [(row.row, row.outcome) for row in run.result.rows]
    assert outcomes == [
        (1, "called"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "rejected"),
        (6, "called"),
    ]
    assert run.row(2).reason == FORMULA_REASON
    assert run.row(3).reason.startswith("mixed delimiters: this row separates")
    assert run.row(4).reason.startswith("scientific notation, digits lost")
    assert run.row(5).reason.startswith("contains letters 'C', 'A', 'L'")
    assert sorted(call["to_number"] for call in run.stats["calls"]) == [
        "+14155550131",
        "+14155550133",
    ]


async def test_campaign_repeat_of_a_suppressed_row_says_neither_is_dialled(
    prefect_server, sandbox, tmp_path
):
    """A row repeating a do-not-call row is not said to be 'dialled instead'."""
    contacts = write(tmp_path, "Phone,Name\n415-555-0184,Ada\n(415) 555-0184,Bo\n")
    dnc = write(tmp_path, "+14155550184\n", "dnc.txt")

    run = await run_campaign(
        sandbox, contacts=str(contacts), from_number=TWILIO, suppression_file=str(dnc)
    )

    outcomes = [(row.row, row.outcome, row.reason) for row in run.result.rows]
    assert outcomes == [
        (
            1,
            "suppressed",
            "on the do-not-call list (suppression file 'dnc.txt'); not dialled",
        ),
        (
            2,
            "duplicate",
            "same number as row 1, which is on the do-not-call list; "
            "neither row is dialled; differing columns: name",
        ),
    ]
    assert run.stats["calls"] == []


async def test_campaign_reports_every_row_a_stray_quote_took_in(
    prefect_server, sandbox, tmp_path
):
    """Each row inside a stray quote comes back rejected; only row 4 is dialled."""
    path = write(tmp_path, STRAY_QUOTE_CLOSED_LATER)

    run = await run_campaign(sandbox, contacts=str(path), from_number=TWILIO)

    outcomes = [(row.row, row.outcome) for row in run.result.rows]
    assert outcomes == [
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "called"),
    ]
    assert run.row(2).reason.startswith("inside the double quote that row 1 opens")
    assert [call["to_number"] for call in run.stats["calls"]] == ["+14155550104"]
    assert run.result.warnings[0].startswith("a stray double quote: row 1 opens")
