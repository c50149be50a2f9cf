"""Reading recipient files as they come out of Excel and CRMs: encodings, delimiters, odd rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import openpyxl
import pyarrow as pa
import pytest

from dispatcher.errors import InputError
from dispatcher.preflight.fileformat import (
    PHONE_NAMES,
    FileFormat,
    find_column,
    normalise_name,
    require_column,
    sniff,
    sniff_delimiter,
)
from dispatcher.preflight.loader import Chunk, scan, stream


def rows_of(chunk: Chunk, column: str) -> list[tuple[int, str]]:
    return list(zip(chunk.rows.tolist(), chunk.table.column(column).to_pylist(), strict=True))


def read_all(fmt: FileFormat) -> Chunk:
    """The whole file as one chunk."""
    chunks = scan(fmt, lambda c: c)
    if not chunks:
        return Chunk(pa.table({c: pa.array([], pa.string()) for c in fmt.columns}), np.zeros(0, dtype=np.int64))
    table = pa.concat_tables([c.table for c in chunks])
    return Chunk(table, np.concatenate([c.rows for c in chunks]), [p for c in chunks for p in c.problems])


def test_a_plain_utf8_csv_is_read_with_every_cell_as_text(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,name,amount\n0612345678,Ana,007\nn/a,NA,\n34612345678,null,1e5\n", encoding="utf-8")
    fmt = sniff(path)
    assert (fmt.encoding, fmt.delimiter, fmt.columns) == ("utf-8", ",", ("phone", "name", "amount"))
    chunk = read_all(fmt)
    assert chunk.table.column("phone").to_pylist() == ["0612345678", "n/a", "34612345678"]
    assert chunk.table.column("name").to_pylist() == ["Ana", "NA", "null"]
    assert chunk.table.column("amount").to_pylist() == ["007", "", "1e5"]
    assert chunk.rows.tolist() == [2, 3, 4]


def test_a_windows_1252_file_with_semicolons_keeps_its_accents(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("Teléfono;Nombre;Importe\r\n612 345 678;José Muñoz;3,50 €\r\n".encode("cp1252"))
    fmt = sniff(path)
    assert (fmt.encoding, fmt.delimiter) == ("cp1252", ";")
    assert fmt.columns == ("Teléfono", "Nombre", "Importe")
    chunk = read_all(fmt)
    assert chunk.table.column("Nombre").to_pylist() == ["José Muñoz"]
    assert chunk.table.column("Importe").to_pylist() == ["3,50 €"]
    assert find_column(fmt.columns, None, PHONE_NAMES) == "Teléfono"


def test_bytes_cp1252_leaves_undefined_make_the_file_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"phone,name\n612345678,A\x81B\xe9\n")
    fmt = sniff(path)
    assert fmt.encoding == "latin-1"
    assert read_all(fmt).table.column("name").to_pylist() == ["A\x81Bé"]


def test_a_byte_order_mark_does_not_end_up_in_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffphone;nombre\n612345678;Íñigo\n".encode())
    fmt = sniff(path)
    assert fmt.encoding == "utf-8-sig"
    assert fmt.columns == ("phone", "nombre")
    assert read_all(fmt).table.column("phone").to_pylist() == ["612345678"]


def test_excel_unicode_text_utf16_with_tabs_is_read(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt.csv"
    path.write_text("Móvil\tNombre\n612345678\tZoë\n", encoding="utf-16")
    fmt = sniff(path)
    assert (fmt.encoding, fmt.delimiter, fmt.columns) == ("utf-16", "\t", ("Móvil", "Nombre"))
    assert read_all(fmt).table.column("Nombre").to_pylist() == ["Zoë"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter_is_recognised(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "d.csv"
    lines = [delimiter.join(["phone", "name", "note"])] + [delimiter.join([f"61234567{i}", "x y", "a.b"])
                                                           for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    fmt = sniff(path)
    assert fmt.delimiter == delimiter
    assert len(read_all(fmt)) == 5


def test_commas_inside_values_do_not_fool_the_delimiter_guess() -> None:
    sample = "phone;amount;note\n612345678;3,50;a, b\n612345679;4,10;c\n612345670;1,00;d, e, f\n"
    assert sniff_delimiter(sample) == ";"


def test_an_excel_sep_line_sets_the_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    path = tmp_path / "sep.csv"
    path.write_text("sep=|\nphone|name\n612345678|Ana\n")
    fmt = sniff(path)
    assert (fmt.delimiter, fmt.columns) == ("|", ("phone", "name"))
    assert rows_of(read_all(fmt), "name") == [(2, "Ana")]


def test_quoted_values_with_newlines_count_as_one_spreadsheet_row(tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text('phone,"long\nheader"\n612345678,"line one\nline two"\n612345679,"x"\n"612345670","a ""quote"""\n')
    fmt = sniff(path)
    assert fmt.columns == ("phone", "long\nheader")
    chunk = read_all(fmt)
    assert rows_of(chunk, "long\nheader") == [(2, "line one\nline two"), (3, "x"), (4, 'a "quote"')]


def test_blank_rows_are_skipped_but_still_counted_in_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("phone,name\n612345678,A\n\n,\n612345679,B\n\n\n")
    assert rows_of(read_all(sniff(path)), "name") == [(2, "A"), (5, "B")]


def test_ragged_rows_are_reported_and_later_row_numbers_stay_right(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("phone,name,city\n612345678,A,Madrid\n612345679,B,Roma,extra\n612345670\n"
                    "612345671,C,Paris,\n612345672,D,Lyon\n")
    chunk = read_all(sniff(path))
    assert rows_of(chunk, "name") == [(2, "A"), (4, ""), (5, "C"), (6, "D")]
    assert [(p.row, p.reason) for p in chunk.problems] == [(3, "row has 4 fields but the header has 3")]


def test_an_unclosed_quote_ends_in_a_row_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('phone,name\n612345678,"Ana\n612345679,B\n')
    chunk = read_all(sniff(path))
    assert chunk.rows.tolist() == [2]
    assert chunk.table.column("name").to_pylist() == ["Ana\n612345679,B\n"]


def test_a_gzipped_csv_is_read_like_the_plain_one(tmp_path: Path) -> None:
    path = tmp_path / "list.csv.gz"
    path.write_bytes(gzip.compress("phone;name\n+34 612 345 678;Ana\n".encode("cp1252")))
    fmt = sniff(path)
    assert (fmt.compression, fmt.delimiter) == ("gzip", ";")
    assert read_all(fmt).table.column("phone").to_pylist() == ["+34 612 345 678"]


def test_an_xlsx_workbook_is_read_as_text_with_spreadsheet_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "list.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Phone", "Name", "Paid"])
    sheet.append([34612345678, "Ana", True])
    sheet.append([None, None, None])
    sheet.append(["+34 612 345 679", "Bob", 3.5])
    book.save(path)
    fmt = sniff(path)
    assert (fmt.kind, fmt.columns) == ("xlsx", ("Phone", "Name", "Paid"))
    chunk = read_all(fmt)
    assert rows_of(chunk, "Phone") == [(2, "34612345678"), (4, "+34 612 345 679")]
    assert chunk.table.column("Paid").to_pylist() == ["TRUE", "3.5"]


def test_an_empty_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv is empty\."):
        sniff(path)
    path.write_text("\n\n  \n")
    with pytest.raises(InputError, match="is empty"):
        sniff(path)


@pytest.mark.parametrize("content", [bytes(range(256)) * 40, bytes(range(1, 256)) * 40,
                                     b"\x89PNG\r\n\x1a\n" + bytes(range(1, 200)) * 10])
def test_a_binary_file_named_csv_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match="binary data"):
        sniff(path)


def test_an_old_xls_workbook_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    with pytest.raises(InputError, match=r"save it as \.xlsx"):
        sniff(path)


def test_a_header_only_file_has_no_chunks(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("phone,name\n")
    fmt = sniff(path)
    assert scan(fmt, len) == []
    assert len(read_all(fmt)) == 0


def test_header_names_are_made_unique_and_non_empty(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text("phone,name,,name\n612345678,A,x,B\n")
    fmt = sniff(path)
    assert fmt.columns == ("phone", "name", "column 3", "name (2)")
    assert read_all(fmt).table.column("name (2)").to_pylist() == ["B"]


@pytest.mark.parametrize(("header", "found"), [
    ("Teléfono", "Teléfono"), ("MÓVIL", "MÓVIL"), ("msisdn", "msisdn"), ("Mobile Number", "Mobile Number"),
    (" To ", "To"), ("phone_number", "phone_number"),
])
def test_the_phone_column_is_found_by_name_whatever_the_case_or_accents(tmp_path: Path, header: str,
                                                                          found: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(f"id,{header},name\n1,612345678,A\n")
    assert require_column(sniff(path), None, PHONE_NAMES, "phone", "--phone-column") == found


def test_a_missing_phone_column_error_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "nophone.csv"
    path.write_text("id,name,city\n1,Ana,Madrid\n")
    fmt = sniff(path)
    with pytest.raises(InputError, match=r"no phone column \(its columns are: id, name, city\); name it with"):
        require_column(fmt, None, PHONE_NAMES, "phone", "--phone-column")
    with pytest.raises(InputError, match="no column named 'tel'; its columns are: id, name, city"):
        require_column(fmt, "tel", PHONE_NAMES, "phone", "--phone-column")
    assert require_column(fmt, "NAME", PHONE_NAMES, "phone", "--phone-column") == "name"


def test_names_compare_without_case_accents_or_punctuation() -> None:
    assert normalise_name("Teléfono Móvil") == "telefonomovil"
    assert normalise_name("E-Mail_Address") == "emailaddress"


def test_large_files_come_in_bounded_chunks_with_continuous_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("phone,name\n" + "".join(f"6{i:08d},n{i}\n" for i in range(5000)))
    fmt = sniff(path)
    sizes = scan(fmt, len, chunk_rows=1000, block_bytes=4096)
    assert len(sizes) >= 5 and sum(sizes) == 5000 and max(sizes) < 1500
    rows = np.concatenate(scan(fmt, lambda c: c.rows, chunk_rows=1000, block_bytes=4096))
    assert rows.tolist() == list(range(2, 5002))
    assert scan(fmt, len, chunk_rows=1000, block_bytes=4096, workers=2) == sizes


def test_a_shorter_first_chunk_keeps_every_row_and_its_number(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,name\n" + "".join(f"6{i:08d},n{i}\n" if i != 4 else ",\n" for i in range(12)))
    fmt = sniff(path)
    chunks = list(stream(fmt, lambda c: c, chunk_rows=5, first_rows=3, block_bytes=16))
    assert [len(c) for c in chunks] == [3, 4, 4]  # the blank row (row 6) is skipped, not counted as data
    assert [int(r) for c in chunks for r in c.rows] == [r for r in range(2, 14) if r != 6]
