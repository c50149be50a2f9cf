"""The suppression lists: E.164 numbers that must never receive a message, each kept in a Redis set.

The global list (``dispatcher suppress``) applies to every campaign; each account has a list of its
own besides (its replies' STOPs, unless ``DISPATCHER_GLOBAL_OPTOUT``), which applies to that
account's campaigns only. The ``default`` account's own list is the global one (see
:meth:`dispatcher.keys.Keys.account_suppression`). One version counter grows with an addition to
any of them.

Numbers are stored exactly as :mod:`dispatcher.preflight.phones` writes them (``+34612345678``), so a number
suppressed in one format matches every other format of it. :meth:`SuppressionList.flags` answers
for a whole campaign at once: it reads the set when it is not larger than the campaign (one
``SSCAN`` pass), else asks ``SMISMEMBER`` in pipelined batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.preflight import arrow
from dispatcher.preflight.phones import Phone, normalise
from dispatcher.preflight.rejects import Reject

#: Members per SADD/SREM/SMISMEMBER command.
BATCH = 10_000


@dataclass(frozen=True, slots=True)
class SuppressionList:
    """The global suppression set of one key prefix or, with ``account``, that account's own.

    :meth:`add`, :meth:`remove`, :meth:`count`, :meth:`members` and ``in`` act on that one set;
    :meth:`flags` and :meth:`ask` answer for what the campaigns concerned respect: the global set
    and, with ``account``, that account's too.
    """

    redis: redis.Redis
    keys: Keys
    #: The account whose own list this is; None: the global list.
    account: str | None = None

    @property
    def key(self) -> str:
        """The Redis key of the set."""
        return self.keys.suppression() if self.account is None else self.keys.account_suppression(self.account)

    @property
    def _respected(self) -> list[str]:
        """The sets a campaign of this list's account respects (the global one first)."""
        return list(dict.fromkeys([self.keys.suppression(), self.key]))

    def add(self, numbers: Iterable[str]) -> int:
        """Add E.164 numbers; returns how many were not there yet. The list's :meth:`version` grows
        in the same transaction, so a batch never sees a new number under an old version."""
        return self._each_batch(numbers, "sadd")

    def version(self) -> int:
        """How many times numbers were added (0 for a list never added to)."""
        return int(self.redis.get(self.keys.suppression_version()) or 0)

    def remove(self, numbers: Iterable[str]) -> int:
        """Remove E.164 numbers; returns how many were there."""
        return self._each_batch(numbers, "srem")

    def count(self) -> int:
        """Numbers on the list."""
        return int(self.redis.scard(self.key))

    def __contains__(self, e164: object) -> bool:
        return isinstance(e164, str) and bool(self.redis.sismember(self.key, e164))

    def members(self) -> Iterator[str]:
        """Every number on the list, in no particular order (SSCAN: safe on a large set)."""
        for member in self.redis.sscan_iter(self.key, count=BATCH):
            yield member.decode() if isinstance(member, bytes) else str(member)

    def flags(self, numbers: Sequence[str] | pa.Array) -> np.ndarray:
        """For each number, True when it is suppressed (on the global list or the account's)."""
        values = numbers if isinstance(numbers, pa.Array) else pa.array(list(numbers), pa.large_string())
        out = np.zeros(len(values), dtype=bool)
        for key in self._respected:
            out |= self._flags_in(key, values)
        return out

    def _flags_in(self, key: str, values: pa.Array) -> np.ndarray:
        """For each number of ``values``, True when it is in the set ``key``."""
        if len(values) == 0:
            return np.zeros(0, dtype=bool)
        size = int(self.redis.scard(key))
        if size == 0:
            return np.zeros(len(values), dtype=bool)
        if size <= max(len(values), BATCH):
            members = (m.decode() if isinstance(m, bytes) else str(m) for m in self.redis.sscan_iter(key, count=BATCH))
            listed = pa.array(list(members), pa.large_string())
            found = pc.is_in(values.cast(pa.large_string()), value_set=listed)
            return arrow.as_numpy(found)
        return self._ask_in(key, values.to_pylist())

    def ask(self, numbers: list[str]) -> np.ndarray:
        """For each number, True when it is suppressed, asked with ``SMISMEMBER`` (one command per
        :data:`BATCH` numbers, pipelined): for a few numbers against a list of any size, such as a
        batch checked again just before it is sent (on the global list or the account's)."""
        out = np.zeros(len(numbers), dtype=bool)
        for key in self._respected:
            out |= self._ask_in(key, numbers)
        return out

    def _ask_in(self, key: str, numbers: list[str]) -> np.ndarray:
        """For each number, True when it is in the set ``key`` (``SMISMEMBER``, pipelined)."""
        out = np.zeros(len(numbers), dtype=bool)
        if not numbers:
            return out
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(numbers), BATCH):
            pipe.smismember(key, numbers[start:start + BATCH])
        position = 0
        for answer in pipe.execute():
            out[position:position + len(answer)] = np.asarray(answer, dtype=bool)
            position += len(answer)
        return out

    def _each_batch(self, numbers: Iterable[str], command: str) -> int:
        values = list(dict.fromkeys(numbers))
        if not values:
            return 0
        pipe = self.redis.pipeline(transaction=command == "sadd")
        for start in range(0, len(values), BATCH):
            getattr(pipe, command)(self.key, *values[start:start + BATCH])
        if command == "sadd":
            pipe.incr(self.keys.suppression_version())
            return int(sum(pipe.execute()[:-1]))
        return int(sum(pipe.execute()))


def to_e164(values: Iterable[str], region: str | None) -> list[str]:
    """Normalise numbers typed by a user (``suppress add``/``remove``); all must be valid.

    Raises:
        InputError: naming the first value that is not a valid mobile number, with the reason.
    """
    out = []
    for value in values:
        phone: Phone = normalise(value, region)
        if not phone.ok:
            raise InputError(f"{value!r} is not a number that can be suppressed: {phone.reason}.")
        out.append(phone.e164)
    return out


@dataclass(frozen=True, slots=True)
class Imported:
    """What :func:`import_numbers` did: valid numbers read, how many were new, rows skipped."""

    file: str
    valid: int
    added: int
    skipped: list[Reject]


def import_numbers(path: str | Path, suppression: SuppressionList, *, phone_column: str | None = None,
                   region: str | None = None) -> Imported:
    """Add every number of a recipient-style file to the suppression list.

    Numbers are read exactly as the preflight reads them (same phone and per-row country columns,
    same normalisation, ``region`` for rows without a country), so everything a preflight would
    send to can be opted out. Rows that are not such a number are skipped with their reason.

    Raises:
        InputError: when the file cannot be read, has no phone column or no data rows.
        FileNotFoundError, PermissionError: as ``open`` raises them.
    """
    from dispatcher.preflight import fileformat, loader  # the loader is heavy: only for an import
    from dispatcher.preflight.rows import NumberColumns, judge_numbers

    fmt = fileformat.sniff(path)
    columns = NumberColumns.of(fmt, phone_column, region)
    memo: dict[tuple[str, str | None], Phone] = {}

    def load(chunk: loader.Chunk) -> tuple[list[str], list[Reject]]:
        numbers = judge_numbers(chunk.table, columns, memo)
        bad = numbers.bad
        idx = np.flatnonzero(bad)
        values = numbers.raw.take(pa.array(idx)).to_pylist()
        skipped = list(chunk.problems) + [
            Reject(int(row), value, reason)
            for row, value, reason in zip(chunk.rows[idx].tolist(), values, numbers.reasons(idx), strict=True)]
        return numbers.phones.e164.filter(pa.array(~bad)).to_pylist(), skipped

    valid = added = 0
    skipped: list[Reject] = []
    for good, rejects in loader.scan(fmt, load):
        valid += len(good)
        added += suppression.add(good)
        skipped += rejects
    if valid == 0 and not skipped:
        raise InputError(f"{fmt.path.name} has no data rows, only a header.")
    skipped.sort(key=lambda r: r.row)
    return Imported(file=fmt.path.name, valid=valid, added=added, skipped=skipped)
