"""Cluster jobs (seed §2.6/§2.7): claimed under a lease, retried, failed, re-queued."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from kubebyon.db.database import Database
from kubebyon.db.desired_state import enqueue_operation
from kubebyon.runtime.contract import NotYet, PermanentError, TemporaryError
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobContext, JobLoop
from reconcilers.job_leases import JobLeaseReconciler
from tests.support import wait_until

Handler = Callable[[JobContext], Awaitable[None]]


@asynccontextmanager
async def workers(
    db: Database, handlers: dict[str, Handler], *, max_attempts: int = 3
) -> AsyncIterator[Runtime]:
    jobs = JobLoop(
        db,
        handlers,
        worker_id="w1",
        lease_seconds=5,
        idle_poll_seconds=30,
        max_attempts=max_attempts,
        backoff_base=0.05,
        backoff_cap=0.1,
        rng=random.Random(1),
    )
    runtime = Runtime(
        db,
        [JobLeaseReconciler(max_attempts=max_attempts, interval=0.2)],
        extra_loops=[jobs],
        lease_seconds=5,
        idle_poll_seconds=30,
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace=5)


async def submit(db: Database, job_type: str = "cluster_create") -> Any:
    async with db.transaction() as conn:
        _, job = await enqueue_operation(
            conn,
            cluster_id="cl_demo",
            operation_type=job_type,
            requested_by_user_id="usr_1",
            payload={"vcluster_name": "demo"},
        )
    return job


async def settled(db: Database, job_id: str) -> Any:
    async def check() -> Any:
        row = await db.fetchrow(db.q.get_job, job_id)
        return row if row["status"] in ("succeeded", "failed") else None

    return await wait_until(check, what=f"job {job_id} finished")


async def operation_of(db: Database, job: Any) -> Any:
    return await db.fetchrow("SELECT * FROM cluster_operations WHERE id = $1", job["operation_id"])


async def test_job_runs_with_its_payload_and_finishes_its_operation(db: Database) -> None:
    seen: list[dict[str, Any]] = []

    async def create(ctx: JobContext) -> None:
        seen.append(ctx.payload)
        await ctx.set_stage("installing")

    async with workers(db, {"cluster_create": create}):
        job = await submit(db)
        done = await settled(db, job["id"])
    assert seen == [{"vcluster_name": "demo"}]
    assert done["status"] == "succeeded"
    assert done["attempt_count"] == 1
    assert done["leased_until"] is None
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    op = await operation_of(db, job)
    assert (op["status"], op["stage"], op["requested_by_user_id"]) == ("succeeded", "done", "usr_1")


async def test_temporary_failure_is_retried_and_remembered(db: Database) -> None:
    async def flaky(ctx: JobContext) -> None:
        if ctx.job["attempt_count"] < 2:
            raise TemporaryError("host API unavailable")

    async with workers(db, {"cluster_create": flaky}):
        job = await submit(db)
        done = await settled(db, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempt_count"] == 2
    assert done["last_error"] == "host API unavailable"


async def test_job_fails_after_its_attempts_and_fails_its_operation(db: Database) -> None:
    async def broken(ctx: JobContext) -> None:
        raise TemporaryError("helm install failed")

    async with workers(db, {"cluster_create": broken}, max_attempts=3):
        job = await submit(db)
        done = await settled(db, job["id"])
    assert done["status"] == "failed"
    assert done["attempt_count"] == 3
    assert done["last_error"] == "gave up after 3 attempts: helm install failed"
    op = await operation_of(db, job)
    assert op["status"] == "failed"
    assert op["error_message"] == done["last_error"]


async def test_permanent_error_and_unknown_type_fail_at_once(db: Database) -> None:
    async def invalid(ctx: JobContext) -> None:
        raise PermanentError("kubernetes_version v9.99 is not supported")

    async with workers(db, {"cluster_create": invalid}):
        first = await submit(db)
        second = await submit(db, "cluster_teleport")
        one = await settled(db, first["id"])
        two = await settled(db, second["id"])
    assert (one["status"], one["attempt_count"]) == ("failed", 1)
    assert one["last_error"] == "kubernetes_version v9.99 is not supported"
    assert two["status"] == "failed"
    assert two["last_error"] == "no handler for job type 'cluster_teleport'"


async def test_not_yet_waits_without_spending_attempts(db: Database) -> None:
    """A job tracking work done elsewhere (an install) may wait far longer than its
    attempts would allow retries: NotYet puts it back to pending, attempt not counted."""
    calls: list[int] = []

    async def waiting(ctx: JobContext) -> None:
        calls.append(ctx.job["attempt_count"])
        if len(calls) < 6:
            raise NotYet("install in progress", delay=0.01)

    async with workers(db, {"cluster_create": waiting}, max_attempts=2):
        job = await submit(db)
        done = await settled(db, job["id"])
    assert done["status"] == "succeeded"
    assert calls == [1] * 6  # every look is attempt 1 again
    assert done["attempt_count"] == 1
    assert done["last_error"] is None  # waiting is not an error
    assert (await operation_of(db, job))["status"] == "succeeded"


async def test_lease_reconciler_fails_a_job_whose_attempts_are_spent(db: Database) -> None:
    job = await submit(db)
    await db.execute(
        "UPDATE cluster_jobs SET status = 'running', worker_id = 'gone', attempt_count = 3, "
        "leased_until = now() - interval '1 second' WHERE id = $1",
        job["id"],
    )
    async with workers(db, {}, max_attempts=3):
        done = await settled(db, job["id"])
    assert done["status"] == "failed"
    assert done["last_error"] == "gave up after 3 attempts; last: lease of worker gone expired"
    assert (await operation_of(db, job))["status"] == "failed"


async def test_shutdown_gives_running_jobs_back_without_spending_an_attempt(
    db: Database,
) -> None:
    started = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    jobs = JobLoop(
        db, {"cluster_create": slow}, worker_id="w1", lease_seconds=30, idle_poll_seconds=30
    )
    runtime = Runtime(db, [], extra_loops=[jobs], lease_seconds=30, idle_poll_seconds=30)
    await runtime.start()
    job = await submit(db)
    await asyncio.wait_for(started.wait(), 10)
    await runtime.stop(grace=0.1)
    row = await db.fetchrow(db.q.get_job, job["id"])
    assert row["status"] == "pending"
    assert row["attempt_count"] == 0
    assert row["leased_until"] is None


async def test_admin_listing_orders_newest_first_and_filters(db: Database) -> None:
    jobs = [await submit(db) for _ in range(3)]
    await db.execute("UPDATE cluster_jobs SET status = 'failed' WHERE id = $1", jobs[0]["id"])
    rows = await db.fetch(db.q.list_cluster_jobs, None, None, 100)
    assert [r["id"] for r in rows] == [j["id"] for j in reversed(jobs)]
    failed = await db.fetch(db.q.list_cluster_jobs, "failed", "cl_demo", 100)
    assert [r["id"] for r in failed] == [jobs[0]["id"]]
    assert await db.fetch(db.q.list_cluster_jobs, None, "cl_other", 100) == []
