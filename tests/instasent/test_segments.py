"""SMS part counting: encodings, every part boundary, double characters that never straddle parts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.instasent.segments import GSM_BASIC, GSM_EXTENSION, count_segments, is_gsm

EXTENSION_CHARS = "\f^{}\\[~]|€"
EMOJI = "😀"  # U+1F600: a surrogate pair in UTF-16
CYRILLIC = "ж"  # in the BMP, outside GSM 03.38


def reference_parts(text: str) -> int:
    """Split ``text`` greedily into parts, written from the published rules and nothing else.

    GSM-7: 160 septets in one part, else 153 per part; ``\\f ^ { } \\ [ ~ ] | €`` take 2 septets.
    Anything else makes the text UTF-16: 70 units in one part, else 67; astral code points take 2.
    A 2-unit character goes whole into the next part when it does not fit in the current one.
    """
    gsm = all(c in GSM_BASIC or c in EXTENSION_CHARS for c in text)
    if gsm:
        sizes = [2 if c in EXTENSION_CHARS else 1 for c in text]
        single, multi = 160, 153
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, multi = 70, 67
    if sum(sizes) <= single:
        return 1
    chunks: list[list[int]] = [[]]
    for size in sizes:
        if sum(chunks[-1]) + size > multi:
            chunks.append([])
        chunks[-1].append(size)
    return len(chunks)


def test_the_extension_table_is_the_one_instasent_documents() -> None:
    assert set(GSM_EXTENSION) == set(EXTENSION_CHARS)
    assert len(GSM_BASIC) == len(set(GSM_BASIC)) == 127


def test_an_empty_text_is_one_gsm_part_of_length_zero() -> None:
    seg = count_segments("")
    assert (seg.encoding, seg.length, seg.parts, seg.per_part) == ("GSM_7BIT", 0, 1, 160)
    assert not seg.needs_unicode


@pytest.mark.parametrize(
    ("length", "parts", "per_part"),
    [(1, 1, 160), (160, 1, 160), (161, 2, 153), (306, 2, 153), (307, 3, 153), (459, 3, 153), (460, 4, 153)],
)
def test_plain_gsm_text_changes_part_count_exactly_at_each_boundary(length: int, parts: int, per_part: int) -> None:
    seg = count_segments("a" * length)
    assert seg.encoding == "GSM_7BIT"
    assert (seg.length, seg.parts, seg.per_part) == (length, parts, per_part)


@pytest.mark.parametrize(
    ("length", "parts", "per_part"),
    [(1, 1, 70), (70, 1, 70), (71, 2, 67), (134, 2, 67), (135, 3, 67), (201, 3, 67), (202, 4, 67)],
)
def test_utf16_text_changes_part_count_exactly_at_each_boundary(length: int, parts: int, per_part: int) -> None:
    seg = count_segments(CYRILLIC * length)
    assert seg.encoding == "UTF16"
    assert seg.needs_unicode
    assert (seg.length, seg.parts, seg.per_part) == (length, parts, per_part)


@pytest.mark.parametrize("char", list(EXTENSION_CHARS))
def test_every_extension_character_counts_two_and_marks_the_text_gsm_7bit_ex(char: str) -> None:
    seg = count_segments("ab" + char)
    assert (seg.encoding, seg.length, seg.parts) == ("GSM_7BIT_EX", 4, 1)
    assert not seg.needs_unicode
    assert is_gsm(char)


def test_eighty_euro_signs_fill_one_part_and_eighty_one_need_two() -> None:
    assert (count_segments("€" * 80).length, count_segments("€" * 80).parts) == (160, 1)
    assert (count_segments("€" * 81).length, count_segments("€" * 81).parts) == (162, 2)


def test_an_escape_pair_never_straddles_two_parts() -> None:
    # 152 plain characters leave one septet in the first 153-septet part: the € (2 septets) moves to
    # the second part, which then holds € + 151 characters; the last character needs a third part.
    text = "a" * 152 + "€" + "b" * 152
    seg = count_segments(text)
    assert seg.length == 306  # ceil(306 / 153) would say 2
    assert seg.parts == 3
    assert reference_parts(text) == 3


def test_an_escape_pair_that_fits_exactly_does_not_add_a_part() -> None:
    text = "a" * 151 + "€" + "b" * 153  # 153 + 153
    assert count_segments(text).parts == 2


def test_a_text_full_of_euro_signs_needs_one_part_more_than_the_length_suggests() -> None:
    # 153 is odd, so each concatenated part holds 76 € (152 septets) and wastes one septet.
    text = "€" * 153  # 306 septets: ceil(306 / 153) = 2, greedy: 76 + 76 + 1
    seg = count_segments(text)
    assert (seg.length, seg.parts) == (306, 3)


def test_any_character_outside_gsm_switches_the_whole_text_to_utf16() -> None:
    text = "a" * 100 + CYRILLIC
    seg = count_segments(text)
    assert seg.encoding == "UTF16"
    assert seg.length == 101
    assert seg.parts == 2
    assert not is_gsm(text)
    # An extension character counts 1 once the text is UTF-16.
    assert count_segments("€" + CYRILLIC).length == 2


def test_an_emoji_counts_two_utf16_units() -> None:
    assert (count_segments(EMOJI).encoding, count_segments(EMOJI).length) == ("UTF16", 2)
    assert (count_segments(EMOJI * 35).length, count_segments(EMOJI * 35).parts) == (70, 1)
    assert (count_segments(EMOJI * 36).length, count_segments(EMOJI * 36).parts) == (72, 2)


def test_an_emoji_never_straddles_two_parts() -> None:
    text = CYRILLIC * 66 + EMOJI + CYRILLIC * 66  # 134 units, yet the emoji cannot split 66 | 1+1
    seg = count_segments(text)
    assert seg.length == 134
    assert seg.parts == 3
    assert reference_parts(text) == 3


def test_bmp_characters_outside_gsm_count_one_unit() -> None:
    assert count_segments("ñ").encoding == "GSM_7BIT"  # ñ is in the GSM basic table
    assert count_segments("ç").encoding == "UTF16"  # only the capital Ç is
    assert count_segments("中文").length == 2


ALPHABET = "aZ0 @£\nÑ" + EXTENSION_CHARS + CYRILLIC + "中" + EMOJI + "🎉"
TEXTS = st.one_of(
    st.text(alphabet="ab€{", max_size=700),
    st.text(alphabet=st.sampled_from(list(GSM_BASIC + EXTENSION_CHARS)), max_size=700),
    st.text(alphabet=st.sampled_from(list(ALPHABET)), max_size=400),
    st.text(alphabet=st.sampled_from([CYRILLIC, EMOJI, "x"]), max_size=400),
)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_parts_always_equal_a_reference_greedy_split(text: str) -> None:
    seg = count_segments(text)
    assert seg.parts == reference_parts(text)
    gsm = all(c in GSM_BASIC or c in EXTENSION_CHARS for c in text)
    assert seg.encoding == ("UTF16" if not gsm else "GSM_7BIT_EX" if any(c in EXTENSION_CHARS for c in text)
                            else "GSM_7BIT")
    expected_length = (sum(2 if c in EXTENSION_CHARS else 1 for c in text) if gsm
                       else len(text.encode("utf-16-le")) // 2)
    assert seg.length == expected_length
    assert seg.parts * seg.per_part >= seg.length
