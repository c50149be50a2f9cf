"""The cost bound is never below what the preflight finds, row by row, over varied files."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import numpy as np
import openpyxl
import phonenumbers
import pyarrow as pa
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from dispatcher.preflight import fileformat, loader
from dispatcher.preflight.bound import _Pricer, cost_bound, parts_bound
from dispatcher.preflight.pricing import PriceList
from dispatcher.preflight.result import PreflightOptions
from dispatcher.preflight.rows import judge_chunk, plan_columns

REGIONS = ["ES", "US", "GB", "BR", "AU", "FI", "MX", "CL", "CA", "PT", "DE", "FR", "IT", "RU", "KZ", "HK", "IN", "SG"]
NAMES = ["Ana", "Zoë", "Łukasz", "Søren", "李小龙", "Ayşe", "{brace}", "[x] ^ ~ |", "€uro", "🎉 party 👍", "a\\b", ""]
WORDS = ["hola", "oferta", "€", "{", "}", "🎉", "ñandú", "ü", "Ω", "\u00a0", "—", "tab\t", "日本"]


def number(rng: random.Random) -> str:
    """A phone cell: valid mobiles of many regions in many formats, near misses and junk."""
    roll = rng.random()
    region = rng.choice(REGIONS)
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if roll < 0.5 and example is not None:
        nsn = phonenumbers.national_significant_number(example)
        nsn = nsn[:-3] + f"{rng.randrange(1000):03d}"
        cc = example.country_code
        style = rng.choice(["e164", "spaced", "national", "00", "011", "0011", "paren", "fullwidth", "bare"])
        national = phonenumbers.format_number(phonenumbers.parse(f"+{cc}{nsn}"), PhoneNumberFormat.NATIONAL)
        return {"e164": f"+{cc}{nsn}", "spaced": f"+{cc} {nsn[:3]} {nsn[3:]}", "national": national,
                "00": f"00{cc}{nsn}", "011": f"011 {cc} {nsn}", "0011": f"0011{cc}{nsn}",
                "paren": f"(+{cc}) {nsn}", "fullwidth": f"＋{cc}{nsn}", "bare": f"{cc}{nsn}"}[style]
    if roll < 0.8:
        prefix = rng.choice(["", "+", "00", "0", "011", "+0", "1", "7", "+ ", "tel:+", "(", "99"])
        return prefix + "".join(rng.choice("0123456789") for _ in range(rng.randrange(2, 14)))
    return rng.choice(["", "n/a", "unknown", "3.4612E+10", "34612345678.0", "+34 612 ABC DEF", "٠٦١٢٣٤٥٦٧٨",
                       "612-345-678 ext. 12", "  +34 612 345 678  ", "+1-800-FLOWERS", "x"])


def messy(path: Path, rng: random.Random, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name", "country", "message"])
        for _ in range(n):
            country = rng.choice([*REGIONS, "", "", "XX", "es"])
            long_text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 90)))
            writer.writerow([number(rng), rng.choice(NAMES), country, long_text])
    return path


def exact_rows(path: Path, options: PreflightOptions, prices: PriceList) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per kept row (no duplicate removal, which only lowers the cost): its index, parts and price."""
    fmt = fileformat.sniff(path)
    plan = plan_columns(fmt, options.validated())
    chunk = next(iter(loader.stream(fmt, lambda c: c, chunk_rows=10**6)))
    judged = judge_chunk(chunk, plan, {})
    index = judged.kept.column("row").to_numpy() - 2
    price = np.array([prices.get(c) or 0.0 for c in judged.kept.column("country").to_pylist()])
    return index, judged.kept.column("parts").to_numpy().astype(np.int64), price


TEMPLATES = ["Hola {name}", "Hola {name|cliente}, {message}", "{message}", "€ {name} {{literal}} 🎉 {message|}",
             "Precio [x] ^ ~ {name}" + " relleno" * 25]


@pytest.mark.parametrize("seed", range(12))
def test_the_bound_of_every_row_is_at_least_its_exact_parts_and_price(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = messy(tmp_path / "list.csv", rng, 1500)
    prices = PriceList({r: round(rng.uniform(0.001, 0.2), 4) for r in rng.sample(
        sorted(phonenumbers.SUPPORTED_REGIONS), 150)} | {"ES": 0.05, "US": 0.01}, "EUR")
    region = rng.choice([None, "ES", "US", "GB", "BR", "AU"])
    if seed % 3 == 2:
        options = PreflightOptions(text_column="message", sender="Shop", country=region, hlr=False,
                                   gsm_only=seed == 5)
    else:
        options = PreflightOptions(text=TEMPLATES[seed % len(TEMPLATES)], sender="Shop", country=region,
                                   hlr=False, gsm_only=seed == 4)
    fmt = fileformat.sniff(path)
    plan = plan_columns(fmt, options.validated())
    table = next(iter(loader.stream(fmt, lambda c: c.table, chunk_rows=10**6)))
    index, parts, price = exact_rows(path, options, prices)
    assert len(index) > (0 if options.gsm_only else 100)  # the file has messages to bound
    bound_parts = parts_bound(table, plan)[index]
    bound_price = _Pricer(prices).bound(table, plan)[index]
    assert (bound_parts >= parts).all(), table.take(pa.array(index[bound_parts < parts])).to_pylist()[:3]
    assert (bound_price >= price).all(), table.take(pa.array(index[bound_price < price])).to_pylist()[:3]
    bound = cost_bound(fmt, plan, prices, chunk_rows=400)
    assert bound.cost >= float(np.dot(parts, price)) - 1e-9
    assert bound.messages >= len(index) and bound.parts >= parts.sum() and bound.rows == table.num_rows


def test_the_bound_is_close_for_plain_lists(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        for i in range(1000):
            writer.writerow([f"6{10_000_000 + i:08d}" if i % 2 else f"+34 6{10_000_000 + i:08d}", "Ana"])
        writer.writerow(["n/a", "Ana"])
    options = PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=False)
    fmt = fileformat.sniff(path)
    bound = cost_bound(fmt, plan_columns(fmt, options.validated()), PriceList({"ES": 0.05, "US": 0.01}, "EUR"))
    assert bound.rows == 1001 and bound.messages == 1000
    assert bound.cost == pytest.approx(1000 * 0.05)


@pytest.mark.parametrize("kind", ["xlsx", "gzip"])
def test_workbooks_and_gzipped_lists_are_bounded_too(tmp_path: Path, kind: str) -> None:
    rng = random.Random(7)
    source = messy(tmp_path / "list.csv", rng, 400)
    if kind == "gzip":
        path = tmp_path / "list.csv.gz"
        path.write_bytes(gzip.compress(source.read_bytes()))
    else:
        path = tmp_path / "list.xlsx"
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        with source.open(newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                sheet.append(row)
        book.save(path)
    prices = PriceList({r: round(rng.uniform(0.001, 0.2), 4) for r in sorted(phonenumbers.SUPPORTED_REGIONS)}, "EUR")
    options = PreflightOptions(text="Hola {name|cliente}: {message}", sender="Shop", country="ES", hlr=False)
    fmt = fileformat.sniff(path)
    index, parts, price = exact_rows(path, options, prices)
    bound = cost_bound(fmt, plan_columns(fmt, options.validated()), prices, chunk_rows=150)
    assert len(index) > 100 and bound.cost >= float(np.dot(parts, price)) - 1e-9
