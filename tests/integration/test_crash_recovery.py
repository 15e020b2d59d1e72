"""A process killed with SIGKILL mid-work: its keys and jobs are taken over once the
lease it held expires — not before, and never twice at once."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from kubebyon.db.database import Database
from kubebyon.db.desired_state import enqueue_operation, wake
from kubebyon.runtime.contract import Context, Result
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobContext, JobLoop
from reconcilers.job_leases import JobLeaseReconciler
from tests.support import RecordingReconciler, wait_until

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def holder(dsn: str, mode: str, lease: float) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.holder_process",
        dsn,
        mode,
        str(lease),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def read_line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"holder exited before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()


async def test_key_of_a_killed_process_is_taken_over_after_its_lease(
    db: Database, dsn: str
) -> None:
    async with db.transaction() as conn:
        await wake(conn, "test", "cluster-a")
    async with holder(dsn, "reconcile", lease=1.5) as proc:
        assert await read_line(proc, "holding") == "holding cluster-a"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    lease_end = await db.fetchval(
        "SELECT lease_expires_at FROM reconcile_queue WHERE key = 'cluster-a' "
        "AND lease_owner = 'doomed'"
    )
    assert lease_end is not None, "the killed process held the key"

    started_at: list[datetime] = []

    async def record(key: str, ctx: Context) -> Result:
        started_at.append(await ctx.db.fetchval("SELECT clock_timestamp()"))
        return Result()

    rec = RecordingReconciler(script=record)
    runtime = Runtime(db, [rec], owner="survivor", lease_seconds=5, idle_poll_seconds=0.2)
    await runtime.start()
    try:
        await rec.wait_for_calls("cluster-a", timeout=15)
    finally:
        await runtime.stop(grace=5)
    assert started_at[0] >= lease_end, "taken over only after the dead holder's lease ran out"
    row = await db.fetchrow("SELECT * FROM reconcile_queue WHERE key = 'cluster-a'")
    assert row["lease_owner"] is None
    assert row["last_reconciled_at"] is not None


async def test_job_of_a_killed_worker_is_requeued_and_finished_elsewhere(
    db: Database, dsn: str
) -> None:
    async with db.transaction() as conn:
        _, job = await enqueue_operation(
            conn, cluster_id="cl_x", operation_type="cluster_create", requested_by_user_id=None
        )
    async with holder(dsn, "job", lease=1.0) as proc:
        assert await read_line(proc, "holding") == f"holding {job['id']}"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    running = await db.fetchrow(db.q.get_job, job["id"])
    assert running["status"] == "running"
    assert running["worker_id"] == "doomed-worker"
    assert running["attempt_count"] == 1

    finished = asyncio.Event()

    async def create(ctx: JobContext) -> None:
        await ctx.set_stage("installing")
        finished.set()

    jobs = JobLoop(
        db,
        {"cluster_create": create},
        worker_id="healthy-worker",
        lease_seconds=5,
        idle_poll_seconds=0.2,
    )
    runtime = Runtime(
        db,
        [JobLeaseReconciler(max_attempts=3, interval=0.2)],
        extra_loops=[jobs],
        owner="survivor",
        lease_seconds=5,
        idle_poll_seconds=0.2,
    )
    await runtime.start()
    try:
        await asyncio.wait_for(finished.wait(), 15)
        done = await wait_until(
            lambda: _job_with_status(db, job["id"], "succeeded"), what="job succeeded"
        )
    finally:
        await runtime.stop(grace=5)
    assert done["attempt_count"] == 2
    assert done["worker_id"] == "healthy-worker"
    assert done["last_error"] == "lease of worker doomed-worker expired"
    operation = await db.fetchrow(
        "SELECT * FROM cluster_operations WHERE id = $1", job["operation_id"]
    )
    assert operation["status"] == "succeeded"
    assert operation["stage"] == "done"
    assert operation["finished_at"] is not None


async def _job_with_status(db: Database, job_id: str, status: str) -> object:
    row = await db.fetchrow(db.q.get_job, job_id)
    return row if row is not None and row["status"] == status else None
