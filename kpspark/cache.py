"""One bounded per-process cache for everything an executor's Python worker loads once and reuses: ONNX scorers
and embedders, judge backends, downloaded model folders, index shards, verified exports.

A Python worker runs many tasks; loading a model per task would cost more than the task. Each cache is an LRU of
at most ``size`` entries (``KPSPARK_CACHE_SIZE``, default 8, or the cache's own setting), guarded by a lock, and
calls ``on_evict(value)`` for what it drops (a shard deletes its downloaded files).

>>> c = ProcessCache("demo", size=2)
>>> [c.get(k, lambda k=k: k * 10) for k in (1, 2, 1, 3)]
[10, 20, 10, 30]
>>> sorted(c.keys())
[1, 3]
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

DEFAULT_SIZE = 8


class ProcessCache:
    """A named, bounded, thread-safe LRU cache living as long as the process (see the module doc)."""

    def __init__(self, name: str, size: int | None = None, on_evict: Callable[[Any], None] | None = None) -> None:
        self.name, self.on_evict = name, on_evict
        self.size = size if size is not None else int(os.environ.get("KPSPARK_CACHE_SIZE", DEFAULT_SIZE))
        self.loads = 0  # values created by this process (tests read it)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable, factory: Callable[[], Any], size: int | None = None) -> Any:
        """The cached value of ``key``, created by ``factory()`` on a miss (``size``: this call's bound)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = factory()
            self.loads += 1
            self._items[key] = value
            bound = max(1, self.size if size is None else size)
            while len(self._items) > bound:
                _, old = self._items.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(old)
            return value

    def keys(self) -> list[Hashable]:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        """Drop everything (``on_evict`` for each value)."""
        with self._lock:
            while self._items:
                _, old = self._items.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(old)
