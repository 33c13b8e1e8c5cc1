"""Tests for prefect_retell.contacts: reading contact lists as users export them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_retell.contacts import (
    SAMPLE_CONTACTS,
    ContactList,
    ContactsError,
    load_contacts,
    normalize_phone,
    to_variable_name,
)

DATA = Path(__file__).parent / "data"
CRM_EXPORT = DATA / "crm-export.csv"
EXCEL_EXPORT = DATA / "excel-semicolon-cp1252.csv"

CRM_US_NUMBERS = [
    *(f"+1415555010{n}" for n in range(1, 8)),
    "+12125550111",
    "+12125550112",
    "+12125550113",
    *(f"+1312555{n:04d}" for n in range(117, 123)),
    *(f"+1206555{n:04d}" for n in range(123, 131)),
    *(f"+1617555{n:04d}" for n in range(131, 141)),
]


def write(
    directory: Path, text: str, name: str = "contacts.csv", encoding: str = "utf-8"
) -> Path:
    """Write `text` to a new file without newline translation."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def by_row(contacts: ContactList) -> dict[int, object]:
    """Every row of a result by its row number, whichever list holds it."""
    rows = [*contacts.contacts, *contacts.rejected, *contacts.duplicates]
    return {row.row: row for row in rows}


@pytest.fixture(scope="module")
def crm() -> ContactList:
    return load_contacts(CRM_EXPORT)


@pytest.fixture(scope="module")
def excel() -> ContactList:
    return load_contacts(EXCEL_EXPORT, default_region="DE")


# --- crm-export.csv (data/README.md) -----------------------------------------------


def test_crm_export_accounts_for_all_41_rows(crm):
    """Each of the 41 rows is a contact, a rejected row or a duplicate."""
    assert (crm.total_rows, len(crm.contacts)) == (41, 36)
    assert (len(crm.rejected), len(crm.duplicates)) == (4, 1)
    assert sorted(by_row(crm)) == list(range(1, 42))


def test_crm_export_dials_34_plain_us_numbers(crm):
    """The 34 US numbers without extension are dialled once each, in file order."""
    plain_us = [
        contact.to_number
        for contact in crm.contacts
        if contact.to_number.startswith("+1") and contact.extension is None
    ]
    assert plain_us == CRM_US_NUMBERS
    assert len(set(plain_us)) == 34


def test_crm_export_reports_row_11_as_duplicate_of_row_1(crm):
    """Row 11 repeats row 1's number: one call, the differing date reported."""
    [duplicate] = crm.duplicates
    assert (duplicate.row, duplicate.duplicate_of) == (11, 1)
    assert duplicate.to_number == "+14155550101"
    assert duplicate.differences == {
        "appointment_date": ("2026-12-08 09:30", "2026-12-09 09:30")
    }


def test_crm_export_rejects_empty_and_na_numbers_with_their_rows(crm):
    """The empty cell (row 9) and N/A (row 10) are rejected as no phone number."""
    rows = by_row(crm)
    assert (rows[9].raw_phone, rows[9].reason) == ("", "no phone number")
    assert (rows[10].raw_phone, rows[10].reason) == ("N/A", "no phone number")


def test_crm_export_rejects_letter_i_typed_for_a_one(crm):
    """Row 15 `212-555-01I4` is rejected naming the letter, not keypad-converted."""
    row = by_row(crm)[15]
    assert row.raw_phone == "212-555-01I4"
    assert row.reason.startswith("contains letters 'I'")
    assert row in crm.rejected


def test_crm_export_rejects_number_without_area_code(crm):
    """Row 16 `555-0115` is rejected because its area code is missing."""
    row = by_row(crm)[16]
    assert row in crm.rejected
    assert row.reason == "not a valid number for region US (missing area code?)"


def test_crm_export_dials_row_8_and_keeps_its_extension(crm):
    """Row 8 is dialled as the bare number; extension 12 is a variable and warned."""
    row = by_row(crm)[8]
    assert (row.to_number, row.extension) == ("+14155550108", "12")
    assert row.variables["extension"] == "12"
    assert row.warnings == ["extension 12 is not dialled; kept as variable 'extension'"]


def test_crm_export_keeps_uk_number_as_valid_contact(crm):
    """Row 17 `+44 20 7946 0116` is a valid contact; destinations are not checked."""
    row = by_row(crm)[17]
    assert row in crm.contacts
    assert row.to_number == "+442079460116"


def test_crm_export_keeps_comma_inside_quoted_field(crm):
    """`"Yilmaz, Jr."` stays one value with its comma."""
    assert by_row(crm)[14].variables["last_name"] == "Yilmaz, Jr."


def test_crm_export_keeps_extra_unnamed_value_and_warns(crm):
    """The seventh value (row 39) is kept as extra_1 and named in a file warning."""
    row = by_row(crm)[39]
    assert row.variables["extra_1"] == "extra-column-value"
    assert crm.warnings == [
        "values beyond the 6 named columns in row 39; kept as variables extra_1, ..."
    ]


def test_crm_export_names_variables_for_prompts(crm):
    """Non-phone columns become first_name, last_name, ... with string values."""
    assert list(crm.variable_names.values()) == [
        "first_name",
        "last_name",
        "appointment_date",
        "clinic",
        "customer_id",
    ]
    assert by_row(crm)[1].variables == {
        "first_name": "Avery",
        "last_name": "Lindqvist",
        "appointment_date": "2026-12-08 09:30",
        "clinic": "Mission Street",
        "customer_id": "C-1001",
    }


def test_crm_export_has_no_byte_order_mark_anywhere(crm):
    """No header, variable name or value keeps the file's U+FEFF."""
    assert crm.phone_column == "Phone Number"
    assert "\ufeff" not in crm.model_dump_json()


def test_crm_export_strips_spaces_around_numbers(crm):
    """Row 7 `  (415) 555-0107  ` is read without its surrounding spaces."""
    row = by_row(crm)[7]
    assert (row.raw_phone, row.to_number) == ("(415) 555-0107", "+14155550107")


# --- excel-semicolon-cp1252.csv (data/README.md) -----------------------------------


def test_excel_export_accounts_for_all_7_rows(excel):
    """Five contacts, one rejected row and one duplicate make the 7 rows."""
    assert [c.row for c in excel.contacts] == [1, 3, 4, 5, 7]
    assert ([r.row for r in excel.rejected], excel.total_rows) == ([2], 7)


def test_excel_export_dials_australian_mobile(excel):
    """`+61 491 570 156` is a valid Australian mobile."""
    assert by_row(excel)[1].to_number == "+61491570156"


def test_excel_export_rejects_scientific_notation_that_lost_digits(excel):
    """`1,41555E+10` is rejected as scientific notation with digits lost."""
    row = by_row(excel)[2]
    assert row.raw_phone == "1,41555E+10"
    assert row.reason.startswith("scientific notation, digits lost")


def test_excel_export_drops_float_tail_with_warning(excel):
    """`14155550142.0` becomes +14155550142 once the `.0` is dropped, with a warning."""
    row = by_row(excel)[3]
    assert row.to_number == "+14155550142"
    assert "'.0' dropped from a number that went through a float" in row.warnings


def test_excel_export_reads_german_international_prefix(excel):
    """`0044 20 7946 0143` read with region DE is +442079460143."""
    assert by_row(excel)[4].to_number == "+442079460143"


def test_excel_export_calls_repeated_emil_row_once(excel):
    """The repeated Emil row is a duplicate of row 5 with no differences."""
    [duplicate] = excel.duplicates
    assert (duplicate.row, duplicate.duplicate_of) == (6, 5)
    assert duplicate.differences == {}


def test_excel_export_keeps_decimal_comma_value_as_string(excel):
    """`120,50` stays the string `120,50` and is not split at its comma."""
    assert by_row(excel)[1].variables["betrag_offen"] == "120,50"


def test_excel_export_decodes_cp1252_umlauts_with_warning(excel):
    """Umlauts decode from cp1252 (Krüger, Weiß) and the guess is warned."""
    assert by_row(excel)[1].variables["nachname"] == "Krüger"
    assert by_row(excel)[4].variables["nachname"] == "Weiß"
    assert "read it as cp1252" in excel.warnings[0]


def test_excel_export_names_german_columns(excel):
    """`Telefon` is the phone column and `Betrag offen` becomes betrag_offen."""
    assert excel.phone_column == "Telefon"
    assert excel.variable_names == {
        "Vorname": "vorname",
        "Nachname": "nachname",
        "Termin": "termin",
        "Betrag offen": "betrag_offen",
    }


# --- Field cases ------------------------------------------------------------------

F01_TEXT = "Phone Number,First Name\r\n(415) 555-0123,Ada\r\n"


def test_f01_utf8_bom_gives_same_result_as_file_without_bom(tmp_path):
    """F01: a UTF-8 BOM file loads exactly like the same file without the BOM."""
    plain = load_contacts(write(tmp_path / "plain", F01_TEXT))
    with_bom = load_contacts(write(tmp_path / "bom", F01_TEXT, encoding="utf-8-sig"))
    assert with_bom == plain
    assert [c.to_number for c in plain.contacts] == ["+14155550123"]
    assert plain.contacts[0].variables == {"first_name": "Ada"}
    assert "\ufeff" not in with_bom.model_dump_json()


def test_f01_utf16_bom_tab_file_gives_same_result_as_file_without_bom(tmp_path):
    """F01: Excel "Unicode text" (UTF-16LE, BOM, tabs) loads like the plain file."""
    plain = load_contacts(write(tmp_path / "plain", F01_TEXT))
    tabbed = F01_TEXT.replace(",", "\t").encode("utf-16-le")
    path = tmp_path / "utf16" / "contacts.csv"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe" + tabbed)
    assert load_contacts(path) == plain
    assert "\ufeff" not in load_contacts(path).model_dump_json()


def csv_text(header: str, cells: list[str]) -> str:
    """A one-column CSV written by the csv module, so commas are quoted."""
    out = io.StringIO()
    csv.writer(out).writerows([[header], *([cell] for cell in cells)])
    return out.getvalue()


def test_f02_spreadsheet_mangled_numbers_are_never_guessed(tmp_path):
    """F02: truncated scientific notation rejected; `.0` dropped; exact forms kept."""
    cells = ["1.41556E+10", "1,41556E+10", "14155550123.0", "4155550124.0"]
    cells += ["1.4155550125E+10", "+14155550126"]
    result = load_contacts(write(tmp_path, csv_text("phone", cells)))
    rows = by_row(result)
    assert [rows[row].raw_phone for row in sorted(rows)] == cells
    for row in (1, 2):
        assert rows[row].reason.startswith("scientific notation, digits lost")
    assert [c.to_number for c in result.contacts] == [
        f"+1415555012{n}" for n in (3, 4, 5, 6)
    ]
    float_warning = "'.0' dropped from a number that went through a float"
    assert rows[3].warnings == rows[4].warnings == [float_warning]
    assert rows[5].warnings == ["expanded from scientific notation, all digits present"]
    assert rows[6].warnings == []


def test_f03_letters_are_rejected_not_turned_into_keypad_digits(tmp_path):
    """F03: letters are named in the reason; a bracketed note is stripped and kept."""
    cells = ["415-555-CALL", "415-555-01O7", "415-555-0123 (cell)"]
    result = load_contacts(write(tmp_path, csv_text("phone", cells)))
    rows = by_row(result)
    assert rows[1].reason.startswith("contains letters 'C', 'A', 'L'")
    assert rows[2].reason.startswith("contains letters 'O'")
    assert [c.to_number for c in result.contacts] == ["+14155550123"]
    assert rows[3].warnings == ["note '(cell)' removed from the number"]


def test_f04_only_valid_numbers_are_dialled(tmp_path):
    """F04: five plausible-looking invalid numbers are rejected with reasons."""
    cells = ["11234567890", "1 (123) 456-7890", "02125550123", "555-0123"]
    cells += ["000-000-0000", "212-555-0123"]
    result = load_contacts(write(tmp_path, csv_text("phone", cells)))
    assert [c.to_number for c in result.contacts] == ["+12125550123"]
    assert [(row.row, row.reason) for row in result.rejected] == [
        (1, "not a valid number for region US (too short)"),
        (2, "not a valid number for region US (too short)"),
        (
            3,
            "not a valid number for region US (too long; write a number from "
            "another country with + and its country code)",
        ),
        (4, "not a valid number for region US (missing area code?)"),
        (5, "not a valid number for region US (no such number range)"),
    ]
    again = phonenumbers.parse(result.contacts[0].to_number, None)
    assert phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) == (
        "+12125550123"
    )


@pytest.mark.parametrize(
    ("cell", "extension"),
    [
        ("+1 415-555-0123 x204", "204"),
        ("415.555.0123 ext. 12", "12"),
        ("tel:+1-415-555-0123;ext=7", "7"),
        ("415 555 0123 #9", "9"),
    ],
)
def test_f05_extension_is_split_off_and_kept_as_variable(cell, extension):
    """F05: to_number is the bare number; the extension is a variable and warned."""
    [contact] = load_contacts([{"phone": cell, "name": "Ada"}]).contacts
    assert (contact.to_number, contact.extension) == ("+14155550123", extension)
    assert contact.variables == {"name": "Ada", "extension": extension}
    assert contact.warnings == [
        f"extension {extension} is not dialled; kept as variable 'extension'"
    ]


def test_f06_trunk_zero_and_international_prefixes_follow_the_region():
    """F06: IT keeps its 0; 00/011 prefixes work; stripped or foreign zeros fail."""
    assert normalize_phone("02 1234 5678", "IT").e164 == "+390212345678"
    assert normalize_phone("011 44 20 7946 0018", "US").e164 == "+442079460018"
    assert normalize_phone("0044 20 7946 0018", "DE").e164 == "+442079460018"
    italian = normalize_phone("2 1234 5678", "IT")
    assert (italian.e164, italian.reason) == (
        None,
        "not a valid number for region IT (no such number range)",
    )
    uk_in_us = normalize_phone("020 7946 0018", "US")
    assert uk_in_us.e164 is None
    assert uk_in_us.reason.startswith("not a valid number for region US (too long")


def test_f07_duplicates_are_found_after_normalisation(tmp_path):
    """F07: three spellings of one number give one call and two duplicate rows."""
    text = (
        "phone,first_name\n(415) 555-0123,Ada\n+1 415 555 0123,Ada\n"
        "14155550123,Ada L.\n415-555-0124,Bo\n"
    )
    result = load_contacts(write(tmp_path, text))
    assert [c.to_number for c in result.contacts] == ["+14155550123", "+14155550124"]
    assert result.contacts[0].variables == {"first_name": "Ada"}
    assert [(d.row, d.duplicate_of, d.differences) for d in result.duplicates] == [
        (2, 1, {}),
        (3, 1, {"first_name": ("Ada", "Ada L.")}),
    ]


def test_f09_columns_become_string_variables_with_prompt_names(tmp_path):
    """F09: `First Name,Balance Due` become first_name and balance_due, as strings."""
    path = write(tmp_path, "First Name,Balance Due,Phone\nAda,42,+14155550123\n")
    [contact] = load_contacts(path).contacts
    assert contact.variables == {"first_name": "Ada", "balance_due": "42"}
    assert all(type(value) is str for value in contact.variables.values())


# --- Bad input ----------------------------------------------------------------------


def test_missing_file_raises_saying_it_does_not_exist(tmp_path):
    """A path to nothing raises ContactsError naming the file."""
    path = tmp_path / "nowhere.csv"
    with pytest.raises(ContactsError) as caught:
        load_contacts(path)
    assert str(caught.value) == f"contact file '{path}' does not exist"


def test_empty_file_raises(tmp_path):
    """A file with no bytes (or only a BOM and spaces) raises ContactsError."""
    for name, data in (("a.csv", b""), ("b.csv", b"\xef\xbb\xbf \r\n")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ContactsError, match="is empty"):
            load_contacts(tmp_path / name)


def test_header_only_file_raises(tmp_path):
    """A header without data rows raises ContactsError saying so."""
    path = write(tmp_path, "Phone,First Name\r\n")
    with pytest.raises(ContactsError) as caught:
        load_contacts(path)
    assert str(caught.value) == (
        "contact file 'contacts.csv' has a header but no data rows"
    )


def test_missing_phone_column_lists_the_columns_found(tmp_path):
    """Without a phone-like header the error lists every column found."""
    path = write(tmp_path, "Name,Email\nAda,ada@example.com\n")
    with pytest.raises(ContactsError) as caught:
        load_contacts(path)
    assert str(caught.value) == (
        "contact file 'contacts.csv' has no phone column; columns found: 'Name', "
        "'Email'. Name the phone column (phone_column in Python, --phone-column on "
        "the command line) or rename it to 'Phone'"
    )


def test_explicit_phone_column_is_used(tmp_path):
    """phone_column picks a column that the header names would not."""
    path = write(tmp_path, "Mobile,Home\n415-555-0123,212-555-0123\n")
    result = load_contacts(path, phone_column="Home")
    assert result.phone_column == "Home"
    assert result.contacts[0].to_number == "+12125550123"
    assert result.contacts[0].variables == {"mobile": "415-555-0123"}


def test_explicit_phone_column_that_is_absent_raises(tmp_path):
    """A phone_column missing from the file raises listing the columns found."""
    path = write(tmp_path, "Mobile,Home\n415-555-0123,212-555-0123\n")
    with pytest.raises(
        ContactsError, match="no column 'Work'; columns found: 'Mobile'"
    ):
        load_contacts(path, phone_column="Work")


def test_unknown_default_region_raises_value_error():
    """`UK` is not a region code; the error says to use GB."""
    with pytest.raises(ValueError, match="the United Kingdom is 'GB'"):
        load_contacts([{"phone": "020 7946 0018"}], default_region="UK")


def test_excel_workbook_is_refused_with_advice(tmp_path):
    """An .xlsx (zip) file raises ContactsError asking for CSV."""
    (tmp_path / "book.xlsx").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ContactsError, match="save it as 'CSV UTF-8'"):
        load_contacts(tmp_path / "book.xlsx")


def test_undecodable_file_with_given_encoding_raises(tmp_path):
    """Bytes that the given encoding cannot decode raise ContactsError."""
    (tmp_path / "c.csv").write_bytes("Phone\nKrüger\n".encode("cp1252"))
    with pytest.raises(ContactsError, match="cannot be decoded as utf-8"):
        load_contacts(tmp_path / "c.csv", encoding="utf-8")


# --- Reading ------------------------------------------------------------------------


def test_phone_column_found_by_priority_of_names(tmp_path):
    """`Mobile` outranks `Number` whatever their order in the file."""
    result = load_contacts(write(tmp_path, "Number,Mobile\nC-7,415-555-0123\n"))
    assert (result.phone_column, result.contacts[0].variables) == (
        "Mobile",
        {"number": "C-7"},
    )


def test_semicolons_win_over_quoted_commas_and_decimal_commas(tmp_path):
    """Sniffing counts fields per row, so commas inside values do not win."""
    text = 'Phone;Name;Due\n415-555-0123;"Yilmaz, Jr.";1,50\n212-555-0123;Bo;2,00\n'
    result = load_contacts(write(tmp_path, text))
    assert result.contacts[0].variables == {"name": "Yilmaz, Jr.", "due": "1,50"}


def test_tsv_suffix_means_tab_delimited(tmp_path):
    """A .tsv file is split at tabs even when its values contain commas."""
    path = write(tmp_path, "Phone\tName\n415-555-0123\tYilmaz, Jr.\n", "c.tsv")
    assert load_contacts(path).contacts[0].variables == {"name": "Yilmaz, Jr."}


def test_explicit_delimiter_wins_over_sniffing(tmp_path):
    """delimiter= is used as given."""
    path = write(tmp_path, "Phone|Name\n415-555-0123|Ada, B\n")
    result = load_contacts(path, delimiter="|")
    assert result.contacts[0].variables == {"name": "Ada, B"}


def test_explicit_encoding_overrides_detection(tmp_path):
    """encoding= decodes as told and adds no guess warning."""
    (tmp_path / "c.csv").write_bytes(
        "Phone,Name\n415-555-0123,Jürgen\n".encode("latin-1")
    )
    result = load_contacts(tmp_path / "c.csv", encoding="latin-1")
    assert (result.contacts[0].variables, result.warnings) == ({"name": "Jürgen"}, [])


def test_repeated_and_empty_headers_get_distinct_names(tmp_path):
    """Two `Name` headers give name and name_2; an empty header gives column_N."""
    path = write(tmp_path, "Name,Phone,name,\nAda,415-555-0123,Lovelace,x\n")
    result = load_contacts(path)
    assert result.contacts[0].variables == {
        "name": "Ada",
        "name_2": "Lovelace",
        "column_4": "x",
    }
    assert result.variable_names == {
        "Name": "name",
        "name": "name_2",
        "(column 4)": "column_4",
    }


def test_quoted_cells_with_line_breaks_stay_one_cell(tmp_path):
    """A note or header with line breaks in quotes is one cell, not a stray quote."""
    text = (
        'Phone,"First,\nName",Note\n'
        '415-555-0123,Ada,"Called, no answer\nRetry Tuesday, 415-555-0199"\n'
        "415-555-0124,Bo,\n"
    )
    result = load_contacts(write(tmp_path, text))
    assert [(c.row, c.variables) for c in result.contacts] == [
        (
            1,
            {
                "first_name": "Ada",
                "note": "Called, no answer\nRetry Tuesday, 415-555-0199",
            },
        ),
        (2, {"first_name": "Bo", "note": ""}),
    ]
    assert (result.rejected, result.warnings) == ([], [])


def test_short_rows_get_empty_strings(tmp_path):
    """Missing trailing cells become "" rather than failing the row."""
    result = load_contacts(write(tmp_path, "Phone,Name,City\n415-555-0123\n"))
    assert result.contacts[0].variables == {"name": "", "city": ""}


def test_cells_are_never_type_inferred(tmp_path):
    """Numbers, leading zeros and dates stay exactly the strings written."""
    text = "Phone,Zip,Amount,Date\n415-555-0123,02134, 0042 ,2026-01-02\n"
    [contact] = load_contacts(write(tmp_path, text)).contacts
    assert contact.variables == {"zip": "02134", "amount": "0042", "date": "2026-01-02"}


def test_list_of_mappings_is_read_like_a_file():
    """A list of dicts has the same semantics; values are turned into strings."""
    rows = [
        {"Phone": "415-555-0123", "Balance Due": 42},
        {"Phone": None, "Balance Due": 7.5},
    ]
    result = load_contacts(rows)
    assert (result.source, result.total_rows) == ("<list>", 2)
    assert result.contacts[0].variables == {"balance_due": "42"}
    assert result.rejected[0].variables == {"balance_due": "7.5"}
    assert result.rejected[0].reason == "no phone number"


@pytest.mark.parametrize("cell", ["N/A", "none", "NULL", "-", "", "   "])
def test_placeholders_mean_no_phone_number(cell):
    """Empty cells and placeholders are rejected as no phone number."""
    assert normalize_phone(cell).reason == "no phone number"


def test_entirely_empty_row_is_rejected_as_empty(tmp_path):
    """A row of empty cells (a spreadsheet's `,,`) is a rejected data row."""
    result = load_contacts(write(tmp_path, "Phone,Name\n415-555-0123,Ada\n,\n"))
    assert [(r.row, r.reason) for r in result.rejected] == [
        (2, "no phone number (the row is empty)")
    ]


def test_blank_lines_are_skipped_and_warned(tmp_path):
    """A blank line is not a data row but keeps its row number."""
    result = load_contacts(write(tmp_path, "Phone\n415-555-0123\n\n212-555-0123\n"))
    assert [c.row for c in result.contacts] == [1, 3]
    assert (result.total_rows, result.warnings) == (2, ["blank lines skipped: row 2"])


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("First Name", "first_name"),
        ("Betrag offen", "betrag_offen"),
        ("Téléphone", "telephone"),
        ("  Customer ID ", "customer_id"),
        ("FirstName", "first_name"),
        ("2nd Phone", "column_2nd_phone"),
        ("Straße", "strasse"),
        ("\ufeffPhone", "phone"),
        ("---", ""),
    ],
)
def test_to_variable_name(header, name):
    """Headers become snake_case names a prompt can use."""
    assert to_variable_name(header) == name


def test_sample_contacts_file_shows_every_kind_of_row():
    """The packaged demo list has valid, duplicate, empty and invalid rows."""
    result = load_contacts(SAMPLE_CONTACTS)
    assert (result.total_rows, len(result.contacts)) == (30, 26)
    assert [(d.row, d.duplicate_of) for d in result.duplicates] == [(28, 3)]
    assert [r.row for r in result.rejected] == [11, 13, 16]
    assert [c.extension for c in result.contacts if c.extension] == ["23"]


def test_a_huge_cell_does_not_stop_the_list(tmp_path):
    """A 1 MB note in one cell is read; the rows after it still load."""
    note = "x" * 1_000_000
    path = write(tmp_path, f"Phone,Note\n415-555-0101,{note}\n415-555-0102,short\n")
    result = load_contacts(path)
    assert [c.to_number for c in result.contacts] == ["+14155550101", "+14155550102"]


def test_duplicate_rows_keep_their_own_columns(tmp_path):
    """A duplicate row's own values are kept on it, not dropped."""
    path = write(tmp_path, "Phone,Date\n415-555-0101,Mon\n(415) 555-0101,Tue\n")
    (duplicate,) = load_contacts(path).duplicates
    assert duplicate.variables == {"date": "Tue"}
    assert duplicate.differences == {"date": ("Mon", "Tue")}


def test_ten_thousand_rows_are_all_accounted_for(tmp_path):
    """A 10,000-row list loads whole; its speed is measured in bench/, not here."""
    lines = ["Phone,First Name,Balance"]
    lines += [f"(415) 555-{n % 10000:04d},Name {n},{n}.50" for n in range(10_000)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = load_contacts(path)
    assert result.total_rows == 10_000
    accounted = len(result.contacts) + len(result.rejected) + len(result.duplicates)
    assert accounted == 10_000


# --- Properties ---------------------------------------------------------------------

PHONE_LIKE = st.sampled_from(
    ["415-555-0123", "+44 20 7946 0116", "1,41556E+10", "14155550123.0", "x204"]
    + ["tel:+1-415-555-0123;ext=7", "(cell)", "N/A", "0044 20 7946 0143", "+"]
)
CELLS = st.one_of(
    PHONE_LIKE,
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
    st.sampled_from(['"', ",", ";", "\t", "|", "\r\n", "\n", "\ufeff", " "]),
)


@st.composite
def csv_files(draw):
    """A header containing `Phone`, 1-8 rows of 1-7 cells, and how it is written.

    The count of data rows leaves out rows of one cell of only whitespace: written
    out, such a row is a line of spaces, which the loader reads as a blank line.
    """
    headers = draw(st.lists(CELLS, max_size=4))
    headers.insert(draw(st.integers(0, len(headers))), "Phone")
    rows = draw(
        st.lists(st.lists(CELLS, min_size=1, max_size=7), min_size=1, max_size=8)
    )
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows([headers, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    blank = [row for row in rows if len(row) == 1 and row[0] and not row[0].strip()]
    return out.getvalue().encode(encoding), delimiter, len(rows) - len(blank)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
def test_every_written_row_is_accounted_for(tmp_path_factory, written):
    """Any CSV with a Phone column and a data row loads; each row lands in one list."""
    data, delimiter, row_count = written
    path = tmp_path_factory.mktemp("prop") / "contacts.csv"
    path.write_bytes(data)
    if row_count == 0:
        with pytest.raises(ContactsError, match="has a header but no data rows"):
            load_contacts(path, delimiter=delimiter)
        return
    result = load_contacts(path, delimiter=delimiter)
    assert result.total_rows == row_count
    assert len(result.contacts) + len(result.rejected) + len(result.duplicates) == (
        row_count
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(csv_files().map(lambda written: written[0]), st.binary()))
def test_any_bytes_load_or_raise_contacts_error(tmp_path_factory, data):
    """Whatever the bytes, loading gives a consistent result or ContactsError."""
    path = tmp_path_factory.mktemp("prop") / "contacts.csv"
    path.write_bytes(data)
    try:
        result = load_contacts(path)
    except ContactsError:
        return
    accounted = len(result.contacts) + len(result.rejected) + len(result.duplicates)
    assert accounted == result.total_rows
    for contact in result.contacts:
        assert normalize_phone(contact.to_number).e164 == contact.to_number
