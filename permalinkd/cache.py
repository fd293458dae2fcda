"""A size-bounded LRU of permalinks already read (pure, no I/O).

Safe because a permalink never changes: its id is derived from its content
and a stored cell is never overwritten (permalinkd.store), so a cached
answer is the answer.  Bounded by the characters held, not the entry count,
since one cell can be 65,000 characters.  (A cell an operator deletes by hand
in Redis stays readable from a node's cache until evicted or restarted.)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class SizedLRU(Generic[V]):
    def __init__(self, max_size: int):
        self.max_size = max_size
        self.size = 0
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: V, size: int) -> None:
        if size > self.max_size:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self._items[key] = (value, size)
        self.size += size
        while self.size > self.max_size:
            _, (_, s) = self._items.popitem(last=False)
            self.size -= s

    def __len__(self) -> int:
        return len(self._items)
