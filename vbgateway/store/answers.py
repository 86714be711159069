"""Answers of read queries, kept until the database next changes.

A dashboard asks the same rollup again and again (every tile, every
refresh, every browser tab), and between two applied batches the answer
cannot change. So an answer is kept with the store's write count
(``DuckHandle.version``) at which it was computed, and used only while that
count still holds. Committed records not yet applied are applied first,
exactly as an uncached read would (they bump the count), so a cached answer
never misses a reply the caller was told about.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .database import Store

__all__ = ["MAX_ANSWERS", "AnswerCache"]

MAX_ANSWERS = 1024  # distinct questions kept between two writes; beyond it the cache starts afresh
T = TypeVar("T")


class AnswerCache:
    """Answers keyed by their question, each valid while the store's write count is unchanged."""

    def __init__(self, store: Store, *, max_entries: int = MAX_ANSWERS) -> None:
        self._store = weakref.ref(store)  # no cycle: an unreferenced store is still closed at once
        self._max = max_entries
        self._answers: dict[Hashable, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer to ``key``: kept if nothing was written since it was computed, else ``compute()``."""
        store = self._store()
        if store is None:
            return compute()
        if store.pending_records:
            store.flush()  # committed replies count, as in any read: applying them changes the version
        version = store.data_version
        kept = self._answers.get(key)
        if kept is not None and kept[0] == version:
            self.hits += 1
            return kept[1]  # type: ignore[no-any-return]
        self.misses += 1
        value = compute()
        with self._lock:
            if len(self._answers) >= self._max:
                self._answers = {k: v for k, v in self._answers.items() if v[0] == store.data_version}
                if len(self._answers) >= self._max:
                    self._answers.clear()
            self._answers[key] = (version, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
