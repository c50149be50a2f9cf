"""The schema's message columns are the ones the preflight hands on and a stored batch keeps."""

from __future__ import annotations

from dataclasses import fields

from dispatcher.schema.names import MESSAGE_COLUMNS, MESSAGE_FIELDS
from dispatcher.sending.payload import COLUMNS, BatchMessages


def test_a_stored_batch_keeps_every_message_column_under_its_schema_name_in_the_stored_order() -> None:
    assert [f.name for f in fields(BatchMessages) if f.name != "batch"] == list(MESSAGE_FIELDS)
    assert list(COLUMNS) == ["row", "to", "text", "sender", "parts", "unicode", "price", "country"]
    assert sorted(MESSAGE_COLUMNS) == sorted(MESSAGE_FIELDS)
    assert MESSAGE_COLUMNS[-1] == "price"
