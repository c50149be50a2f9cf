"""Message texts: templates filled per row without evaluating anything, senders, and billing."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.errors import InputError
from dispatcher.instasent.segments import GSM_BASIC, GSM_EXTENSION, count_segments
from dispatcher.preflight.render import Placeholder, Template, check_sender, column_texts, measure, senders

TABLE = pa.table({"name": ["Ana ", " José", ""], "Código": ["A1", "B2", "C3"], "from": ["", "Shop2", "TooLongSender1"]})


def test_placeholders_are_filled_per_row_with_trimmed_cells() -> None:
    template = Template.parse("Hola {name}, tu código {código}.")
    mapping = template.bind(TABLE.column_names)
    assert mapping == {"name": "name", "código": "Código"}
    assert template.render(TABLE, mapping).to_pylist() == [
        "Hola Ana, tu código A1.", "Hola José, tu código B2.", "Hola , tu código C3."]


def test_double_braces_are_literal_braces() -> None:
    template = Template.parse("{{name}} is {name} }} {{")
    assert template.pieces == ("{name} is ", Placeholder("name"), " } {")
    assert template.render(TABLE, template.bind(TABLE.column_names)).to_pylist()[0] == "{name} is Ana } {"


def test_a_text_without_placeholders_is_the_same_for_every_row() -> None:
    template = Template.parse("  Sale today  ")
    assert template.render(TABLE, {}).to_pylist() == ["Sale today"] * 3


def test_a_placeholder_naming_a_missing_column_lists_the_columns() -> None:
    with pytest.raises(InputError, match=r"uses \{surname\} but the file has no such column; "
                                         r"its columns are: name, Código, from\."):
        Template.parse("Hi {surname}").bind(TABLE.column_names)


@pytest.mark.parametrize("text", ["{name.__class__}", "{name[0]}", "{name!r}", "{__import__('os')}",
                                  "{name:>10}"])
def test_placeholders_never_reach_attributes_indexes_or_code(text: str) -> None:
    with pytest.raises(InputError, match="placeholders are plain column names"):
        Template.parse(text).bind(TABLE.column_names)


@pytest.mark.parametrize(("text", "message"), [
    ("Hello {name", "never closed"), ("Hello {na{me}", "never closed"), ("Hello {}", "empty placeholder"),
    ("Hello { }", "empty placeholder"),
])
def test_broken_templates_are_refused_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Template.parse(text)


def test_a_text_column_is_taken_as_is_but_trimmed() -> None:
    table = pa.table({"msg": ["  hello ", "", "a\nb"]})
    assert column_texts(table, "msg").to_pylist() == ["hello", "", "a\nb"]


def test_a_row_sender_wins_over_the_default_and_is_checked() -> None:
    values, bad = senders(TABLE, "from", "Shop")
    assert values.to_pylist() == ["Shop", "Shop2", "TooLongSender1"]
    assert bad.tolist() == [False, False, True]
    values, bad = senders(TABLE, "from", None)
    assert bad.tolist() == [True, False, True]
    values, bad = senders(TABLE, None, "Shop")
    assert values.to_pylist() == ["Shop"] * 3 and not bad.any()


def test_the_from_option_must_be_1_to_11_characters() -> None:
    assert check_sender(" Shop ") == "Shop"
    assert check_sender(None) is None
    for bad in ("", "   ", "TwelveChars!"):
        with pytest.raises(InputError, match=r"--from must be 1\.\.11 characters"):
            check_sender(bad)


def test_parts_and_encoding_follow_the_published_limits() -> None:
    texts = ["a" * 160, "a" * 161, "€" * 80, "€" * 81, "ж" * 70, "ж" * 71, "😀" * 35, "😀" * 36, "", "x€" * 60,
             "[" * 77 + "a", "a" * 306, "a" * 307]
    measured = measure(pa.array(texts, pa.large_string()))
    assert measured.parts.tolist() == [count_segments(t).parts for t in texts]
    assert measured.parts.tolist()[:8] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert measured.unicode.tolist() == [count_segments(t).needs_unicode for t in texts]


alphabet = st.sampled_from(list(GSM_BASIC) + list(GSM_EXTENSION) + ["ж", "ó", "😀", "中", "\u00a0"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet, max_size=400), min_size=1, max_size=20))
def test_vectorised_counting_agrees_with_count_segments(texts: list[str]) -> None:
    measured = measure(pa.array(texts, pa.large_string()))
    expected = [count_segments(t) for t in texts]
    assert measured.parts.tolist() == [s.parts for s in expected]
    assert measured.unicode.tolist() == [s.needs_unicode for s in expected]


def test_a_row_with_a_missing_or_blank_placeholder_value_is_named_per_placeholder() -> None:
    table = pa.table({"name": ["Ana", "  ", "Eve", None], "code": ["A1", "B2", "", "D4"]})
    template = Template.parse("Hola {name}, code {code}")
    assert template.missing_values(table, template.bind(table.column_names)).tolist() == [
        "", "empty value for {name}", "empty value for {code}", "empty value for {name}"]


def test_a_default_fills_a_blank_value_and_an_empty_default_allows_it() -> None:
    table = pa.table({"name": ["Ana", " ", None], "code": ["A1", "", "C3"]})
    template = Template.parse("Hola {name|cliente}, code {code|}")
    assert template.pieces[1] == Placeholder("name", "cliente") and template.pieces[3] == Placeholder("code", "")
    mapping = template.bind(table.column_names)
    assert mapping == {"name": "name", "code": "code"}
    assert template.missing_values(table, mapping).tolist() == ["", "", ""]
    assert template.render(table, mapping).to_pylist() == ["Hola Ana, code A1", "Hola cliente, code",
                                                           "Hola cliente, code C3"]


def test_a_default_without_a_column_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="without a column name"):
        Template.parse("Hola {|cliente}")
