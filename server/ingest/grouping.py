"""The shape the ingest writer and the token resolver share: requests queue
on the event loop, one task drains whatever has gathered, and the blocking
store work for the whole group runs on one dedicated thread.

Why groups: every database call releases Python's GIL, and while the event
loop is busy the calling thread waits up to the 5 ms switch interval to get
it back. Per-request calls therefore cost milliseconds each under load;
per-group calls do not (docs/performance.md, "Telemetry ingest").
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")


class GroupedWorker(Generic[Item]):
    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: asyncio.Queue[Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def _submit(self, item: Item) -> None:
        assert self._queue is not None, f"{self._name} not started"
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        raise NotImplementedError
