"""Rejected rows kept on disk while a file streams through the preflight, so a list with a million
bad rows costs a temporary file, not a gigabyte of Python objects."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import orjson

from dispatcher.preflight.rejects import Reject

#: Rejects also kept in memory (the summary shows the first ones).
HEAD = 200


class RejectSpill(Sequence[Reject]):
    """An append-only list of rejects in a temporary file (deleted when closed or collected).

    Reading it (iterating, indexing past :data:`HEAD`) scans the file from the start.
    """

    def __init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="dispatcher-rejects-", suffix=".jsonl")  # noqa: SIM115
        self._head: list[Reject] = []
        self._count = 0

    def extend(self, rejects: Iterable[Reject]) -> None:
        """Append rejects (in row order)."""
        lines = []
        for reject in rejects:
            if len(self._head) < HEAD:
                self._head.append(reject)
            lines.append(orjson.dumps([reject.row, reject.value, reject.reason]))
        if lines:
            self._file.write(b"\n".join(lines) + b"\n")
            self._count += len(lines)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Reject]:
        if self._count <= len(self._head):
            yield from self._head
            return
        self._file.flush()
        with open(self._file.name, "rb") as reader:  # its own offset: appending may go on
            for _, line in zip(range(self._count), reader, strict=False):
                row, value, reason = orjson.loads(line)
                yield Reject(int(row), str(value), str(reason))

    @overload
    def __getitem__(self, index: int) -> Reject: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Reject]: ...

    def __getitem__(self, index: int | slice) -> Reject | Sequence[Reject]:
        if isinstance(index, slice):
            _, stop, _ = index.indices(self._count)
            if stop <= len(self._head):
                return self._head[index]
            return list(self)[index]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError(index)
        if position < len(self._head):
            return self._head[position]
        for i, reject in enumerate(self):
            if i == position:
                return reject
        raise IndexError(index)  # pragma: no cover - the count says otherwise

    def close(self) -> None:
        """Delete the file."""
        self._file.close()
