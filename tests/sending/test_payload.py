"""The stored form of a batch's messages: compact, and the first form still read."""

from __future__ import annotations

import zlib

import orjson

from dispatcher.sending import payload


def columns(n: int) -> dict[str, list[object]]:
    return {"row": [2 + i + i // 3 for i in range(n)], "to": [f"+3460000{i:04d}" for i in range(n)],
            "text": [f"Hola {i} ñ€" for i in range(n)], "sender": ["ACME"] * n, "parts": [1 + i % 2 for i in range(n)],
            "unicode": [i % 2 == 1 for i in range(n)], "price": [0.045 if i % 3 else 0.05 for i in range(n)],
            "country": ["ES" if i % 3 else "PT" for i in range(n)]}


def test_a_batch_reads_back_exactly_as_it_was_stored() -> None:
    for n in (0, 1, 100):
        stored = columns(n)
        messages = payload.decode(payload.encode(stored), 7)
        assert {name: getattr(messages, name) for name in payload.COLUMNS} == stored
        assert messages.batch == 7
        assert all(type(a) is type(b)
                   for name in payload.COLUMNS for a, b in zip(getattr(messages, name), stored[name], strict=True))


def test_repeating_columns_are_stored_once_per_combination() -> None:
    stored = orjson.loads(zlib.decompress(payload.encode(columns(100))))
    assert stored[0] == 2 and len(stored[4]) == 4 and len(stored[5]) == 100  # (parts, unicode) x (price, country)
    assert set(stored[1][1:]) <= {1, 2}  # rows as differences


def test_a_batch_stored_in_the_first_form_still_reads() -> None:
    stored = columns(5)
    first = zlib.compress(orjson.dumps([stored[name] for name in payload.COLUMNS]))
    assert payload.decode(first, 0).to == stored["to"]
