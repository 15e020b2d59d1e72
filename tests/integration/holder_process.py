"""A worker process for crash tests: claims work and holds it until killed.

Usage: python -m tests.integration.holder_process DSN (reconcile|job) LEASE_SECONDS
Prints "holding <key>" once it holds a key (or job) and then never finishes it.
"""

from __future__ import annotations

import asyncio
import sys

from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context, Result
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobContext, JobLoop


async def _block_forever(key: str) -> None:
    print(f"holding {key}", flush=True)
    await asyncio.Event().wait()


class Holder:
    name = "test"
    resync_interval = 3600.0
    max_concurrency = 1
    timeout = 3600.0

    async def keys(self, db: Database):  # type: ignore[no-untyped-def]
        return
        yield

    async def reconcile(self, key: str, ctx: Context) -> Result:
        await _block_forever(key)
        return Result()


async def main(dsn: str, mode: str, lease: float) -> None:
    db = await Database.open(dsn, min_size=1, max_size=3)

    async def hold_job(ctx: JobContext) -> None:
        await _block_forever(ctx.job["id"])

    jobs = JobLoop(
        db,
        {"cluster_create": hold_job},
        worker_id="doomed-worker",
        lease_seconds=lease,
        idle_poll_seconds=0.1,
    )
    reconcilers = [Holder()] if mode == "reconcile" else []
    extra = [jobs] if mode == "job" else []
    runtime = Runtime(
        db,
        reconcilers,
        extra_loops=extra,
        owner="doomed",
        lease_seconds=lease,
        idle_poll_seconds=0.1,
    )
    await runtime.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
