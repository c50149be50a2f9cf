"""Message texts: ``{column}`` templates filled per row, senders, and how Instasent will bill each text.

A template is plain text with ``{column}`` placeholders; ``{{`` and ``}}`` are literal braces. A
placeholder is only ever looked up as a column name (exactly, else ignoring case and accents):
nothing in it is evaluated, so ``{name.upper}`` or ``{x[0]}`` are simply unknown columns. A row
whose cell for a placeholder is missing or blank is rejected ("empty value for {code}") unless the
placeholder names a default after a bar: ``{name|cliente}`` fills in ``cliente``, ``{code|}`` sends
it blank on purpose. Filling a
column is vectorised over a whole chunk; so is counting parts (:func:`measure`), which agrees with
:func:`dispatcher.instasent.segments.count_segments` for every text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dispatcher.errors import InputError
from dispatcher.instasent.segments import GSM_BASIC, GSM_EXTENSION, GSM_LIMITS, UTF16_LIMITS, count_segments
from dispatcher.preflight import arrow
from dispatcher.preflight.fileformat import find_column

#: Sender length limits in characters (Instasent allows at most 11).
SENDER_MIN, SENDER_MAX = 1, 11

REASON_EMPTY_TEXT = "empty text"
#: Reject reason of a row with no value for a placeholder that has no default.
REASON_EMPTY_VALUE = "empty value for {{{name}}}"
REASON_NEEDS_UNICODE = "text needs Unicode (--gsm-only)"
REASON_BAD_SENDER = f"sender must be {SENDER_MIN}..{SENDER_MAX} characters"


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A ``{name}`` in a template; ``{name|default}`` has a ``default`` for rows without a value
    (``{name|}``: blank on purpose). Without one, such a row is a reject."""

    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed message template: literal strings and placeholders, in order."""

    pieces: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``.

        Raises:
            InputError: on an unclosed ``{``, a ``{`` inside a placeholder, or an empty ``{}``.
        """
        pieces: list[str | Placeholder] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if text.startswith("{{", i) or text.startswith("}}", i):
                literal.append(char)
                i += 2
                continue
            if char != "{":
                literal.append(char)
                i += 1
                continue
            end = text.find("}", i + 1)
            inner = text[i + 1:end] if end != -1 else ""
            if end == -1 or "{" in inner:
                raise InputError(f"the text has a {{ at character {i + 1} that is never closed; "
                                 "write {{ for a literal brace.")
            if not inner.strip():
                raise InputError("the text has an empty placeholder {}: put a column name inside, such as {name}.")
            if literal:
                pieces.append("".join(literal))
                literal = []
            name, bar, default = inner.partition("|")
            if not name.strip():
                raise InputError(f"the text has a placeholder {{{inner}}} without a column name: "
                                 f"write {{name|{default}}}.")
            pieces.append(Placeholder(name.strip(), default if bar else None))
            i = end + 1
        if literal:
            pieces.append("".join(literal))
        return cls(tuple(pieces))

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Placeholder names, in order of first use."""
        return tuple(dict.fromkeys(p.name for p in self.pieces if isinstance(p, Placeholder)))

    def bind(self, columns: Iterable[str]) -> dict[str, str]:
        """Map each placeholder to a column of the file.

        Raises:
            InputError: naming the first placeholder with no column and listing the columns.
        """
        columns = list(columns)
        mapping = {}
        for name in self.placeholders:
            column = find_column(columns, name)
            if column is None:
                hint = " (placeholders are plain column names)" if any(c in name for c in ".[]()!:") else ""
                raise InputError(f"the text uses {{{name}}} but the file has no such column{hint}; "
                                 f"its columns are: {', '.join(columns)}.")
            mapping[name] = column
        return mapping

    def render(self, table: pa.Table, mapping: dict[str, str]) -> pa.Array:
        """The text of every row of ``table`` (cells are trimmed, the result too)."""
        if not self.placeholders:
            fixed = "".join(p for p in self.pieces if isinstance(p, str)).strip()
            return arrow.repeat(fixed, table.num_rows)
        parts = [self._cells(table, mapping, p) if isinstance(p, Placeholder) else pa.scalar(p, pa.large_string())
                 for p in self.pieces]
        joined = pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))
        return arrow.combined(pc.utf8_trim_whitespace(joined))

    def missing_values(self, table: pa.Table, mapping: dict[str, str]) -> np.ndarray:
        """Per row, ``"empty value for {name}"`` for the first placeholder without a default whose
        cell is missing or blank, else ``""`` (an object array of reject reasons)."""
        reasons = np.full(table.num_rows, "", dtype=object)
        required = dict.fromkeys(p.name for p in self.pieces if isinstance(p, Placeholder) and p.default is None)
        for name in required:
            cells = pc.utf8_trim_whitespace(arrow.texts(table.column(mapping[name])))
            blank = arrow.as_numpy(pc.equal(pc.utf8_length(cells), 0)) & (reasons == "")
            reasons[blank] = REASON_EMPTY_VALUE.format(name=name)
        return reasons

    @staticmethod
    def _cells(table: pa.Table, mapping: dict[str, str], placeholder: Placeholder) -> pa.Array:
        cells = pc.utf8_trim_whitespace(arrow.texts(table.column(mapping[placeholder.name])))
        if placeholder.default is None:
            return cells
        blank = pc.equal(pc.utf8_length(cells), 0)
        return pc.if_else(blank, pa.scalar(placeholder.default.strip(), pa.large_string()), cells)


def column_texts(table: pa.Table, column: str) -> pa.Array:
    """The ``--text-column`` texts of every row, trimmed."""
    return arrow.combined(pc.utf8_trim_whitespace(arrow.large(table.column(column))))


# -- senders -------------------------------------------------------------------------------------


def check_sender(sender: str | None) -> str | None:
    """Validate ``--from``: 1..11 characters once trimmed (None stays None).

    Raises:
        InputError: when it is empty or longer than 11 characters.
    """
    if sender is None:
        return None
    value = sender.strip()
    if not SENDER_MIN <= len(value) <= SENDER_MAX:
        raise InputError(f"--from must be {SENDER_MIN}..{SENDER_MAX} characters, got {sender!r} ({len(value)}).")
    return value


def senders(table: pa.Table, column: str | None, default: str | None) -> tuple[pa.Array, np.ndarray]:
    """Each row's sender: its ``column`` cell when not blank, else ``default``.

    Returns ``(senders, bad)`` where ``bad`` marks rows whose sender is not 1..11 characters.
    """
    n = table.num_rows
    fallback = pa.scalar(default or "", pa.large_string())
    if column is None:
        values = pa.repeat(fallback, n)
    else:
        cells = arrow.combined(pc.utf8_trim_whitespace(arrow.large(table.column(column))))
        values = pc.if_else(pc.equal(cells, ""), fallback, cells)
    lengths = pc.utf8_length(values).to_numpy(zero_copy_only=False)
    return values, (lengths < SENDER_MIN) | (lengths > SENDER_MAX)


# -- billing -------------------------------------------------------------------------------------


def _char_class(chars: str, negate: bool = False) -> str:
    return "[" + ("^" if negate else "") + "".join(f"\\x{{{ord(c):04x}}}" for c in chars) + "]"


_NOT_GSM_RE2 = _char_class(GSM_BASIC + GSM_EXTENSION, negate=True)
_GSM_EXT_RE2 = _char_class(GSM_EXTENSION)
_ASTRAL_RE2 = "[\\x{10000}-\\x{10ffff}]"


@dataclass(frozen=True, slots=True)
class Measured:
    """Per text: SMS ``parts`` billed and whether it needs ``unicode`` (``allowUnicode``)."""

    parts: np.ndarray
    unicode: np.ndarray


def measure(texts: pa.Array) -> Measured:
    """Count parts and encoding for every text, as :func:`count_segments` does, vectorised."""
    n = len(texts)
    unicode = arrow.as_numpy(pc.match_substring_regex(texts, _NOT_GSM_RE2))
    doubles = np.zeros(n, dtype=np.int64)
    for mask, pattern in ((~unicode, _GSM_EXT_RE2), (unicode, _ASTRAL_RE2)):
        idx = np.flatnonzero(mask)
        if len(idx):
            doubles[idx] = arrow.as_numpy(pc.count_substring_regex(arrow.subset(texts, idx), pattern))
    return _measured(texts, unicode, doubles)


def _measured(texts: pa.Array, unicode: np.ndarray, doubles: np.ndarray) -> Measured:
    """Parts from the encoding and the double characters: arithmetic, except texts with doubles
    that need several parts, which :func:`count_segments` splits exactly (a double never straddles)."""
    lengths = arrow.as_numpy(pc.utf8_length(texts)).astype(np.int64) + doubles
    single = np.where(unicode, UTF16_LIMITS[0], GSM_LIMITS[0])
    multi = np.where(unicode, UTF16_LIMITS[1], GSM_LIMITS[1])
    parts = np.where(lengths <= single, 1, -(-lengths // multi))
    exact = np.flatnonzero((doubles > 0) & (lengths > single))
    if len(exact):
        for i, text in zip(exact, texts.take(pa.array(exact)).to_pylist(), strict=True):
            parts[i] = count_segments(text).parts
    return Measured(parts=parts.astype(np.int32), unicode=unicode.astype(bool))
