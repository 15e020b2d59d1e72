"""Cluster jobs (seed §2.6/§2.7) on the same lease mechanism as reconcilers.

A job row is written by the API in the same transaction as the desired-state change.
Workers claim pending rows with ``FOR UPDATE SKIP LOCKED``, hold a lease
(``leased_until``) extended by heartbeats, and finish them. A worker that dies leaves
an expired lease behind; the job-lease reconciler puts such jobs back to pending.
This replaces the seed's RabbitMQ + kubebyon-worker: same job fields, no broker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from kubebyon import metrics
from kubebyon.db.database import Database
from kubebyon.runtime.backoff import backoff_seconds
from kubebyon.runtime.contract import NotYet, PermanentError, TemporaryError
from kubebyon.runtime.driver import describe_error
from kubebyon.runtime.loop import ClaimLoop


@dataclass
class JobContext:
    db: Database
    job: asyncpg.Record
    log: Any

    @property
    def payload(self) -> dict[str, Any]:
        value: dict[str, Any] = self.job["payload"]
        return value

    async def set_stage(self, stage: str) -> None:
        """Progress visible in the cluster's operations (seed §2.6 ``stage``)."""
        if self.job["operation_id"]:
            await self.db.execute(self.db.q.set_operation_stage, self.job["operation_id"], stage)


JobHandler = Callable[[JobContext], Awaitable[None]]


class JobLoop(ClaimLoop):
    name = "jobs"

    def __init__(
        self,
        db: Database,
        handlers: Mapping[str, JobHandler],
        *,
        worker_id: str,
        lease_seconds: float,
        idle_poll_seconds: float,
        max_concurrency: int = 4,
        max_attempts: int = 5,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        super().__init__(lease_seconds=lease_seconds, idle_poll_seconds=idle_poll_seconds)
        self.db = db
        self.handlers = dict(handlers)
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    @staticmethod
    def key_of(item: Any) -> str:
        return str(item["id"])

    async def claim(self, limit: int) -> Sequence[asyncpg.Record]:
        return await self.db.fetch(self.db.q.claim_jobs, self.worker_id, limit, self.lease_seconds)

    async def extend(self, keys: list[str]) -> set[str]:
        rows = await self.db.fetch(
            self.db.q.extend_job_leases, self.worker_id, keys, self.lease_seconds
        )
        return {r["id"] for r in rows}

    async def next_due_in(self) -> float | None:
        value = await self.db.fetchval(
            "SELECT extract(epoch FROM min(due_at) - now())::float8 FROM cluster_jobs "
            "WHERE status = 'pending'"
        )
        return None if value is None else float(value)

    async def release(self) -> None:
        await self.db.fetch(self.db.q.release_jobs, self.worker_id)

    async def process(self, job: asyncpg.Record) -> None:
        log = self.log.bind(job_id=job["id"], job_type=job["type"], attempt=job["attempt_count"])
        handler = self.handlers.get(job["type"])
        started = time.perf_counter()
        result = "succeeded"
        if handler is None:
            result = "failed"
            await self._finish(job, "failed", f"no handler for job type {job['type']!r}")
        else:
            try:
                await handler(JobContext(self.db, job, log))
            except NotYet as exc:
                result = "not_yet"
                await self.db.execute(self.db.q.defer_job, job["id"], self.worker_id, exc.delay)
            except PermanentError as exc:
                result = "failed"
                await self._finish(job, "failed", describe_error(exc))
            except Exception as exc:
                if not isinstance(exc, TemporaryError):
                    log.exception("job handler raised")
                error = describe_error(exc)
                if job["attempt_count"] >= self.max_attempts:
                    result = "failed"
                    await self._finish(
                        job, "failed", f"gave up after {job['attempt_count']} attempts: {error}"
                    )
                else:
                    result = "retry"
                    delay = backoff_seconds(
                        job["attempt_count"],
                        base=self.backoff_base,
                        cap=self.backoff_cap,
                        rng=self.rng,
                    )
                    log.warning("job failed; retrying", error=error, retry_in=delay)
                    await self.db.execute(
                        self.db.q.retry_job, job["id"], self.worker_id, error, delay
                    )
            else:
                await self._finish(job, "succeeded", None)
        metrics.JOBS_FINISHED.labels(job["type"], result).inc()
        # A job waiting on a reconciler looks every few seconds: keep that out of INFO.
        (log.debug if result == "not_yet" else log.info)(
            "job attempt finished",
            result=result,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _finish(self, job: asyncpg.Record, status: str, error: str | None) -> None:
        await self.db.execute(self.db.q.finish_job, job["id"], self.worker_id, status, error)
