"""The reconciler runtime on real PostgreSQL: leases, wake-ups, errors, shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kubebyon import metrics
from kubebyon.db.database import Database
from kubebyon.db.desired_state import wake
from kubebyon.runtime.contract import Context, PermanentError, Result, TemporaryError
from kubebyon.runtime.driver import Runtime
from tests.support import RecordingReconciler, queue_row, wait_until


@asynccontextmanager
async def running(db: Database, *reconcilers: Any, **options: Any) -> AsyncIterator[Runtime]:
    options.setdefault("lease_seconds", 5.0)
    options.setdefault("idle_poll_seconds", 30.0)  # only NOTIFY or due times wake loops
    options.setdefault("backoff_base", 0.05)
    options.setdefault("backoff_cap", 0.2)
    options.setdefault("rng", random.Random(7))
    runtime = Runtime(db, list(reconcilers), **options)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace=5.0)


async def test_resync_creates_rows_for_listed_keys_and_reconciles_them(db: Database) -> None:
    rec = RecordingReconciler(keys=["a", "b"])
    async with running(db, rec):
        await rec.wait_for_calls("a")
        await rec.wait_for_calls("b")
        row = await wait_until(
            lambda: _reconciled(db, "test", "a"), what="a recorded as reconciled"
        )
    assert row["last_error"] is None
    assert row["lease_owner"] is None
    assert row["attempts"] == 0


async def _reconciled(db: Database, name: str, key: str) -> Any:
    row = await queue_row(db, name, key)
    return row if row is not None and row["last_reconciled_at"] is not None else None


async def test_write_wakes_reconciler_without_waiting_for_resync(db: Database) -> None:
    rec = RecordingReconciler(resync_interval=3600)
    async with running(db, rec, idle_poll_seconds=3600):
        # The same call an API handler makes, in the transaction of its write.
        async with db.transaction() as conn:
            await wake(conn, "test", "cluster-1")
        await rec.wait_for_calls("cluster-1", timeout=5)


async def test_change_during_reconcile_is_not_lost(db: Database) -> None:
    release = asyncio.Event()
    first_started = asyncio.Event()

    async def script(key: str, ctx: Context) -> Result:
        if not first_started.is_set():
            first_started.set()
            await release.wait()
        return Result()

    rec = RecordingReconciler(script=script)
    async with running(db, rec):
        async with db.transaction() as conn:
            await wake(conn, "test", "k")
        await asyncio.wait_for(first_started.wait(), 10)
        async with db.transaction() as conn:  # desired state changes mid-reconcile
            await wake(conn, "test", "k")
        release.set()
        await rec.wait_for_calls("k", count=2)


async def test_two_runtimes_never_hold_the_same_key_at_once(db: Database) -> None:
    holders: dict[str, int] = {}
    overlaps: list[str] = []
    done: dict[str, int] = {}
    keys = [f"k{i}" for i in range(40)]

    async def script(key: str, ctx: Context) -> Result:
        holders[key] = holders.get(key, 0) + 1
        if holders[key] > 1:
            overlaps.append(key)
        await asyncio.sleep(0.005)  # hold the key long enough for a competitor to try
        holders[key] -= 1
        done[key] = done.get(key, 0) + 1
        return Result(requeue_after=0)  # immediately due again: maximal contention

    first = RecordingReconciler(keys=keys, max_concurrency=8, script=script)
    second = RecordingReconciler(keys=keys, max_concurrency=8, script=script)
    async with running(db, first, owner="one"), running(db, second, owner="two"):
        await wait_until(
            lambda: all(done.get(k, 0) >= 5 for k in keys), what="every key reconciled 5 times"
        )
    assert overlaps == []
    assert first.calls and second.calls, "both runtimes should have done work"


async def test_temporary_errors_back_off_and_record_last_error(db: Database) -> None:
    async def script(key: str, ctx: Context) -> Result:
        if ctx.attempt < 3:
            raise TemporaryError(f"host unreachable (attempt {ctx.attempt})")
        return Result()

    rec = RecordingReconciler(keys=["k"], script=script)
    before = metrics.RECONCILE_TOTAL.labels("test", "temporary_error")._value.get()
    async with running(db, rec):
        await rec.wait_for_calls("k", count=3)
        failing = await queue_row(db, "test", "k")
        await rec.wait_for_calls("k", count=4)
        healed = await wait_until(lambda: _reconciled(db, "test", "k"), what="success")
    assert failing["attempts"] >= 2
    assert "host unreachable" in (failing["last_error"] or "")
    assert healed["attempts"] == 0 and healed["last_error"] is None
    after = metrics.RECONCILE_TOTAL.labels("test", "temporary_error")._value.get()
    assert after - before == 3


async def test_permanent_error_stops_until_desired_state_changes(db: Database) -> None:
    fixed = asyncio.Event()

    async def script(key: str, ctx: Context) -> Result:
        if key == "busy":
            return Result(requeue_after=0)  # keeps the loop claiming all the time
        if not fixed.is_set():
            raise PermanentError("vcluster_name is not a DNS label")
        return Result()

    rec = RecordingReconciler(keys=["k", "busy"], script=script)
    async with running(db, rec):
        await rec.wait_for_calls("k")
        row = await wait_until(lambda: _stopped(db, "k"), what="key stopped")
        assert row["last_error"] == "vcluster_name is not a DNS label"
        # The loop goes on claiming "busy" many times and never retries "k"...
        busy = rec.calls.count("busy")
        await rec.wait_for_calls("busy", count=busy + 20)
        assert rec.calls.count("k") == 1
        # ...until its desired state changes.
        fixed.set()
        async with db.transaction() as conn:
            await wake(conn, "test", "k")
        await rec.wait_for_calls("k", count=2)


async def _stopped(db: Database, key: str) -> Any:
    row = await queue_row(db, "test", key)
    return row if row and row["stopped_generation"] == row["generation"] else None


async def test_crash_in_one_reconciler_does_not_stop_the_others(db: Database) -> None:
    async def explode(key: str, ctx: Context) -> Result:
        raise RuntimeError("bug in reconciler")

    broken = RecordingReconciler("broken", keys=["x"], script=explode)
    healthy = RecordingReconciler("healthy", keys=["y"])
    errors_before = metrics.RECONCILE_ERRORS.labels("broken")._value.get()
    async with running(db, broken, healthy) as runtime:
        await broken.wait_for_calls("x", count=2)  # retried with backoff
        async with db.transaction() as conn:
            await wake(conn, "healthy", "z")
        await healthy.wait_for_calls("z")
        assert runtime.health(max_tick_age=10)["ok"]
    row = await queue_row(db, "broken", "x")
    assert row["last_error"] == "RuntimeError: bug in reconciler"
    assert metrics.RECONCILE_ERRORS.labels("broken")._value.get() - errors_before >= 2


async def test_reconcile_timeout_is_recorded_and_retried(db: Database) -> None:
    async def slow(key: str, ctx: Context) -> Result:
        if ctx.attempt == 0:
            await asyncio.Event().wait()  # never returns; the timeout must fire
        return Result()

    rec = RecordingReconciler(keys=["k"], script=slow, timeout=0.2)
    async with running(db, rec):
        await rec.wait_for_calls("k", count=2)
        row = await wait_until(lambda: _reconciled(db, "test", "k"), what="retry succeeded")
    assert row["last_error"] is None
    history = metrics.RECONCILE_TOTAL.labels("test", "timeout")._value.get()
    assert history >= 1


async def test_graceful_stop_finishes_in_flight_work_and_releases_leases(db: Database) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()
    finished: list[str] = []

    async def script(key: str, ctx: Context) -> Result:
        started.set()
        await finish.wait()
        finished.append(key)
        return Result()

    rec = RecordingReconciler(keys=["k"], script=script)
    runtime = Runtime(db, [rec], lease_seconds=5, idle_poll_seconds=30)
    await runtime.start()
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(runtime.stop(grace=10))
    await asyncio.sleep(0)  # let stop() begin: claiming stops first
    finish.set()
    await stopping
    assert finished == ["k"]
    row = await queue_row(db, "test", "k")
    assert row["lease_owner"] is None


async def test_stop_cancels_work_past_the_grace_period_and_releases_it(db: Database) -> None:
    started = asyncio.Event()

    async def stuck(key: str, ctx: Context) -> Result:
        started.set()
        await asyncio.Event().wait()
        return Result()

    rec = RecordingReconciler(keys=["k"], script=stuck)
    runtime = Runtime(db, [rec], lease_seconds=30, idle_poll_seconds=30)
    await runtime.start()
    await asyncio.wait_for(started.wait(), 10)
    await runtime.stop(grace=0.1)
    row = await queue_row(db, "test", "k")
    # Released, due now: another process takes it without waiting 30 s for the lease.
    assert row["lease_owner"] is None
    assert await db.fetchval("SELECT $1::timestamptz <= now()", row["due_at"])


async def test_lost_lease_cancels_the_reconcile(db: Database) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hold(key: str, ctx: Context) -> Result:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Result()

    rec = RecordingReconciler(keys=["k"], script=hold)
    async with running(db, rec, lease_seconds=0.6):
        await asyncio.wait_for(started.wait(), 10)
        # Another process stole the key (e.g. we were partitioned past the lease).
        await db.execute(
            "UPDATE reconcile_queue SET lease_owner = 'thief' WHERE reconciler = 'test'"
        )
        await asyncio.wait_for(cancelled.wait(), 10)


async def test_listener_reconnects_after_its_connection_dies(db: Database) -> None:
    rec = RecordingReconciler()
    async with running(db, rec, idle_poll_seconds=3600) as runtime:
        await runtime.listener.connected.wait()
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert killed == 1
        await wait_until(lambda: _listening(db), what="a new LISTEN connection", timeout=15)
        async with db.transaction() as conn:
            await wake(conn, "test", "after-reconnect")
        await rec.wait_for_calls("after-reconnect", timeout=5)


async def _listening(db: Database) -> bool:
    count = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%' AND state = 'idle'"
    )
    return bool(count)


async def test_forget_drops_the_key_unless_it_changed_meanwhile(db: Database) -> None:
    gone = {"old"}

    async def script(key: str, ctx: Context) -> Result:
        return Result(forget=key in gone)

    rec = RecordingReconciler(keys=["old", "live"], script=script)
    async with running(db, rec):
        await rec.wait_for_calls("old")
        await rec.wait_for_calls("live")
        await wait_until(lambda: _absent(db, "old"), what="forgotten key removed")
    assert await queue_row(db, "test", "live") is not None


async def _absent(db: Database, key: str) -> bool:
    return await queue_row(db, "test", key) is None
