"""Small pyarrow helpers the vectorised preflight steps share: one array out of a chunked column,
strings as ``large_string``, and Arrow masks and counts as numpy arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array: a chunked array's chunks joined (no copy when there is a single chunk)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def large(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``values`` cast to ``large_string`` (kept as they are when they already are), chunks kept."""
    return values.cast(pa.large_string()) if values.type != pa.large_string() else values


def large_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One ``large_string`` array of ``values``."""
    return large(combined(values))


def texts(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One ``large_string`` array of ``values`` with nulls read as empty strings."""
    return pc.fill_null(large_strings(values), "")


def repeat(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times, as a ``large_string`` array."""
    return pa.repeat(pa.scalar(value, pa.large_string()), n)


def subset(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values.take(idx)``, without copying when ``idx`` is every row in order."""
    # First and last alone are not enough: a permutation such as [0, 2, 1, 3] must be taken.
    if len(idx) == len(values) and np.array_equal(idx, np.arange(len(idx))):
        return values
    return values.take(pa.array(idx))


def as_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean or integer Arrow array as numpy (nulls read as False/0)."""
    values = combined(values)
    if values.null_count:
        values = pc.fill_null(values, False if pa.types.is_boolean(values.type) else 0)
    return np.asarray(values.to_numpy(zero_copy_only=False))
