"""Benchmark: preflight of a 1,000,000-row CSV (no HLR) against plain pandas and naive phonenumbers.

Run: ``.venv/bin/python bench/bench_preflight.py [--rows N] [--repeat 3]``.

It writes a recipient CSV (mostly unique numbers in 15 countries and the usual formats, a few
duplicates, some junk, 10 % of names outside GSM-7), starts a private sandbox and Redis, then, in
the same run and interleaved:

* ``preflight``: :func:`whole_list.run_preflight` with ``hlr=False`` in a fresh process;
  time of the call and the process's peak RSS;
* ``read_csv``: ``pandas.read_csv(engine="pyarrow", dtype=str, keep_default_na=False)`` of the
  same file in a fresh process;
* ``naive``: ``phonenumbers.parse`` + ``is_valid_number`` + ``number_type`` + ``format_number``
  per row on a 100k-row sample, extrapolated to the file.

Each is repeated (default 3 times) and the medians are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_ROWS = 100_000
TEMPLATE = "Hola {name}, tu codigo {code} te da un 10% en {city}. Responde BAJA para no recibir mas."

#: Destination countries and their share of the rows.
COUNTRIES = {"ES": 0.40, "PT": 0.06, "FR": 0.06, "DE": 0.06, "IT": 0.05, "GB": 0.05, "MX": 0.05, "US": 0.05,
             "BR": 0.04, "AR": 0.04, "NL": 0.03, "BE": 0.03, "PL": 0.03, "SE": 0.03, "CO": 0.02}
NAMES = ["Lucia", "Hugo", "Martina", "Mateo", "Sofia", "Leo", "Julia", "Daniel", "Chloe", "Ana", "Pablo", "Marie",
         "Lukas", "Giulia", "Oliver", "Camila", "Ethan", "Noah", "Emma", "Søren"]
UNICODE_NAMES = ["Łukasz", "Zoë", "Ayşe", "Dvořák", "Jiří"]
CITIES = ["Madrid", "Barcelona", "Lisboa", "Paris", "Berlin", "Roma", "London", "CDMX", "Miami", "Sevilla"]
JUNK = ["", "n/a", "3.4612E+10", "+34 1234", "unknown", "34612345678.0"]


def mobile_prefixes(region: str, rng: random.Random) -> tuple[str, list[str], int]:
    """``(calling code, national prefixes, random digits to append)`` giving valid mobiles ~always."""
    import phonenumbers
    from phonenumbers import PhoneNumberType

    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    for tail in (6, 5, 4):
        head = nsn[:-tail]
        candidates = [head[:-1] + d for d in "0123456789"] if len(head) > 1 else [head]
        good = []
        for prefix in candidates:
            tries = [prefix + "".join(rng.choice("0123456789") for _ in range(tail)) for _ in range(40)]
            valid = sum(phonenumbers.is_valid_number(phonenumbers.parse(f"+{example.country_code}{t}")) for t in tries)
            if valid >= 39:
                good.append(prefix)
        if good:
            return str(example.country_code), good, tail
    raise RuntimeError(f"no mobile prefix found for {region}")


def styled(rng: random.Random, country: str, cc: str, nsn: str) -> str:
    """The number as a CRM or a person may have written it."""
    style = rng.random()
    if style < 0.60:
        return f"+{cc}{nsn}"
    if style < 0.85:
        return f"+{cc} " + " ".join(nsn[i:i + 3] for i in range(0, len(nsn), 3))
    if country == "ES" and style < 0.93:
        return ".".join([nsn[:3], nsn[3:5], nsn[5:7], nsn[7:]]) if style < 0.89 else nsn
    return f"00{cc}{nsn}"


def write_file(path: Path, rows: int, seed: int = 20261122) -> None:
    """The benchmark CSV: phone,name,code,city."""
    rng = random.Random(seed)
    plans = {region: mobile_prefixes(region, rng) for region in COUNTRIES}
    regions, weights = list(COUNTRIES), list(COUNTRIES.values())
    recent: list[tuple[str, str, str]] = []
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("phone,name,code,city\n")
        for i in range(rows):
            roll = rng.random()
            if roll < 0.03:
                phone = rng.choice(JUNK)
            elif roll < 0.05:
                phone = f"+34 5{rng.randrange(10**8):08d}"  # invalid in Spain, all different
            elif roll < 0.10 and recent:
                country, cc, nsn = rng.choice(recent)  # a duplicate, written another way
                phone = styled(rng, country, cc, nsn)
            else:
                country = rng.choices(regions, weights)[0]
                cc, prefixes, tail = plans[country]
                nsn = rng.choice(prefixes) + f"{rng.randrange(10**tail):0{tail}d}"
                recent = [*recent[-999:], (country, cc, nsn)]
                phone = styled(rng, country, cc, nsn)
            name = rng.choice(UNICODE_NAMES) if rng.random() < 0.10 else rng.choice(NAMES)
            f.write(f"{phone},{name},SPRING{i % 97:02d},{rng.choice(CITIES)}\n")


# -- measured in fresh processes ---------------------------------------------------------------------


def child_preflight(path: str, sandbox_url: str, redis_url: str) -> dict[str, float]:
    import redis
    from whole_list import run_preflight  # this folder: a script's own

    from dispatcher.instasent.client import InstasentClient
    from dispatcher.preflight.result import PreflightOptions
    from dispatcher.settings import Settings

    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token="sandbox-token", instasent_base_url=sandbox_url, redis_url=redis_url, key_prefix="bench")
    options = PreflightOptions(text=TEMPLATE, sender="Shop", country="ES", hlr=False)
    with InstasentClient.from_settings(settings) as client:
        start = time.perf_counter()
        result = run_preflight(path, options, settings=settings, redis=redis.Redis.from_url(redis_url),
                               client=client)
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rss_mb": _peak_rss_mb(), "rows": result.rows, "messages": result.valid,
            "rejected": result.rejected, "duplicates": result.duplicates, "parts": result.parts,
            "cost": result.cost}


def child_read_csv(path: str) -> dict[str, float]:
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(path, engine="pyarrow", dtype=str, keep_default_na=False)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rss_mb": _peak_rss_mb(), "rows": len(frame)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> dict[str, float]:
    """Run this script as ``--child ...`` in a fresh interpreter; its last output line is JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def naive_seconds_per_row(path: Path, sample: int = SAMPLE_ROWS) -> float:
    """Per-row phonenumbers on the first ``sample`` phones, after one warm-up pass over 1,000."""
    import phonenumbers
    from phonenumbers import NumberParseException, PhoneNumberFormat

    with open(path, encoding="utf-8") as f:
        next(f)
        phones = [line.split(",", 1)[0] for _, line in zip(range(sample), f, strict=False)]

    def check(values: list[str]) -> int:
        kept = 0
        for value in values:
            try:
                number = phonenumbers.parse(value, "ES")
            except NumberParseException:
                continue
            if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (1, 2):
                phonenumbers.format_number(number, PhoneNumberFormat.E164)
                kept += 1
        return kept

    check(phones[:1000])
    start = time.perf_counter()
    check(phones)
    return (time.perf_counter() - start) / len(phones)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="Write the CSV here and keep it.")
    args = parser.parse_args()

    from dispatcher.dev.services import start_redis, start_sandbox

    workdir = Path(tempfile.mkdtemp(prefix="bench-preflight-"))
    path = args.keep or workdir / "recipients.csv"
    start = time.perf_counter()
    write_file(path, args.rows)
    print(f"wrote {args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    sandbox = start_sandbox("--rate-limit", "0")
    store = start_redis()
    runs: dict[str, list[dict[str, float]]] = {"preflight": [], "read_csv": [], "naive": []}
    try:
        for repetition in range(args.repeat):
            runs["preflight"].append(run_child("preflight", str(path), sandbox.url, store.url))
            runs["read_csv"].append(run_child("read_csv", str(path)))
            runs["naive"].append({"seconds": naive_seconds_per_row(path) * args.rows})
            print(f"repetition {repetition + 1}: preflight {runs['preflight'][-1]['seconds']:.2f} s, "
                  f"read_csv {runs['read_csv'][-1]['seconds']:.3f} s, naive {runs['naive'][-1]['seconds']:.1f} s")
    finally:
        sandbox.stop()
        store.stop()
    report(args.rows, path, runs)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def report(rows: int, path: Path, runs: dict[str, list[dict[str, float]]]) -> None:
    pre = runs["preflight"]
    last = pre[-1]
    pre_s = statistics.median(r["seconds"] for r in pre)
    csv_s = statistics.median(r["seconds"] for r in runs["read_csv"])
    naive_s = statistics.median(r["seconds"] for r in runs["naive"])
    print()
    print(f"rows                     {rows:,} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"preflight, no HLR (s)    {_median([r['seconds'] for r in pre])}  "
          f"-> {rows / pre_s:,.0f} rows/s")
    print(f"preflight peak RSS (MB)  {_median([r['rss_mb'] for r in pre])}")
    print(f"pandas.read_csv (s)      {_median([r['seconds'] for r in runs['read_csv']])}")
    print(f"read_csv peak RSS (MB)   {_median([r['rss_mb'] for r in runs['read_csv']])}")
    print(f"naive phonenumbers (s)   {_median([r['seconds'] for r in runs['naive']])}  "
          f"(100k-row sample, extrapolated)")
    print(f"ratios                   preflight = {pre_s / csv_s:.1f} x read_csv, {naive_s / pre_s:.1f} x faster "
          "than naive phonenumbers alone")
    print(f"outcome                  messages {int(last['messages']):,}, rejected {int(last['rejected']):,}, "
          f"duplicates {int(last['duplicates']):,}, parts {int(last['parts']):,}, cost {last['cost']:,.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        outcome = child_preflight(*rest) if kind == "preflight" else child_read_csv(*rest)
        print(json.dumps(outcome))
    else:
        main()
