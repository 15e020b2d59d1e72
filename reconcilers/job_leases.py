"""Job leases: return jobs of crashed workers to pending, or fail them when spent.

One key (``cluster_jobs``): the whole table is swept in one statement each time, which
is cheaper than a key per job and needs no coordination beyond SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context, Result

KEY = "cluster_jobs"


class JobLeaseReconciler:
    name = "job_leases"
    max_concurrency = 1
    timeout = 30.0

    def __init__(self, *, max_attempts: int, interval: float) -> None:
        self.max_attempts = max_attempts
        self.resync_interval = interval

    async def keys(self, db: Database) -> AsyncIterator[str]:
        yield KEY

    async def reconcile(self, key: str, ctx: Context) -> Result:
        rows = await ctx.db.fetch(ctx.db.q.requeue_expired_jobs, self.max_attempts)
        requeued = [r["id"] for r in rows if r["status"] == "pending"]
        failed = [r["id"] for r in rows if r["status"] == "failed"]
        if requeued:
            await ctx.db.execute("SELECT pg_notify('kubebyon_wakeup', 'jobs')")
        if rows:
            ctx.log.warning("jobs with expired leases", requeued=requeued, failed=failed)
        return Result(status={"requeued": len(requeued), "failed": len(failed)})
