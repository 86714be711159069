"""Arrow columns from numpy arrays, without a Python object per row.

A month of synthetic usage is a million rows or more; building a Python
string or ``Decimal`` per row would cost more than everything else together.
So every column is written straight into Arrow's buffers: exact decimals from
integer units, ids from digit characters, repeated names as dictionaries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["decimal_array", "dictionary_labels", "prefixed_ids"]


def decimal_array(units: np.ndarray, precision: int, scale: int) -> pa.Array:
    """decimal128 values from non-negative integer units (value x 10**scale), without Python objects."""
    raw = np.empty((len(units), 2), dtype=np.int64)
    raw[:, 0], raw[:, 1] = units, 0
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(units), [None, pa.py_buffer(raw)])


def dictionary_labels(indices: np.ndarray, names: Sequence[str] | np.ndarray) -> pa.Array:
    """A dictionary-encoded string column: no Python string per row, and DuckDB reads it natively."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(list(names), pa.string()))


def _joined(prefixes: Sequence[str], numbers: np.ndarray) -> list[pa.Array]:
    """The general way, for what ``prefixed_ids`` does not handle itself: Arrow's cast and join."""
    return [pc.binary_join_element_wise(p, pc.cast(pa.array(numbers), pa.string()), "") for p in prefixes]


def prefixed_ids(prefixes: Sequence[str], numbers: np.ndarray) -> list[pa.Array]:
    """``prefix + str(number)`` for each prefix, as Arrow strings sharing one digit computation.

    Numbers (>= 0) come in long runs of equal digit count (serials, tenant by tenant): each run's
    strings are the rows of a byte matrix, written column by column from contiguous rows of digit
    characters (numpy copies a whole column in one step, where a row holds only a dozen bytes).
    This beats Arrow's int-to-string cast plus a join, and the digits are shared by the
    three ids of a reply.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers) == 0 or numbers.min() < 0:
        return _joined(prefixes, numbers)
    low, high = len(str(int(numbers.min()))), len(str(int(numbers.max())))
    width = np.full(len(numbers), low, np.int64)
    for k in range(low, high):  # only the powers of ten inside [min, max]
        width += numbers >= 10**k
    bounds = [0, *(np.flatnonzero(np.diff(width)) + 1).tolist(), len(numbers)] if high > low else [0, len(numbers)]
    small = numbers.astype(np.uint32) if numbers.max() < 2**32 else numbers  # 32-bit division is faster
    runs = []  # per run of equal width: its digit characters, one contiguous row per position
    for lo, hi in itertools.pairwise(bounds):
        digits, rest = np.empty((len(str(int(numbers[lo]))), hi - lo), np.uint8), small[lo:hi]
        for k in range(len(digits) - 1, -1, -1):
            quotient = rest // 10
            np.add(rest - quotient * 10, ord("0"), out=digits[k], casting="unsafe")
            rest = quotient
        runs.append(digits)
    out = []
    for prefix in prefixes:
        head = prefix.encode()
        blocks = []
        for digits in runs:
            block = np.empty((digits.shape[1], len(head) + len(digits)), np.uint8)
            for k, byte in enumerate(head):
                block[:, k] = byte
            for k, column in enumerate(digits, start=len(head)):
                block[:, k] = column
            blocks.append(block.reshape(-1))
        data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        if len(data) >= 2**31:  # beyond 32-bit offsets: let Arrow do it (and complain)
            return _joined(prefixes, numbers)
        if high == low:  # one width: evenly spaced offsets
            offsets = np.arange(0, len(data) + 1, len(head) + low, dtype=np.int32)
        else:
            offsets = np.zeros(len(numbers) + 1, np.int32)
            np.cumsum(width + len(head), out=offsets[1:])
        out.append(pa.Array.from_buffers(pa.string(), len(numbers), [None, pa.py_buffer(offsets), pa.py_buffer(data)]))
    return out
