"""The uplink's outbox: what is waiting, what is in flight, what is settled.

Kept apart from the network code so the bookkeeping that makes delivery
exactly-once (together with the server's (participant, seq) key) can be read
on its own. Everything here runs on one event loop; nothing is locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("bondline.uplink")


@dataclass
class Item:
    kind: str  # "sample" | "event"
    body: dict[str, Any]
    # Set after a batch holding this item was refused: it then travels alone,
    # so one bad sample cannot take good ones down with it.
    isolate: bool = False


@dataclass
class Batch:
    id: int
    items: list[Item]

    def message(self, schema: str) -> dict[str, Any]:
        return {
            "type": "samples",
            "schema": schema,
            "batch": self.id,
            "samples": [i.body for i in self.items if i.kind == "sample"],
            "events": [i.body for i in self.items if i.kind == "event"],
        }


@dataclass
class OutboxStats:
    submitted: int = 0
    acked: int = 0
    duplicates: int = 0
    dropped: int = 0  # pushed out of a full queue while offline
    rejected: int = 0  # refused by the server as invalid, alone in its batch
    batches_sent: int = 0
    resent: int = 0


@dataclass
class Outbox:
    max_queue: int
    batch_max: int
    max_events: int = 200
    pending: deque[Item] = field(default_factory=deque)
    inflight: dict[int, Batch] = field(default_factory=dict)
    stats: OutboxStats = field(default_factory=OutboxStats)
    next_batch: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def outstanding(self) -> int:
        return len(self.pending) + sum(len(b.items) for b in self.inflight.values())

    def add(self, item: Item) -> None:
        if self.outstanding >= self.max_queue:
            victim = self._oldest_pending()
            if victim is None:
                # Everything is in flight: the new item is the one that cannot fit.
                self.stats.dropped += 1
                self._warn_dropped()
                return
            self.pending.remove(victim)
            self.stats.dropped += 1
            self._warn_dropped()
        self.pending.append(item)
        self.stats.submitted += 1
        self.changed.set()

    def _oldest_pending(self) -> Item | None:
        for item in self.pending:
            if item.kind == "sample":
                return item
        return self.pending[0] if self.pending else None

    def _warn_dropped(self) -> None:
        n = self.stats.dropped
        if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: visible without flooding the log
            log.warning("uplink queue full (%d items): %d oldest items dropped so far", self.max_queue, n)

    def ready(self) -> bool:
        """Whether a batch could be made now."""
        return any(self._sendable(i) for i in self.pending)

    @staticmethod
    def _sendable(item: Item) -> bool:
        # A sample submitted before the first welcome has no seq yet and waits.
        return item.kind == "event" or "seq" in item.body

    def take_batch(self, limit: int | None = None) -> Batch | None:
        limit = min(limit or self.batch_max, self.batch_max)
        chosen: list[Item] = []
        events = 0
        keep: deque[Item] = deque()
        while self.pending:
            item = self.pending.popleft()
            if not self._sendable(item):
                keep.append(item)
                continue
            if item.isolate and chosen:
                keep.append(item)
                break
            if item.kind == "event":
                if events >= self.max_events:
                    keep.append(item)
                    break
                events += 1
            chosen.append(item)
            if item.isolate or sum(1 for i in chosen if i.kind == "sample") >= limit:
                break
        keep.extend(self.pending)
        self.pending = keep
        if not chosen:
            return None
        batch = Batch(self.next_batch, chosen)
        self.next_batch += 1
        self.inflight[batch.id] = batch
        self.stats.batches_sent += 1
        return batch

    def ack(self, batch_id: int | None, duplicates: int = 0) -> bool:
        batch = self.inflight.pop(batch_id, None) if batch_id is not None else None
        if batch is None:
            return False
        self.stats.acked += len(batch.items)
        self.stats.duplicates += duplicates
        self.changed.set()
        return True

    def requeue_inflight(self) -> int:
        """Put every unacknowledged item back at the front, oldest first."""
        items = [i for b in sorted(self.inflight.values(), key=lambda b: b.id) for i in b.items]
        self.inflight.clear()
        self.pending.extendleft(reversed(items))
        self.stats.resent += len(items)
        if items:
            self.changed.set()
        return len(items)

    def refuse_oldest(self, reason: str) -> None:
        """The server refused the oldest unacknowledged batch as bad input.

        A batch of several items is split up and resent item by item; an item
        refused on its own is dropped and counted, as resending it would only
        be refused again."""
        if not self.inflight:
            return
        oldest = min(self.inflight)
        batch = self.inflight.pop(oldest)
        if len(batch.items) == 1:
            self.stats.rejected += 1
            body = batch.items[0].body
            log.error("server refused %s %s: %s; dropped", batch.items[0].kind,
                      body.get("seq", body.get("key")), reason)
        else:
            for item in batch.items:
                item.isolate = True
            log.warning("server refused a batch of %d items (%s); resending them one by one",
                        len(batch.items), reason)
            self.pending.extendleft(reversed(batch.items))
        self.changed.set()

    def assign_seqs(self, start: int) -> int:
        """Number samples submitted without a seq; returns the next free seq."""
        nxt = start
        for item in self.pending:
            if item.kind == "sample" and "seq" not in item.body:
                item.body["seq"] = nxt
                nxt += 1
        return nxt

    def drain_all(self) -> list[Item]:
        items = [i for b in sorted(self.inflight.values(), key=lambda b: b.id) for i in b.items]
        items.extend(self.pending)
        self.inflight.clear()
        self.pending.clear()
        return items
