"""Which idempotency keys might be in DuckDB, answered without asking DuckDB.

A DuckDB point query costs 1-2 ms here, so looking up every new
idempotency key in ``idempotency_records`` would cap keyed traffic near
600 requests a second, although nearly every key a client sends is new.
``KeyFilter`` holds a 64-bit hash of every (tenant, key) the table holds,
sorted in one NumPy array (8 bytes a key): a key whose hash is absent is
certainly not stored, and only a present hash (a stored key, or a rare
collision) costs the real query. The store adds the keys of each batch it
applies, so the filter always covers the whole table.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["KEY_HASH_SQL", "KeyFilter", "key_hash"]


KEY_HASH_SQL = "md5_number_lower(tenant_id || chr(31) || key)"  # the same bits as ``key_hash``, in DuckDB


def key_hash(tenant_id: str, key: str) -> int:
    """64 bits of the MD5 of (tenant, key) as a signed integer; DuckDB computes it as ``KEY_HASH_SQL``."""
    digest = hashlib.md5(f"{tenant_id}\x1f{key}".encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "little", signed=True)


class KeyFilter:
    """A sorted array of key hashes, plus recent additions not yet merged into it."""

    _MERGE_AT = 4096  # additions kept in a set before they are merged into the array

    def __init__(self, hashes: np.ndarray | None = None) -> None:
        """``hashes``: the stored keys' hashes (``KEY_HASH_SQL``, as unsigned or signed 64-bit integers)."""
        stored = np.zeros(0, dtype=np.int64) if hashes is None else np.asarray(hashes)
        self._sorted = np.unique(stored.astype(np.uint64, copy=False).view(np.int64))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, tenant_id: str, key: str) -> None:
        self._recent.add(key_hash(tenant_id, key))
        if len(self._recent) >= self._MERGE_AT:
            merged = np.concatenate([self._sorted, np.fromiter(self._recent, dtype=np.int64)])
            self._sorted = np.unique(merged)
            self._recent.clear()

    def might_contain(self, tenant_id: str, key: str) -> bool:
        """False only when (tenant, key) is certainly not among the keys added."""
        value = key_hash(tenant_id, key)
        if value in self._recent:
            return True
        index = int(np.searchsorted(self._sorted, value))
        return index < len(self._sorted) and int(self._sorted[index]) == value
