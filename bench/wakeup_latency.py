"""Wake-up latency: from the commit of an API-style write to the start of its reconcile.

One Runtime runs a no-op reconciler whose resync interval is huge and whose idle poll is
30 s, so only the NOTIFY sent by ``kubebyon.db.desired_state.wake`` can wake it in time.
A separate connection writes, exactly as the API does (``wake`` inside a transaction);
t0 is taken just before COMMIT, t1 when ``reconcile`` starts for that key.

Baseline: the raw LISTEN/NOTIFY round trip on bare asyncpg connections — a transaction
that calls ``pg_notify``, t0 just before COMMIT, t1 in the listener callback. Samples of
both kinds are interleaved, so both see the same machine at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg

from bench.common import Outcome, Postgres, out, percentile
from kubebyon.db import desired_state
from kubebyon.db.database import Database, connect
from kubebyon.runtime.contract import Context, Result
from kubebyon.runtime.driver import Runtime
from kubebyon.settings import Settings

NAME = "bench_wake"
RAW_CHANNEL = "bench_raw_notify"
WARMUP = 20
SETTLE_SECONDS = 0.01  # between samples: the runtime finishes the previous key and idles
SAMPLE_TIMEOUT = 5.0
TARGET_P99_MS = 50.0


class RecordingReconciler:
    """Records when ``reconcile`` starts for each awaited key."""

    name = NAME
    resync_interval = 1e9  # never: only a NOTIFY can make a key run
    max_concurrency = 8
    timeout = 30.0

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}

    async def keys(self, db: Database) -> AsyncIterator[str]:
        return
        yield  # an async generator that lists nothing

    async def reconcile(self, key: str, ctx: Context) -> Result:
        started = time.perf_counter()
        future = self.waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(started)
        return Result()


class TimedRuntime(Runtime):
    """The product Runtime, noting when a NOTIFY reaches its listener (to split latency)."""

    last_notify_at = 0.0

    def _on_notify(self, payload: str) -> None:
        self.last_notify_at = time.perf_counter()
        super()._on_notify(payload)


class RawListener:
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        arrived = time.perf_counter()
        future = self.waiting.pop(str(payload), None)
        if future is not None and not future.done():
            future.set_result(arrived)


async def sample_wake(
    writer: asyncpg.Connection, reconciler: RecordingReconciler, runtime: TimedRuntime, key: str
) -> tuple[float, float]:
    """(commit -> reconcile start, commit -> NOTIFY at the runtime's listener)."""
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    reconciler.waiting[key] = future
    tr = writer.transaction()
    await tr.start()
    try:
        await desired_state.wake(writer, NAME, key)
    except BaseException:
        await tr.rollback()
        raise
    runtime.last_notify_at = -1.0
    t0 = time.perf_counter()
    await tr.commit()
    async with asyncio.timeout(SAMPLE_TIMEOUT):
        t1 = await future
    # Negative when the key was claimed before its NOTIFY arrived (a loop already awake).
    return t1 - t0, runtime.last_notify_at - t0


async def sample_raw(writer: asyncpg.Connection, listener: RawListener, payload: str) -> float:
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    listener.waiting[payload] = future
    tr = writer.transaction()
    await tr.start()
    try:
        await writer.execute("SELECT pg_notify($1, $2)", RAW_CHANNEL, payload)
    except BaseException:
        await tr.rollback()
        raise
    t0 = time.perf_counter()
    await tr.commit()
    async with asyncio.timeout(SAMPLE_TIMEOUT):
        t1 = await future
    return t1 - t0


def _line(label: str, ms: list[float]) -> None:
    out(
        f"  {label:<22} n={len(ms)}  p50 {percentile(ms, 50):6.2f} ms  "
        f"p90 {percentile(ms, 90):6.2f} ms  p99 {percentile(ms, 99):6.2f} ms  "
        f"max {max(ms):6.2f} ms"
    )


async def run(pg: Postgres, samples: int) -> Outcome:
    outcome = Outcome("wake-up latency", "wake-up p50 / raw NOTIFY p50")
    settings = Settings()
    out(
        f"{samples} samples of each (after {WARMUP} warm-up pairs), interleaved; "
        f"idle poll 30 s, so only NOTIFY wakes the runtime"
    )
    wake_ms: list[float] = []
    notify_ms: list[float] = []
    claim_ms: list[float] = []
    raw_ms: list[float] = []
    misses = 0
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("wakeup")
        stack.push_async_callback(pg.drop_database, dsn)
        db = await Database.open(
            dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        stack.push_async_callback(db.close)
        reconciler = RecordingReconciler()
        runtime = TimedRuntime(
            db,
            [reconciler],
            owner="bench-wakeup",
            lease_seconds=settings.lease_seconds,
            idle_poll_seconds=30.0,
        )
        await runtime.start()
        stack.push_async_callback(runtime.stop, 5.0)
        writer = await connect(dsn)
        stack.push_async_callback(writer.close)
        raw_listen = await asyncpg.connect(dsn)
        stack.push_async_callback(raw_listen.close)
        raw = RawListener()
        await raw_listen.add_listener(RAW_CHANNEL, raw)
        for i in range(WARMUP + samples):
            # Alternate which kind goes first within a pair.
            kinds = ("raw", "wake") if i % 2 == 0 else ("wake", "raw")
            for kind in kinds:
                try:
                    if kind == "raw":
                        seconds = await sample_raw(writer, raw, f"n{i}")
                        if i >= WARMUP:
                            raw_ms.append(seconds * 1000)
                    else:
                        seconds, notified = await sample_wake(
                            writer, reconciler, runtime, f"key-{i:05d}"
                        )
                        if i >= WARMUP:
                            wake_ms.append(seconds * 1000)
                            if 0 <= notified <= seconds:
                                notify_ms.append(notified * 1000)
                                claim_ms.append((seconds - notified) * 1000)
                except TimeoutError:
                    if kind == "raw":
                        raise RuntimeError("a raw NOTIFY never arrived") from None
                    misses += 1
                    continue
                await asyncio.sleep(SETTLE_SECONDS)
    if not wake_ms:
        raise RuntimeError(f"no wake-up reached the reconciler ({misses} missed)")
    _line("raw LISTEN/NOTIFY", raw_ms)
    _line("wake() -> reconcile", wake_ms)
    _line("  of which NOTIFY", notify_ms)
    _line("  of which claim+start", claim_ms)
    if misses:
        out(f"  {misses} wake-ups did not start a reconcile within {SAMPLE_TIMEOUT:g} s")
    ratio = percentile(wake_ms, 50) / percentile(raw_ms, 50)
    p99_ratio = percentile(wake_ms, 99) / percentile(raw_ms, 99)
    outcome.ratio = ratio
    out(f"  latency ratio: p50 {ratio:.2f}x raw NOTIFY, p99 {p99_ratio:.2f}x")
    p99 = percentile(wake_ms, 99)
    outcome.target(
        f"wake-up p99 < {TARGET_P99_MS:g} ms", p99 < TARGET_P99_MS and not misses, f"{p99:.2f} ms"
    )
    outcome.target("every wake-up started a reconcile", not misses, f"{misses} missed")
    return outcome
