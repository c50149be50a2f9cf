"""Per-message reports: formats, spreadsheet safety, phone numbers kept readable for scripts."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import redis

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.sending import ledger
from dispatcher.sending.report import COLUMNS, build_report, iter_report_csv, report_csv, stream_report, write_report
from dispatcher.sending.store import CampaignStore
from tests.helpers import accented_frame

EVIL = "=HYPERLINK(\"http://evil\")"


@pytest.fixture()
def report(redis_client: redis.Redis) -> pd.DataFrame:
    """Three messages: one sent with an outside delivery report that tries a formula, one failed
    with an outside error that tries one, one pending."""
    keys = Keys("dsptest")
    store = CampaignStore(redis_client, keys)
    cid = store.create("x", accented_frame(3), window=4)
    redis_client.hset(keys.ledger(cid, 0), mapping={"0": ledger.encode("sent", 1, "abc123"),
                                                    "1": ledger.encode("failed", 2, "@SUM(1+1)*cmd|' /C calc'!A0")})
    redis_client.hset(keys.delivery(cid, 0), "0", f"{EVIL}|+1+1|-3")
    return build_report(store, cid)


def test_the_streamed_csv_is_byte_for_byte_the_whole_one_in_pieces_on_stdout_and_in_a_file(
        redis_client: redis.Redis, tmp_path: Path) -> None:
    keys = Keys("dsptest")
    store = CampaignStore(redis_client, keys)
    cid = store.create("x", accented_frame(250), window=4)
    redis_client.hset(keys.ledger(cid, 1), mapping={"0": ledger.encode("sent", 1, "09cdadf05a2da7158f10420f"),
                                                    "1": ledger.encode("failed", 2, f"{EVIL}, \"quoted\"\nline")})
    redis_client.hset(keys.delivery(cid, 2), "3", "delivered|2026-11-23T10:00:05Z|0|1795939205000000|15")
    whole = report_csv(build_report(store, cid))
    assert "".join(iter_report_csv(store, cid, piece_rows=30)) == whole
    assert stream_report(store, cid, tmp_path / "r.csv", piece_rows=30) == ("csv", 250)
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == whole
    rows = read_csv(whole)
    assert rows[100]["instasent_id"] == "09cdadf05a2da7158f10420f" and rows[101]["error"].startswith("'=HYPER")
    assert (rows[203]["delivery"], rows[203]["delivered_at"]) == ("delivered", "2026-11-23T10:00:05Z")


def test_the_report_of_a_campaign_without_messages_is_its_header(redis_client: redis.Redis, tmp_path: Path) -> None:
    store = CampaignStore(redis_client, Keys("dsptest"))
    cid = store.create("x", accented_frame(0), window=4)
    assert "".join(iter_report_csv(store, cid)) == ",".join(COLUMNS) + "\n" == report_csv(build_report(store, cid))
    assert stream_report(store, cid, tmp_path / "r.csv") == ("csv", 0)
    assert (tmp_path / "r.csv").read_text() == ",".join(COLUMNS) + "\n"


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_leaves_e164_numbers_unquoted_for_scripts(report: pd.DataFrame) -> None:
    rows = read_csv(report_csv(report))
    assert [r["to"] for r in rows] == ["+34600000000", "+34600000001", "+34600000002"]


def test_csv_neutralises_every_other_cell_that_came_from_outside(report: pd.DataFrame) -> None:
    rows = read_csv(report_csv(report))
    assert rows[0]["delivery"] == "'" + EVIL
    # The report's time is under report_at: delivered_at holds it only for a delivered message (issue 22).
    assert rows[0]["report_at"] == "'+1+1" and rows[0]["delivered_at"] == ""
    assert rows[0]["report_code"] == "'-3"
    assert rows[1]["error"].startswith("'@SUM")
    assert rows[0]["instasent_id"] == "abc123" and rows[2]["status"] == "pending"


def test_a_plus_followed_by_more_than_digits_is_still_neutralised() -> None:
    from dispatcher.sending.report import csv_cell

    assert csv_cell("+34600000000") == "+34600000000"
    assert csv_cell("+34 600 000 000") == "'+34 600 000 000"
    assert csv_cell("+1+1") == "'+1+1"
    assert csv_cell("+0123456789") == "'+0123456789"


def test_xlsx_is_a_real_workbook_with_phone_numbers_typed_as_text(report: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    assert write_report(report, path) == "xlsx"
    sheet = openpyxl.load_workbook(path).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    to = sheet.cell(row=2, column=header.index("to") + 1)
    assert to.value == "+34600000000" and to.data_type == "s" and to.number_format == "@"
    delivery = sheet.cell(row=2, column=header.index("delivery") + 1)
    assert delivery.value == EVIL and delivery.data_type == "s"  # text, never a formula
    assert sheet.cell(row=2, column=header.index("row") + 1).value == 2
    assert sheet.max_row == 4


def test_csv_and_parquet_files_are_written_by_their_extension(report: pd.DataFrame, tmp_path: Path) -> None:
    assert write_report(report, tmp_path / "r.csv") == "csv"
    assert pd.read_csv(tmp_path / "r.csv", dtype=str)["to"].tolist()[0] == "+34600000000"
    assert write_report(report, tmp_path / "r.parquet") == "parquet"
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 3


@pytest.mark.parametrize("name", ["report.json", "report.txt", "report"])
def test_an_unknown_extension_is_refused_and_nothing_is_written(report: pd.DataFrame, tmp_path: Path,
                                                                name: str) -> None:
    with pytest.raises(InputError, match=r"\.csv, \.xlsx or \.parquet") as caught:
        write_report(report, tmp_path / name)
    assert caught.value.exit_code == 2
    assert not (tmp_path / name).exists()


def test_a_failed_delivery_keeps_its_report_code_and_time_and_says_why_in_error(redis_client: redis.Redis) -> None:
    keys = Keys("dsptest")
    store = CampaignStore(redis_client, keys)
    cid = store.create("x", accented_frame(2), window=4)
    redis_client.hset(keys.ledger(cid, 0), mapping={"0": ledger.encode("sent", 1, "aa11"),
                                                    "1": ledger.encode("sent", 1, "bb22")})
    redis_client.hset(keys.delivery(cid, 0), mapping={"0": "failed|2026-11-23T10:00:05Z|1|1795939205000000|14",
                                                      "1": "delivered|2026-11-23T10:00:06Z|0|1795939206000000|15"})
    rows = read_csv(report_csv(build_report(store, cid)))
    assert (rows[0]["delivery"], rows[0]["report_code"], rows[0]["report_at"], rows[0]["delivered_at"]) == (
        "failed", "1", "2026-11-23T10:00:05Z", "")
    error = rows[0]["error"]
    assert error.startswith("undelivered: the network could not deliver it") and "(code 1)" in error
    assert (rows[1]["delivered_at"], rows[1]["report_code"], rows[1]["error"]) == ("2026-11-23T10:00:06Z", "0", "")
