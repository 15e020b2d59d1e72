"""Reconcile throughput: 10,000 due keys drained by two Runtimes versus a bare SQL loop.

Runtime phase: 10,000 rows in ``reconcile_queue`` for a no-op reconciler, then two
``kubebyon.runtime.driver.Runtime`` instances (distinct owners, each with its own pool
and LISTEN connection, as two processes would have) start together; the clock stops when
every key has been reconciled and its completion recorded (``last_reconciled_at`` set).

Baseline phase: the same 10,000 rows in a fresh database, drained by two bare workers
(one connection each) doing the minimum SQL a lease queue needs: a ``FOR UPDATE SKIP
LOCKED`` claim of a batch (the runtime's batch size, ``max_concurrency``) and one
completion UPDATE per key.

Both phases run in this one process and event loop, alternately, ``rounds`` times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import asyncpg

from bench.common import CountingDatabase, Outcome, Postgres, cpu_seconds, out
from kubebyon.db.database import Database, connect
from kubebyon.runtime.contract import Context, Result
from kubebyon.runtime.driver import Runtime
from kubebyon.settings import Settings

NAME = "bench_noop"
KEYS = 10_000
BATCH = 32  # the reconciler's max_concurrency; the bare loop claims the same batch size
DEADLINE_SECONDS = 60.0
TARGET_RATIO = 0.5
TARGET_KEYS_PER_SECOND = 2_000.0

BARE_CLAIM = """
WITH due AS (
    SELECT reconciler, key FROM reconcile_queue
    WHERE reconciler = $1 AND lease_owner IS NULL AND due_at <= now()
    ORDER BY due_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE reconcile_queue q
SET lease_owner = $2, lease_expires_at = now() + interval '30 seconds'
FROM due
WHERE q.reconciler = due.reconciler AND q.key = due.key
RETURNING q.key
"""

BARE_COMPLETE = """
UPDATE reconcile_queue
SET lease_owner = NULL, lease_expires_at = NULL, last_reconciled_at = now(),
    due_at = now() + interval '1 hour'
WHERE reconciler = $1 AND key = $2 AND lease_owner = $3
"""


def all_keys() -> list[str]:
    return [f"key-{i:05d}" for i in range(KEYS)]


async def seed_keys(dsn: str, keys: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO reconcile_queue (reconciler, key) SELECT $1, unnest($2::text[])",
            NAME,
            keys,
        )
        await conn.execute("ANALYZE reconcile_queue")
    finally:
        await conn.close()


class Tally:
    """Who reconciled which key, how often; ``done`` is set at the last new key."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.per_key: collections.Counter[str] = collections.Counter()
        self.per_owner: collections.Counter[str] = collections.Counter()
        self.done = asyncio.Event()

    def record(self, owner: str, key: str) -> None:
        self.per_key[key] += 1
        self.per_owner[owner] += 1
        if len(self.per_key) >= self.expected:
            self.done.set()

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.per_key.values() if n > 1)


class NoopReconciler:
    """A reconciler that converges instantly; it only counts its calls."""

    name = NAME
    resync_interval = 3600.0
    max_concurrency = BATCH
    timeout = 30.0

    def __init__(self, owner: str, keys: list[str], tally: Tally) -> None:
        self.owner = owner
        self._keys = keys
        self.tally = tally

    async def keys(self, db: Database) -> AsyncIterator[str]:
        # Every key that should exist, as a real reconciler lists them: each runtime's
        # start-up resync (an INSERT ... ON CONFLICT DO NOTHING of 10,000 keys) runs
        # inside the timed window, as it does when two processes start together.
        for key in self._keys:
            yield key

    async def reconcile(self, key: str, ctx: Context) -> Result:
        self.tally.record(self.owner, key)
        return Result()


@dataclass
class PhaseResult:
    seconds: float
    processed: int
    duplicates: int
    per_worker: dict[str, int]
    unreconciled: int
    cpu_seconds: float
    statements: dict[str, int]

    @property
    def rate(self) -> float:
        return self.processed / self.seconds

    @property
    def cpu_us_per_key(self) -> float:
        return self.cpu_seconds / self.processed * 1e6


async def count_unreconciled(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM reconcile_queue "
            "WHERE reconciler = $1 AND (last_reconciled_at IS NULL OR lease_owner IS NOT NULL)",
            NAME,
        )
    finally:
        await conn.close()
    return n


async def run_bare(pg: Postgres, keys: list[str]) -> PhaseResult:
    seen: collections.Counter[str] = collections.Counter()
    per_worker: collections.Counter[str] = collections.Counter()
    statements: collections.Counter[str] = collections.Counter()

    async def worker(conn: asyncpg.Connection, owner: str) -> None:
        while True:
            rows = await conn.fetch(BARE_CLAIM, NAME, owner, BATCH)
            statements["claim"] += 1
            if not rows:
                return
            for row in rows:
                await conn.execute(BARE_COMPLETE, NAME, row["key"], owner)
                statements["complete"] += 1
                seen[row["key"]] += 1
                per_worker[owner] += 1

    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("bare")
        stack.push_async_callback(pg.drop_database, dsn)
        await seed_keys(dsn, keys)
        conns = []
        for _ in range(2):
            conns.append(await connect(dsn))
            stack.push_async_callback(conns[-1].close)
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        async with asyncio.timeout(DEADLINE_SECONDS):
            await asyncio.gather(*(worker(c, f"bare-{i}") for i, c in enumerate(conns)))
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu0
        return PhaseResult(
            seconds=seconds,
            processed=len(seen),
            duplicates=sum(n - 1 for n in seen.values() if n > 1),
            per_worker=dict(per_worker),
            unreconciled=await count_unreconciled(dsn),
            cpu_seconds=cpu,
            statements=dict(statements),
        )


async def _wait_inflight(runtimes: Iterable[Runtime]) -> None:
    """Wait for reconciles that have returned but whose completion UPDATE is still out."""
    tasks = [t for rt in runtimes for loop in rt.loops.values() for t in loop.inflight.values()]
    if tasks:
        await asyncio.wait(tasks)


async def run_runtime(pg: Postgres, keys: list[str], settings: Settings) -> PhaseResult:
    tally = Tally(len(keys))
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("runtime")
        stack.push_async_callback(pg.drop_database, dsn)
        await seed_keys(dsn, keys)
        # Two pools, as two processes would have (settings defaults: min 2, max 10).
        dbs: list[CountingDatabase] = []
        for _ in range(2):
            db = await CountingDatabase.open(
                dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
            )
            assert isinstance(db, CountingDatabase)  # open() is a classmethod: cls(dsn, pool)
            dbs.append(db)
            stack.push_async_callback(db.close)
        runtimes = [
            Runtime(
                db,
                [NoopReconciler(f"runtime-{i}", keys, tally)],
                owner=f"runtime-{i}",
                lease_seconds=settings.lease_seconds,
                idle_poll_seconds=settings.idle_poll_seconds,
            )
            for i, db in enumerate(dbs)
        ]
        async with contextlib.AsyncExitStack() as running:
            for rt in runtimes:
                running.push_async_callback(rt.stop, 5.0)
            cpu0 = cpu_seconds()
            started = time.perf_counter()
            async with asyncio.timeout(DEADLINE_SECONDS):
                await asyncio.gather(*(rt.start() for rt in runtimes))
                await tally.done.wait()
                await _wait_inflight(runtimes)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds() - cpu0
            statements = sum((db.statements for db in dbs), collections.Counter[str]())
        # Counted after stop: a key run twice at any moment of the phase shows here.
        return PhaseResult(
            seconds=seconds,
            processed=len(tally.per_key),
            duplicates=tally.duplicates(),
            per_worker=dict(tally.per_owner),
            unreconciled=await count_unreconciled(dsn),
            cpu_seconds=cpu,
            statements=dict(statements),
        )


def _describe(label: str, r: PhaseResult) -> None:
    workers = ", ".join(f"{k}={v}" for k, v in sorted(r.per_worker.items()))
    sql = ", ".join(f"{k} {v}" for k, v in sorted(r.statements.items(), key=lambda kv: -kv[1]))
    out(
        f"  {label:<8} {r.processed:>6} keys in {r.seconds:6.3f} s = {r.rate:6.0f} keys/s, "
        f"bench-process CPU {r.cpu_us_per_key:4.0f} us/key"
    )
    out(
        f"           per worker: {workers}; duplicates {r.duplicates}; "
        f"rows not completed {r.unreconciled}"
    )
    out(f"           SQL statements: {sql}")


async def run(pg: Postgres, rounds: int) -> Outcome:
    outcome = Outcome("reconcile throughput", "runtime / bare keys/s")
    settings = Settings()
    keys = all_keys()
    out(
        f"{len(keys)} due keys, no-op reconciler, batch/max_concurrency={BATCH}, "
        f"2 workers each; lease={settings.lease_seconds:g}s, "
        f"pool {settings.db_pool_min_size}-{settings.db_pool_max_size} per runtime"
    )
    bare: list[PhaseResult] = []
    runtime: list[PhaseResult] = []
    for i in range(rounds):
        out(f" round {i + 1}/{rounds}")
        # Alternate the order so that a drift in machine load does not favour one side.
        order = ("bare", "runtime") if i % 2 == 0 else ("runtime", "bare")
        for phase in order:
            if phase == "bare":
                bare.append(await run_bare(pg, keys))
                _describe("bare", bare[-1])
            else:
                runtime.append(await run_runtime(pg, keys, settings))
                _describe("runtime", runtime[-1])
    for label, results in (("bare", bare), ("runtime", runtime)):
        for r in results:
            if r.processed != len(keys) or r.unreconciled:
                raise RuntimeError(
                    f"{label}: {r.processed}/{len(keys)} keys reconciled, "
                    f"{r.unreconciled} rows without a completion"
                )
    best_bare = max(r.rate for r in bare)
    best_runtime = max(r.rate for r in runtime)
    ratio = best_runtime / best_bare
    outcome.ratio = ratio
    out(
        f"  best of {rounds}: runtime {best_runtime:.0f} keys/s, bare {best_bare:.0f} keys/s, "
        f"ratio {ratio:.2f}"
    )
    outcome.target(f"runtime >= {TARGET_RATIO:.0%} of bare", ratio >= TARGET_RATIO, f"{ratio:.0%}")
    outcome.target(
        f"runtime >= {TARGET_KEYS_PER_SECOND:.0f} keys/s",
        best_runtime >= TARGET_KEYS_PER_SECOND,
        f"{best_runtime:.0f} keys/s",
    )
    duplicates = sum(r.duplicates for r in runtime)
    both_worked = all(len(r.per_worker) == 2 for r in runtime)
    outcome.target(
        "each key reconciled exactly once across the two runtimes",
        duplicates == 0,
        f"{duplicates} duplicate reconciles over {rounds} rounds; "
        f"both runtimes took keys: {'yes' if both_worked else 'no'}",
    )
    return outcome
