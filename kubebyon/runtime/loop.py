"""The claim loop shared by reconcilers and job workers.

Claim up to the free concurrency slots, run each item as a guarded task, extend the
leases of running items on a heartbeat (cancelling work whose lease was lost), and
sleep until woken (NOTIFY, a finished item) or until the next item is due.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import structlog


class ClaimLoop(ABC):
    name: str
    max_concurrency: int

    def __init__(self, *, lease_seconds: float, idle_poll_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.last_tick = time.monotonic()
        self._kick = asyncio.Event()
        self._claiming = True
        self._lost: set[str] = set()
        self.log = structlog.get_logger(f"kubebyon.runtime.{self.name}")

    # --- what a subclass provides -------------------------------------------------
    @abstractmethod
    async def claim(self, limit: int) -> Sequence[Any]:
        """Claim up to ``limit`` items; each has a ``key`` attribute or item."""

    @abstractmethod
    async def extend(self, keys: list[str]) -> set[str]:
        """Extend leases; return the keys still held."""

    @abstractmethod
    async def process(self, item: Any) -> None:
        """Run one claimed item to completion and record the outcome."""

    @abstractmethod
    async def next_due_in(self) -> float | None:
        """Seconds until the next item is due, if known."""

    @staticmethod
    @abstractmethod
    def key_of(item: Any) -> str: ...

    # --- the loop ------------------------------------------------------------------
    def wake(self) -> None:
        self._kick.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._kick.set()

    def lost_lease(self, key: str) -> bool:
        return key in self._lost

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.name}-heartbeat")
        failures = 0
        try:
            while self._claiming:
                self.last_tick = time.monotonic()
                self._kick.clear()
                delay = self.idle_poll_seconds
                try:
                    free = self.max_concurrency - len(self.inflight)
                    if free > 0:
                        items = await self.claim(free)
                        for item in items:
                            self._start(item)
                        if len(items) < free:
                            nxt = await self.next_due_in()
                            if nxt is not None:
                                delay = min(delay, max(nxt, 0.01))
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the loop must survive a DB outage
                    failures += 1
                    delay = min(0.2 * 2**failures, 10.0)
                    self.log.warning("claim failed", error=str(exc), retry_in=delay)
                if not self._claiming:
                    break
                try:
                    async with asyncio.timeout(delay):
                        await self._kick.wait()
                except TimeoutError:
                    pass
        finally:
            heartbeat.cancel()

    def _start(self, item: Any) -> None:
        key = self.key_of(item)
        if key in self.inflight:
            return  # our own lease lapsed and we re-claimed it: never run a key twice
        self._lost.discard(key)
        task = asyncio.create_task(self._guarded(key, item), name=f"{self.name}:{key}")
        self.inflight[key] = task

    async def _guarded(self, key: str, item: Any) -> None:
        try:
            await self.process(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("unhandled error while recording an outcome", key=key)
        finally:
            self.inflight.pop(key, None)
            self._kick.set()

    async def _heartbeat(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            keys = list(self.inflight)
            if not keys:
                continue
            try:
                held = await self.extend(keys)
            except Exception as exc:  # noqa: BLE001 - retried at the next beat
                self.log.warning("lease heartbeat failed", error=str(exc))
                continue
            for key in set(keys) - held:
                task = self.inflight.get(key)
                if task is not None and not task.done():
                    self._lost.add(key)
                    self.on_lease_lost(key)
                    task.cancel()

    @abstractmethod
    async def release(self) -> None:
        """Give back, due now, whatever this loop still holds (graceful shutdown)."""

    def on_lease_lost(self, key: str) -> None:
        self.log.warning("lease lost; cancelling work", key=key)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight work, then cancel what is left."""
        tasks = list(self.inflight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
