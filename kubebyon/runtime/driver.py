"""The driver: runs every registered reconciler on the reconcile queue.

Per reconciler: a claim loop (leases, heartbeats, concurrency bound, timeout, backoff),
and a resync task that makes sure every key that should exist has a queue row.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from kubebyon import metrics
from kubebyon.db.database import Database
from kubebyon.runtime.backoff import backoff_seconds
from kubebyon.runtime.contract import Context, PermanentError, Reconciler, Result, TemporaryError
from kubebyon.runtime.loop import ClaimLoop
from kubebyon.runtime.wakeups import WakeupListener

log = structlog.get_logger("kubebyon.runtime")
MAX_ERROR_LENGTH = 2000


def new_owner_id(worker_id: str | None = None) -> str:
    """Unique per process start, readable in the database: host:pid:random."""
    base = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{secrets.token_hex(3)}"


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True)
class ClaimedKey:
    key: str
    generation: int
    attempts: int
    lag_seconds: float


class ReconcilerLoop(ClaimLoop):
    def __init__(
        self,
        reconciler: Reconciler,
        db: Database,
        *,
        owner: str,
        lease_seconds: float,
        idle_poll_seconds: float,
        backoff_base: float,
        backoff_cap: float,
        rng: random.Random,
    ) -> None:
        self.name = reconciler.name
        self.max_concurrency = reconciler.max_concurrency
        super().__init__(lease_seconds=lease_seconds, idle_poll_seconds=idle_poll_seconds)
        self.reconciler = reconciler
        self.db = db
        self.owner = owner
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng
        self.wake_other: Any = None

    @staticmethod
    def key_of(item: Any) -> str:
        return str(item.key)

    async def claim(self, limit: int) -> Sequence[ClaimedKey]:
        rows = await self.db.fetch(
            self.db.q.claim_keys, self.name, self.owner, limit, self.lease_seconds
        )
        claimed = [
            ClaimedKey(r["key"], r["generation"], r["attempts"], r["lag_seconds"]) for r in rows
        ]
        for item in claimed:
            metrics.WAKEUP_LATENCY.labels(self.name).observe(max(item.lag_seconds, 0.0))
        return claimed

    async def extend(self, keys: list[str]) -> set[str]:
        rows = await self.db.fetch(
            self.db.q.extend_leases, self.name, self.owner, keys, self.lease_seconds
        )
        return {r["key"] for r in rows}

    async def next_due_in(self) -> float | None:
        value = await self.db.fetchval(self.db.q.next_due_seconds, self.name)
        return None if value is None else float(value)

    def on_lease_lost(self, key: str) -> None:
        metrics.LEASES_LOST.labels(self.name).inc()
        super().on_lease_lost(key)

    async def process(self, item: ClaimedKey) -> None:
        rec = self.reconciler
        ctx = Context(
            db=self.db,
            key=item.key,
            attempt=item.attempts,
            log=self.log.bind(key=item.key),
            wake=self.wake_other,
        )
        started = time.perf_counter()
        metrics.RECONCILE_IN_FLIGHT.labels(self.name).inc()
        outcome = "success"
        try:
            try:
                async with asyncio.timeout(rec.timeout):
                    result = await rec.reconcile(item.key, ctx)
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except PermanentError as exc:
                outcome = "permanent_error"
                ctx.log.warning("reconcile failed permanently", error=describe_error(exc))
                await self.db.execute(
                    self.db.q.complete_permanent,
                    self.name,
                    item.key,
                    self.owner,
                    item.generation,
                    describe_error(exc),
                )
                return
            except TimeoutError:
                outcome = "timeout"
                await self._retry(item, f"reconcile timed out after {rec.timeout:g}s")
                return
            except TemporaryError as exc:
                outcome = "temporary_error"
                await self._retry(item, describe_error(exc))
                return
            except Exception as exc:
                outcome = "error"
                ctx.log.exception("reconcile raised")
                await self._retry(item, f"{type(exc).__name__}: {describe_error(exc)}")
                return
            if not isinstance(result, Result):
                result = Result()
            if result.forget and await self.db.fetchval(
                self.db.q.forget_key, self.name, item.key, self.owner, item.generation
            ):
                return
            if result.requeue_after is not None:
                outcome = "requeue"
            next_in = rec.resync_interval if result.requeue_after is None else result.requeue_after
            await self.db.execute(
                self.db.q.complete_success,
                self.name,
                item.key,
                self.owner,
                item.generation,
                max(next_in, 0.0),
                result.status,
            )
        finally:
            metrics.RECONCILE_IN_FLIGHT.labels(self.name).dec()
            if outcome != "cancelled":
                metrics.RECONCILE_TOTAL.labels(self.name, outcome).inc()
                metrics.RECONCILE_DURATION.labels(self.name).observe(time.perf_counter() - started)
                if outcome not in ("success", "requeue"):
                    metrics.RECONCILE_ERRORS.labels(self.name).inc()

    async def _retry(self, item: ClaimedKey, error: str) -> None:
        delay = backoff_seconds(
            item.attempts + 1, base=self.backoff_base, cap=self.backoff_cap, rng=self.rng
        )
        self.log.warning("reconcile failed; retrying", key=item.key, error=error, retry_in=delay)
        await self.db.execute(
            self.db.q.complete_retry,
            self.name,
            item.key,
            self.owner,
            item.generation,
            delay,
            error,
        )

    async def release(self) -> None:
        await self.db.fetch(self.db.q.release_leases, self.name, self.owner)

    async def resync(self) -> None:
        """List every key that should exist and make sure each has a queue row."""
        keys = [key async for key in self.reconciler.keys(self.db)]
        await self.db.execute(self.db.q.sync_keys, self.name, keys)
        self.wake()

    async def resync_forever(self) -> None:
        while True:
            try:
                await self.resync()
                delay = self.reconciler.resync_interval
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.log.warning("resync failed", error=str(exc))
                delay = min(self.reconciler.resync_interval, 5.0)
            except Exception:
                self.log.exception("resync raised")
                delay = min(self.reconciler.resync_interval, 30.0)
            await asyncio.sleep(delay)


class Runtime:
    """Starts and stops every loop of this process in a fixed order."""

    def __init__(
        self,
        db: Database,
        reconcilers: Sequence[Reconciler],
        *,
        extra_loops: Sequence[ClaimLoop] = (),
        owner: str | None = None,
        lease_seconds: float = 30.0,
        idle_poll_seconds: float = 2.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.owner = owner or new_owner_id()
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.loops: dict[str, ReconcilerLoop] = {}
        for rec in reconcilers:
            if rec.name in self.loops or rec.name == "jobs":
                raise ValueError(f"reconciler name {rec.name!r} is taken")
            self.loops[rec.name] = ReconcilerLoop(
                rec,
                db,
                owner=self.owner,
                lease_seconds=lease_seconds,
                idle_poll_seconds=idle_poll_seconds,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                rng=rng,
            )
        self.extra_loops: dict[str, ClaimLoop] = {loop.name: loop for loop in extra_loops}
        for loop in self.loops.values():
            loop.wake_other = self.wake
        self.listener = WakeupListener(db.dsn, self._on_notify, self._wake_all)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self.started = False

    def _all_loops(self) -> list[ClaimLoop]:
        return [*self.loops.values(), *self.extra_loops.values()]

    def subscribe(self, payload: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when NOTIFY carries ``payload`` and after every reconnect of
        the listener (notifications sent meanwhile are lost)."""
        self._subscribers.setdefault(payload, []).append(callback)

    def _on_notify(self, payload: str) -> None:
        loop = self.loops.get(payload) or self.extra_loops.get(payload)
        if loop is not None:
            loop.wake()
        for callback in self._subscribers.get(payload, ()):
            callback()

    def _wake_all(self) -> None:
        for loop in self._all_loops():
            loop.wake()
        for callbacks in self._subscribers.values():
            for callback in callbacks:
                callback()

    async def wake(self, reconciler: str, key: str) -> None:
        """Make ``key`` due now for ``reconciler`` (on every process)."""
        await self.db.execute(self.db.q.enqueue_key, reconciler, key)

    async def start(self) -> None:
        for name in self.loops:
            for gauge in (metrics.RECONCILE_QUEUE_DEPTH, metrics.RECONCILE_OLDEST_DUE):
                gauge.labels(name).set(0)
        self._spawn(self.listener.run(), "wakeup-listener")
        # Wait briefly for LISTEN so that writes right after start-up are not missed;
        # the idle poll covers a database that is slow to answer.
        try:
            async with asyncio.timeout(5):
                await self.listener.connected.wait()
        except TimeoutError:
            log.warning("wakeup listener not connected yet; relying on polling meanwhile")
        for loop in self.loops.values():
            self._spawn(loop.resync_forever(), f"{loop.name}-resync")
        for each in self._all_loops():
            self._spawn(each.run(), f"{each.name}-loop")
        self.started = True
        log.info("runtime started", owner=self.owner, loops=[x.name for x in self._all_loops()])

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks.append(task)

    async def _guard(self, coro: Any, name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task crashed", task=name)

    def health(self, max_tick_age: float) -> dict[str, Any]:
        now = time.monotonic()
        stale = [
            loop.name
            for loop in self._all_loops()
            if now - loop.last_tick > max(max_tick_age, loop.idle_poll_seconds * 3)
        ]
        crashed = [t.get_name() for t in self._tasks if t.done()]
        return {
            "ok": self.started and not stale and not crashed,
            "stale_loops": stale,
            "stopped_tasks": crashed,
            "listener_connected": self.listener.connected.is_set(),
        }

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight work finish within ``grace``, release leases."""
        loops = self._all_loops()
        for loop in loops:
            loop.stop_claiming()
        await asyncio.gather(*(loop.drain(grace) for loop in loops))
        self.listener.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for loop in loops:
            try:
                await loop.release()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "could not release leases; they expire on their own",
                    loop=loop.name,
                    error=str(exc),
                )
        log.info("runtime stopped", owner=self.owner)
