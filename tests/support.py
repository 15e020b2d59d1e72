"""Helpers shared by tests: waiting on conditions with a deadline, test reconcilers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context, Result

DEADLINE = 15.0


async def wait_until(
    predicate: Callable[[], Awaitable[Any]] | Callable[[], Any],
    *,
    timeout: float = DEADLINE,
    what: str = "condition",
) -> Any:
    """Re-check ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class RecordingReconciler:
    """Records every call; behaviour per key is scripted by ``script``."""

    def __init__(
        self,
        name: str = "test",
        *,
        keys: Iterable[str] = (),
        resync_interval: float = 3600.0,
        max_concurrency: int = 4,
        timeout: float = 10.0,
        script: Callable[[str, Context], Awaitable[Result]] | None = None,
    ) -> None:
        self.name = name
        self._keys = list(keys)
        self.resync_interval = resync_interval
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.script = script
        self.calls: list[str] = []
        self.changed = asyncio.Condition()

    async def keys(self, db: Database) -> AsyncIterator[str]:
        for key in self._keys:
            yield key

    async def reconcile(self, key: str, ctx: Context) -> Result:
        self.calls.append(key)
        async with self.changed:
            self.changed.notify_all()
        if self.script is not None:
            return await self.script(key, ctx)
        return Result()

    async def wait_for_calls(self, key: str, count: int = 1, timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: self.calls.count(key) >= count)


async def queue_row(db: Database, reconciler: str, key: str) -> Any:
    return await db.fetchrow(db.q.get_queue_row, reconciler, key)
