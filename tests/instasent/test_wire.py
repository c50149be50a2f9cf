"""Reading bulk answers: the fast decoder of the usual answer agrees with the general reader on every shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent import wire

OURS = [f"c1-0-{i}" for i in range(5)]


def both(body: Any) -> tuple[Any, Any]:
    content = orjson.dumps(body)
    return wire.bulk_ids_json(content, OURS), wire.bulk_ids(orjson.loads(content), OURS)


def test_the_usual_answer_gives_the_id_of_every_accepted_client_id() -> None:
    body = {"entities": [{"id": f"{i:024x}", "clientId": cid, "text": "Hola ☃", "parts": 1, "price": 0.05}
                         for i, cid in enumerate(OURS)], "errors": []}
    fast, general = both(body)
    assert fast == general
    assert fast.accepted == {cid: f"{i:024x}" for i, cid in enumerate(OURS)}


@pytest.mark.parametrize("body", [
    {"entities": [{"id": "a", "clientId": "c1-0-0"}], "errors": [{"index": 1, "clientId": "c1-0-1",
                                                                   "errors": {"to": ["invalid"]}}]},
    {"entities": [{"id": "a", "clientId": "somebody-else"}]},
    {"entities": [{"id": "a"}, {"id": "b", "clientId": None}]},
    {"entities": [{"id": 7, "clientId": "c1-0-0"}, {"id": None, "clientId": "c1-0-1"}]},
    {"entities": [{"id": 1.5, "clientId": "c1-0-0"}, "not an object", 3]},
    {"entities": [{"id": "a", "clientId": True}]},
    {"entities": None, "errors": None},
    {"entities": [], "errors": [{"clientId": "c1-0-2", "errors": {"clientId": ["already used"]}}, "junk"]},
    {},
], ids=["errors", "not-ours", "no-client-id", "odd-ids", "non-objects", "bool-client-id", "nulls",
        "already-used", "empty-object"])
def test_every_other_answer_reads_the_same_as_through_the_general_reader(body: dict[str, Any]) -> None:
    fast, general = both(body)
    assert fast == general


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'"text"'])
def test_an_answer_that_is_not_a_json_object_is_an_unknown_outcome(content: bytes) -> None:
    with pytest.raises(OutcomeUnknown):
        wire.bulk_ids_json(content, OURS)


def test_an_empty_answer_accepts_nothing() -> None:
    result = wire.bulk_ids_json(b"", OURS)
    assert not result.accepted and not result.rejected and not result.unmatched


_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                    st.text(max_size=8), st.sampled_from(OURS))
_entities = st.one_of(st.fixed_dictionaries({}, optional={"id": _values, "clientId": _values, "text": st.text()}),
                      _values)


@settings(max_examples=300, deadline=None)
@given(entities=st.lists(_entities, max_size=6),
       errors=st.one_of(st.none(), st.lists(st.fixed_dictionaries({"index": st.integers(-1, 6),
                                                                    "clientId": _values}), max_size=2)))
def test_any_answer_reads_the_same_through_both_readers(entities: list[Any], errors: list[Any] | None) -> None:
    fast, general = both({"entities": entities, "errors": errors})
    assert fast == general
