"""The whole preflight on real files, a real Redis and the sandbox over HTTP."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
import redis

from bench.whole_list import run_preflight
from dispatcher.errors import BudgetExceeded, InputError
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.result import PreflightOptions, PreflightResult, check_budget
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import MESSAGE_COLUMNS
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle

ES, PT, GB = 0.045, 0.040, 0.040


@pytest.fixture()
def client(settings: Settings) -> Iterator[InstasentClient]:
    with InstasentClient.from_settings(settings) as instasent:
        yield instasent


@pytest.fixture()
def preflight(settings: Settings, redis_client: redis.Redis, client: InstasentClient) -> Any:
    def run(path: Path, chunk_rows: int = 200_000, **options: Any) -> PreflightResult:
        options.setdefault("text", "Hola {name}")
        options.setdefault("sender", "Shop")
        options.setdefault("country", "ES")
        options.setdefault("hlr", False)
        return run_preflight(path, PreflightOptions(**options), settings=settings, redis=redis_client,
                             client=client, chunk_rows=chunk_rows)

    return run


def write(tmp_path: Path, text: str, name: str = "list.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def invariant(result: PreflightResult) -> None:
    assert result.rows == result.valid + result.rejected + result.duplicates + result.suppressed
    assert result.rejected == len(result.rejects)
    assert len(result.messages) == result.valid == result.message_count
    assert result.cost == pytest.approx(sum(c.cost for c in result.by_country.values()))
    assert result.cost == pytest.approx(result.message_cost + result.lookup_cost)


def test_a_messy_excel_export_becomes_messages_counts_cost_and_rejects(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, (
        "Teléfono;Nombre;País\r\n"
        "+34 612 345 678;Ana;\r\n"
        "612.34.56.79;José;ES\r\n"
        "3.4612E+10;Excel;\r\n"
        "+351 912 345 678;João;PT\r\n"
        "07400 123456;Oliver;GB\r\n"
        "912 345 678;Fijo;\r\n"
        "n/a;Nadie;\r\n"
    ), encoding="cp1252")
    result = preflight(path, text="Hola {nombre}, oferta para ti")
    invariant(result)
    assert (result.rows, result.valid, result.rejected, result.duplicates) == (7, 4, 3, 0)
    assert [(r.row, r.value, r.reason) for r in result.rejects] == [
        (4, "3.4612E+10", "mangled by a spreadsheet (scientific notation)"),
        (7, "912 345 678", "not a mobile number (fixed line)"),
        (8, "n/a", "not a phone number"),
    ]
    messages = result.messages
    assert list(messages.columns) == list(MESSAGE_COLUMNS)
    assert messages["row"].tolist() == [2, 3, 5, 6]
    assert messages["to"].tolist() == ["+34612345678", "+34612345679", "+351912345678", "+447400123456"]
    assert messages["text"].tolist()[1] == "Hola José, oferta para ti"
    assert messages["country"].tolist() == ["ES", "ES", "PT", "GB"]
    assert messages["sender"].tolist() == ["Shop"] * 4
    assert messages["parts"].tolist() == [1, 1, 1, 1]
    assert messages["unicode"].tolist() == [False, False, True, False]  # "ã" is not in GSM-7
    assert messages["price"].tolist() == pytest.approx([ES, ES, PT, GB])
    assert str(messages["row"].dtype) == "int64" and messages["unicode"].dtype == bool
    assert pd.api.types.is_string_dtype(messages["to"])
    assert (result.parts, result.currency) == (4, "EUR")
    assert result.cost == pytest.approx(2 * ES + PT + GB)
    assert result.balance == pytest.approx(100000.0)
    assert result.by_country["ES"].messages == 2 and result.by_country["ES"].cost == pytest.approx(2 * ES)
    assert result.to_json()["by_country"]["PT"] == {"messages": 1, "parts": 1, "cost": PT, "lookups": 0}


def test_duplicates_in_three_formats_are_kept_once_and_counted(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name\n0034 612 345 678,A\n+34612345678,B\n612-345-678,C\n+34612345679,D\n")
    result = preflight(path)
    invariant(result)
    assert (result.valid, result.duplicates, result.rejected) == (2, 2, 0)
    assert result.messages["row"].tolist() == [2, 5]
    assert result.messages["text"].tolist() == ["Hola A", "Hola D"]


def test_a_bad_first_row_does_not_hide_a_good_duplicate(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name,from\n612345678,A,WayTooLongSender\n+34612345678,B,\n")
    result = preflight(path)
    assert result.messages["row"].tolist() == [3]
    assert [r.reason for r in result.rejects] == ["sender must be 1..11 characters"]


def test_suppressed_numbers_are_excluded_and_counted_not_listed(tmp_path: Path, preflight: Any,
                                                                redis_client: redis.Redis) -> None:
    SuppressionList(redis_client, Keys("dsptest")).add(["+34612345679"])
    path = write(tmp_path, "phone,name\n612345678,A\n612 345 679,B\n+34612345679,C\n")
    result = preflight(path)
    invariant(result)
    assert (result.valid, result.suppressed, result.duplicates, result.rejected) == (1, 1, 1, 0)
    assert result.messages["to"].tolist() == ["+34612345678"]


def test_a_destination_without_a_price_is_a_reject(tmp_path: Path, preflight: Any, sandbox: SandboxHandle) -> None:
    sandbox.reset(unpriced_countries=["PT"])
    path = write(tmp_path, "phone,name\n+351912345678,A\n+34612345678,B\n")
    result = preflight(path)
    invariant(result)
    assert [(r.row, r.reason) for r in result.rejects] == [(2, "no price for destination PT")]


def test_hlr_rejects_bad_numbers_and_a_second_run_costs_no_lookups(tmp_path: Path, preflight: Any,
                                                                    sandbox: SandboxHandle) -> None:
    path = write(tmp_path, "phone,name\n612345600,A\n612345613,B\n612345637,C\n+447911123456,D\n612345600,E\n")
    first = preflight(path, hlr=True)
    invariant(first)
    assert [(r.row, r.value, r.reason) for r in first.rejects] == [
        (3, "+34612345613", "HLR: invalid"), (4, "+34612345637", "HLR: unreachable")]
    assert (first.valid, first.duplicates, first.lookups, first.lookups_cached) == (2, 1, 4, 0)
    assert first.lookup_cost == pytest.approx(4 * 0.004)
    assert first.by_country["ES"].lookups == 3
    assert sandbox.stats()["lookups"] == 4
    second = preflight(path, hlr=True)
    assert (second.lookups, second.lookups_cached, second.lookup_cost) == (0, 4, 0.0)
    assert [r.reason for r in second.rejects] == [r.reason for r in first.rejects]
    assert sandbox.stats()["lookups"] == 4


def test_without_hlr_no_lookup_is_made(tmp_path: Path, preflight: Any, sandbox: SandboxHandle) -> None:
    result = preflight(write(tmp_path, "phone,name\n612345613,A\n"), hlr=False)
    assert (result.valid, result.lookups) == (1, 0)
    assert sandbox.stats()["lookups"] == 0


def test_lookups_that_alone_exceed_the_balance_are_refused_before_any_is_made(
        tmp_path: Path, preflight: Any, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=0.01)
    path = write(tmp_path, "phone,name\n" + "".join(f"61234560{i},N\n" for i in range(5)))
    with pytest.raises(BudgetExceeded, match=r"the 5 HLR lookups alone would cost 0\.02 EUR, more than the balance"):
        preflight(path, hlr=True)
    assert sandbox.stats()["lookups"] == 0


def test_unicode_texts_are_flagged_or_rejected_with_gsm_only(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name\n612345678,Ana\n612345679,Łukasz\n612345670,Zoë\n")
    result = preflight(path)
    assert result.messages["unicode"].tolist() == [False, True, True]
    assert result.unicode == 2
    strict = preflight(path, gsm_only=True)
    assert strict.valid == 1
    assert [(r.row, r.reason) for r in strict.rejects] == [(3, "text needs Unicode (--gsm-only)"),
                                                           (4, "text needs Unicode (--gsm-only)")]


def test_long_texts_are_billed_per_part(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,msg\n612345678," + "a" * 161 + "\n612345679," + "ж" * 71 + "\n612345670,€\n")
    result = preflight(path, text=None, text_column="msg")
    assert result.messages["parts"].tolist() == [2, 2, 1]
    assert result.messages["price"].tolist() == pytest.approx([2 * ES, 2 * ES, ES])
    assert result.parts == 5


def test_empty_texts_and_bad_senders_are_rejects(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,msg,from\n612345678,,\n612345679,hi,TwelveChars!\n612345670,hi,Mine\n"
                           "612345671,hi,\n")
    result = preflight(path, text=None, text_column="msg")
    assert [(r.row, r.reason) for r in result.rejects] == [(2, "empty text"), (3, "sender must be 1..11 characters")]
    assert result.messages["sender"].tolist() == ["Mine", "Shop"]


def test_a_country_column_sets_the_region_of_each_row(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name,country\n06 12 34 56 78,A,fr\n612345678,B,\n07911 123456,C,Narnia\n"
                           "+447911123456,D,Narnia\n")
    result = preflight(path, country="ES")
    assert result.messages["to"].tolist() == ["+33612345678", "+34612345678", "+447911123456"]
    assert [(r.row, r.reason) for r in result.rejects] == [(4, "unknown country 'Narnia' in the country column")]


def test_chunked_reading_gives_the_same_result_as_one_chunk(tmp_path: Path, preflight: Any) -> None:
    lines = [f"+3461234{i:04d},N{i}" for i in range(60)] + ["n/a,X", "+34612340001,dup"]
    path = write(tmp_path, "phone,name\n" + "\n".join(lines) + "\n")
    whole = preflight(path)
    chunked = preflight(path, chunk_rows=7)
    assert chunked.to_json() == whole.to_json()
    assert chunked.messages.equals(whole.messages)


def test_a_ragged_file_still_reports_spreadsheet_row_numbers(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, 'phone,name\n612345678,A\n612345679,B,extra\n"612345670","multi\nline"\nn/a,C\n')
    result = preflight(path)
    invariant(result)
    assert [(r.row, r.reason) for r in result.rejects] == [(3, "row has 3 fields but the header has 2"),
                                                           (5, "not a phone number")]
    assert result.messages["row"].tolist() == [2, 4]


def test_gzip_and_xlsx_files_preflight_like_csv(tmp_path: Path, preflight: Any) -> None:
    gz = tmp_path / "list.csv.gz"
    gz.write_bytes(gzip.compress(b"phone,name\n612345678,A\n"))
    assert preflight(gz).messages["to"].tolist() == ["+34612345678"]
    book = openpyxl.Workbook()
    book.active.append(["Mobile", "Name"])
    book.active.append([34612345678, "A"])
    book.active.append([612345679, "B"])
    book.save(tmp_path / "list.xlsx")
    assert preflight(tmp_path / "list.xlsx").messages["to"].tolist() == ["+34612345678", "+34612345679"]


@pytest.mark.parametrize(("content", "options", "message"), [
    (b"", {}, "is empty"),
    (b"phone,name\n", {}, "has no data rows, only a header"),
    (b"phone,name\n\n,\n", {}, "has no data rows"),
    (bytes(range(256)) * 8, {}, "binary data"),
    (b"id,name\n1,A\n", {}, "no phone column"),
    (b"phone,name\n612345678,A\n", {"text": "Hi {surname}"}, "no such column"),
    (b"phone,name\n612345678,A\n", {"text": None}, "--text"),
    (b"phone,name\n612345678,A\n", {"text_column": "name"}, "one of them"),
    (b"phone,name\n612345678,A\n", {"sender": None}, "no sender"),
    (b"phone,name\n612345678,A\n", {"country": "Spain"}, "ISO country code"),
    (b"phone,name\n612345678,A\n", {"max_cost": -1.0}, "--max-cost"),
    (b"phone,name\n612345678,A\n", {"phone_column": "mobile"}, "no column named 'mobile'"),
])
def test_bad_input_ends_in_one_sentence(tmp_path: Path, preflight: Any, content: bytes, options: dict[str, Any],
                                        message: str) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        preflight(path, **options)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_the_budget_guard_gives_both_figures(tmp_path: Path, preflight: Any, sandbox: SandboxHandle) -> None:
    path = write(tmp_path, "phone,name\n612345678,A\n612345679,B\n")
    result = preflight(path)
    check_budget(result)
    check_budget(result, max_cost=0.09)
    with pytest.raises(BudgetExceeded, match=r"would cost 0\.09 EUR, more than --max-cost 0\.05 EUR\."):
        check_budget(result, max_cost=0.05)
    sandbox.reset(balance=0.05)
    poor = preflight(path)
    with pytest.raises(BudgetExceeded, match=r"would cost 0\.09 EUR but the balance is only 0\.05 EUR\."):
        check_budget(poor)


def test_rows_with_an_empty_placeholder_value_are_rejected_and_counted(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name,code\n+34612340001,Ana,A1\n+34612340002,,B2\n+34612340003,Eve\n"
                           "+34612340004,Bob,\n")
    result = preflight(path, text="Hola {name}, code {code}")
    invariant(result)
    assert result.valid == 1 and result.messages["text"].tolist() == ["Hola Ana, code A1"]
    assert [(r.row, r.reason) for r in result.rejects] == [
        (3, "empty value for {name}"), (4, "empty value for {code}"), (5, "empty value for {code}")]
    assert result.empty_values == 3 and result.to_json()["empty_values"] == 3


def test_a_template_default_or_an_explicit_blank_lets_those_rows_through(tmp_path: Path, preflight: Any) -> None:
    path = write(tmp_path, "phone,name,code\n+34612340001,Ana,A1\n+34612340002,,B2\n+34612340003,Eve\n")
    result = preflight(path, text="Hola {name|cliente}, code {code|}")
    assert result.rejects == [] and result.empty_values == 0
    assert result.messages["text"].tolist() == ["Hola Ana, code A1", "Hola cliente, code B2", "Hola Eve, code"]


def test_without_a_choice_lookups_are_only_estimated(tmp_path: Path, preflight: Any, sandbox: SandboxHandle) -> None:
    path = write(tmp_path, "phone,name\n612345600,A\n612345613,B\n+447911123456,C\n")
    result = preflight(path, hlr=None)
    assert (result.valid, result.lookups, result.lookup_cost, result.hlr_done) == (3, 0, 0.0, False)
    assert result.hlr_estimate is not None
    assert (result.hlr_estimate.numbers, result.hlr_estimate.cached, result.hlr_estimate.to_pay) == (3, 0, 3)
    assert result.hlr_estimate.cost == pytest.approx(3 * 0.004)
    assert sandbox.stats()["lookups"] == 0


def test_a_confirmation_sees_the_estimate_and_decides(tmp_path: Path, settings: Settings,
                                                      redis_client: redis.Redis, client: InstasentClient,
                                                      sandbox: SandboxHandle) -> None:
    path = write(tmp_path, "phone,name\n612345600,A\n612345613,B\n")
    seen: list[Any] = []

    def answer(yes: bool) -> Any:
        def confirm(estimate: Any) -> bool:
            seen.append(estimate)
            return yes
        return confirm

    options = PreflightOptions(text="Hola {name}", sender="Shop", country="ES")
    declined = run_preflight(path, options, settings=settings, redis=redis_client, client=client,
                             confirm=answer(False))
    assert (declined.hlr_done, declined.valid, sandbox.stats()["lookups"]) == (False, 2, 0)
    accepted = run_preflight(path, options, settings=settings, redis=redis_client, client=client,
                             confirm=answer(True))
    assert (accepted.hlr_done, accepted.valid, accepted.lookups, sandbox.stats()["lookups"]) == (True, 1, 2, 2)
    assert [(e.to_pay, e.cached) for e in seen] == [(2, 0), (2, 0)]
    again = run_preflight(path, options, settings=settings, redis=redis_client, client=client,
                          confirm=answer(False))
    assert (again.hlr_done, again.valid, again.lookups_cached) == (True, 1, 2)  # all cached: free, not asked
    assert len(seen) == 2


def test_the_budget_guard_counts_lookups_and_messages_before_paying(tmp_path: Path, preflight: Any,
                                                                    sandbox: SandboxHandle) -> None:
    # Five messages cost 0.225 EUR and their lookups 0.02 EUR: each fits 0.23, together they do not.
    sandbox.reset(balance=0.23)
    path = write(tmp_path, "phone,name\n" + "".join(f"61234560{i},N\n" for i in range(5)))
    with pytest.raises(BudgetExceeded, match=r"would cost up to 0\.245 EUR \(0\.225 EUR for messages and "
                                             r"0\.02 EUR for 5 HLR lookups\), more than the balance"):
        preflight(path, hlr=True)
    assert sandbox.stats()["lookups"] == 0
    assert preflight(path, hlr=None).hlr_estimate.to_pay == 5  # not asked for: goes on, without lookups
