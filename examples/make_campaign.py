"""Regenerate ``examples/campaign.csv``: a realistic recipient list with the usual mess.

Run: ``.venv/bin/python examples/make_campaign.py``. Deterministic (seeded).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

COUNTRIES = {"ES": 0.55, "PT": 0.1, "FR": 0.08, "DE": 0.07, "IT": 0.06, "GB": 0.05, "MX": 0.05, "US": 0.04}
FIRST = ["Lucía", "Hugo", "Martina", "Mateo", "Sofía", "Leo", "Julia", "Daniel", "Chloé", "João", "Zoë", "Łukasz",
         "Ana", "Pablo", "Marie", "Lukas", "Giulia", "Oliver", "Camila", "Ethan", "Noah", "Emma", "Søren", "Ayşe"]
CITIES = ["Madrid", "Barcelona", "Lisboa", "Paris", "Berlin", "Roma", "London", "CDMX", "Miami", "Sevilla"]


def mobile(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    """A valid mobile number of ``region``, varied from the metadata's example."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    digits = str(example.national_number)
    while True:
        tail = "".join(rng.choice("0123456789") for _ in range(5))
        candidate = phonenumbers.parse(f"+{example.country_code}{digits[:-5]}{tail}")
        if phonenumbers.is_valid_number(candidate):
            return candidate


def styled(rng: random.Random, number: phonenumbers.PhoneNumber, region: str) -> str:
    """The number written the way a CRM or a person might have typed it."""
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    style = rng.random()
    if style < 0.5:
        return e164
    if style < 0.7:
        return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    if style < 0.8 and region not in ("US", "MX"):  # 00 is not the international prefix there
        return "00" + e164[1:]
    if style < 0.9 and region == "ES":
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL).replace(" ", ".")
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL).replace(" ", "-")


def main(path: Path = Path(__file__).with_name("campaign.csv"), rows: int = 3000, seed: int = 7) -> None:
    rng = random.Random(seed)
    regions = list(COUNTRIES)
    weights = list(COUNTRIES.values())
    out: list[dict[str, str]] = []
    for i in range(rows):
        region = rng.choices(regions, weights)[0]
        number = mobile(rng, region)
        phone = styled(rng, number, region)
        out.append({"phone": phone, "name": rng.choice(FIRST), "city": rng.choice(CITIES), "country": region,
                    "code": f"SPRING{i % 97:02d}"})
    # The usual mess: duplicates in other formats, spreadsheet damage, landlines, junk.
    for j in range(0, rows, 100):
        dup = dict(out[j])
        dup["phone"] = phonenumbers.format_number(phonenumbers.parse(out[j]["phone"], out[j]["country"]),
                                                  PhoneNumberFormat.INTERNATIONAL)
        out.append(dup)
    bad = ["", "n/a", "3.4612E+10", "12345", "+34 91 123 45 67", "not a phone", "612 34 56", "+999123456789",
           "34612345678"]
    for j, value in enumerate(bad * 3):
        out.append({"phone": value, "name": rng.choice(FIRST), "city": rng.choice(CITIES), "country": "ES",
                    "code": f"BAD{j}"})
    rng.shuffle(out)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["phone", "name", "city", "country", "code"])
        writer.writeheader()
        writer.writerows(out)
    print(f"wrote {len(out)} rows to {path}")


if __name__ == "__main__":
    main()
