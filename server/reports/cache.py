"""A small in-process cache of rendered chart SVG.

Keys carry everything the picture depends on (session, participant, sample
count, newest receipt time, analysis config hash), so a hit is always
current. Only a speed-up: each worker fills its own, nothing depends on it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class LRU:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# Two timelines of ~170 kB per session: 64 entries stay under 12 MB.
svg_cache = LRU(64)
