"""Phone normalisation: every written form to E.164, a plain reason otherwise, and a fast column path
that gives exactly the answers of phonenumbers."""

from __future__ import annotations

import random

import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from dispatcher.errors import InputError
from dispatcher.preflight.phone_columns import normalise_many
from dispatcher.preflight.phones import (
    REASON_DECIMAL,
    REASON_EMPTY,
    REASON_LOST_PREFIX,
    REASON_NO_COUNTRY,
    REASON_NOT_A_NUMBER,
    REASON_SCIENTIFIC,
    REASON_UNKNOWN_CODE,
    Phone,
    normalise,
    parse_region,
)


def column(values: list[str], region: str | list[str] | None = "ES") -> list[Phone]:
    regions = pa.array(region) if isinstance(region, list) else region
    out = normalise_many(pa.array(values), regions)
    return [Phone(e, c, r) for e, c, r in zip(out.e164.to_pylist(), out.country.to_pylist(),
                                                out.reason.to_pylist(), strict=True)]


@pytest.mark.parametrize("written", [
    "+34612345678", "+34 612 345 678", "+34-612-345-678", "+34 (612) 34 56 78", "0034612345678",
    "00 34 612 34 56 78", "612345678", "612.34.56.78", "612 34 56 78", " 612-345-678 ", "(612) 345 678",
    "+34.612.345.678", "34612345678",
])
def test_every_common_way_of_writing_a_spanish_mobile_gives_the_same_e164(written: str) -> None:
    expected = Phone("+34612345678", "ES", "")
    assert normalise(written, "ES") == expected
    assert column([written]) == [expected]


def test_numbers_of_other_countries_keep_their_own_country_whatever_the_default() -> None:
    assert normalise("+44 7911 123456", "ES").e164 == "+447911123456"
    assert normalise("+33 6 12 34 56 78", "ES") == Phone("+33612345678", "FR", "")
    assert normalise("06 12 34 56 78", "FR") == Phone("+33612345678", "FR", "")


def test_a_us_number_that_may_be_mobile_is_kept() -> None:
    number = normalise("+1 201 555 0123", None)
    assert number.ok and number.country == "US"


def test_landlines_and_special_numbers_are_rejected_as_not_mobile() -> None:
    assert normalise("+34 912 345 678", None).reason == "not a mobile number (fixed line)"
    assert normalise("900 123 456", "ES").reason == "not a mobile number (toll free)"
    assert column(["+34912345678", "+34900123456"]) == [
        Phone(reason="not a mobile number (fixed line)"), Phone(reason="not a mobile number (toll free)")]


@pytest.mark.parametrize(("written", "reason"), [
    ("", REASON_EMPTY),
    ("   ", REASON_EMPTY),
    ("3.4612E+10", REASON_SCIENTIFIC),
    ("3,4612E+10", REASON_SCIENTIFIC),
    ("3.46123E+11", REASON_SCIENTIFIC),
    ("34612345678.0", REASON_DECIMAL),
    ("n/a", REASON_NOT_A_NUMBER),
    ("unknown", REASON_NOT_A_NUMBER),
    ("+999 123 456 789", REASON_UNKNOWN_CODE),
    ("+34 5123 4567", "invalid number for ES"),
    ("+34 61234567", "invalid number for ES"),
    ("1", REASON_NOT_A_NUMBER),
])
def test_unusable_values_get_a_plain_reason(written: str, reason: str) -> None:
    assert normalise(written, "ES") == Phone(reason=reason)
    assert column([written]) == [Phone(reason=reason)]


def test_a_number_that_lost_its_plus_in_a_spreadsheet_is_rejected_as_such() -> None:
    # A British mobile stored as a number in a file of French customers: invalid as written.
    assert normalise("447911123456", "FR").reason == REASON_LOST_PREFIX
    assert column(["447911123456"], "FR") == [Phone(reason=REASON_LOST_PREFIX)]
    # Without any default country the same damage is recognised too.
    assert normalise("34612345678", None).reason == REASON_LOST_PREFIX


def test_a_number_that_lost_its_leading_zero_is_rejected_as_such() -> None:
    # Italian landlines keep their 0; "06 1234 5678" saved as a number becomes 612345678.
    assert normalise("612345678", "IT").reason == REASON_LOST_PREFIX


def test_a_national_number_without_any_country_asks_for_one() -> None:
    assert normalise("0612345678", None).reason == REASON_NO_COUNTRY
    assert column(["0612345678"], None) == [Phone(reason=REASON_NO_COUNTRY)]


def test_each_row_may_bring_its_own_default_country() -> None:
    phones = column(["06 12 34 56 78", "612 345 678", "07911 123456", "612345678"], ["FR", "ES", "GB", ""])
    assert [p.e164 for p in phones] == ["+33612345678", "+34612345678", "+447911123456", ""]
    assert phones[3].reason == REASON_NO_COUNTRY


def test_an_unknown_country_code_option_is_refused_in_one_sentence() -> None:
    assert parse_region(" es ") == "ES"
    assert parse_region(None) is None
    with pytest.raises(InputError, match="ISO country code"):
        parse_region("Spain")


def test_the_column_path_settles_the_common_shapes_without_phonenumbers_parse() -> None:
    values = ["+34612345678", "+34 612 345 678", "0034612345678", "612345678", "+33612345678", "+34 5123 4567"]
    assert normalise_many(pa.array(values), "ES").fast == len(values)


def test_the_memo_is_shared_across_chunks() -> None:
    memo: dict[tuple[str, str | None], Phone] = {}
    normalise_many(pa.array(["n/a", "3.4612E+10"]), "ES", memo)
    assert memo[("n/a", "ES")].reason == REASON_NOT_A_NUMBER
    assert normalise_many(pa.array(["n/a"]), "ES", memo).reason.to_pylist() == [REASON_NOT_A_NUMBER]


# -- the fast path agrees with phonenumbers --------------------------------------------------------

TYPES = [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
         PhoneNumberType.VOIP, PhoneNumberType.PAGER, PhoneNumberType.UAN, PhoneNumberType.PERSONAL_NUMBER,
         PhoneNumberType.SHARED_COST]


def generated_sample(seed: int, per_region: int) -> list[tuple[str, str | None]]:
    """Numbers of every region and type, perturbed, written in every usual style, with default
    regions that are the number's own, another one, or none."""
    rng = random.Random(seed)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    out: list[tuple[str, str | None]] = []
    for region in regions:
        for _ in range(per_region):
            example = phonenumbers.example_number_for_type(region, rng.choice(TYPES)) or \
                phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            k = rng.randint(0, min(5, len(nsn)))
            nsn = nsn[:len(nsn) - k] + "".join(rng.choice("0123456789") for _ in range(k))
            if rng.random() < 0.1:
                nsn = nsn[:-1]
            elif rng.random() < 0.1:
                nsn += rng.choice("0123456789")
            e164 = f"+{example.country_code}{nsn}"
            default = rng.choice([region, region, rng.choice(regions), None])
            out.append((written(rng, e164), default))
    return out


def written(rng: random.Random, e164: str) -> str:
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    style = rng.random()
    if style < 0.3:
        return e164
    if style < 0.5:
        return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    if style < 0.75:
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    if style < 0.85:
        return "00" + e164[1:]
    if style < 0.9:
        return e164[1:]
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL).replace(" ", rng.choice("-./"))


def reference(value: str, region: str | None) -> Phone | None:
    """The plain phonenumbers answer (None when it rejects the number)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return Phone(phonenumbers.format_number(number, PhoneNumberFormat.E164),
                 phonenumbers.region_code_for_number(number) or "", "")


def test_the_column_path_agrees_with_phonenumbers_on_thousands_of_numbers_of_every_country() -> None:
    sample = generated_sample(seed=7, per_region=14)
    assert len(sample) > 3000
    values = [v for v, _ in sample]
    regions = [r or "" for _, r in sample]
    out = normalise_many(pa.array(values), pa.array(regions))
    got = list(zip(out.e164.to_pylist(), out.country.to_pylist(), out.reason.to_pylist(), strict=True))
    kept = 0
    for (value, region), (e164, country, reason) in zip(sample, got, strict=True):
        one = normalise(value, region)
        assert (e164, country, reason) == (one.e164, one.country, one.reason), (value, region)
        plain = reference(value, region)
        if plain is None:
            assert reason, (value, region)
        else:
            assert (e164, country) == (plain.e164, plain.country), (value, region)
            kept += 1
    assert kept > 1000
    assert out.fast > 0.6 * len(sample)


digits = st.text("0123456789", min_size=1, max_size=16)
separators = st.sampled_from(["", " ", "-", ".", "/", "(", ")"])


@st.composite
def typed_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["", "+", "00", "0", "+0", "(+", "++"]))
    parts = draw(st.lists(digits, min_size=1, max_size=4))
    return prefix + "".join(p + draw(separators) for p in parts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(typed_numbers(), st.sampled_from(["ES", "GB", "US", "FR", "IT", "AR", "MX", "DE", "RU",
                                                            "AU", "BR", "IN", "CN", ""])),
                min_size=1, max_size=40))
def test_the_column_path_equals_the_one_number_path_on_arbitrary_input(rows: list[tuple[str, str]]) -> None:
    out = normalise_many(pa.array([v for v, _ in rows]), pa.array([r for _, r in rows]))
    got = list(zip(out.e164.to_pylist(), out.country.to_pylist(), out.reason.to_pylist(), strict=True))
    assert got == [(p.e164, p.country, p.reason) for p in (normalise(v, r or None) for v, r in rows)]
