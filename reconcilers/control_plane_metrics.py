"""Control-plane metrics: a sample per ready cluster per interval, downsampled with age.

Keys are cluster ids, plus ``RETENTION_KEY`` for the sweep over every cluster's samples.
A sample (``control_plane_samples``, resolution 0) holds the CPU millicores and memory
bytes of the vCluster's control-plane pods from the host's metrics API (null when the host
has no metrics-server or does not answer), the latency of ``GET /version`` on the
cluster's API and its availability (1 answered, 0 not).

The sweep keeps what the history endpoint reads (1h/6h raw, 24h in 5-minute buckets, 7d in
hourly buckets): raw samples older than 6 hours become 5-minute averages, 5-minute
averages older than 24 hours become hourly averages, and every sample older than the
retention is deleted — deleted clusters' history included, as the seed keeps it (§3.4)
only as long as any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from kubebyon.adapters.kube import Kube
from kubebyon.adapters.vcluster_probe import control_plane_usage
from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context, Result
from kubebyon.secretbox import SecretBox
from reconcilers.connection import PROBE_TIMEOUT, observe

NAME = "control_plane_metrics"
# Never a cluster id: those start with a letter or digit (cl_…, or a bk-bcs id).
RETENTION_KEY = ":retention"
SWEEP_INTERVAL = 300.0
# (resolution rolled up, bucket seconds, age from which it is rolled up)
ROLLUPS = ((0, 300, timedelta(hours=6)), (300, 3600, timedelta(hours=24)))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ControlPlaneMetricsReconciler:
    name = NAME
    max_concurrency = 4

    def __init__(
        self,
        host: Kube | None,
        secrets: SecretBox,
        *,
        interval: float,
        retention: timedelta,
        probe_timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.host = host
        self.secrets = secrets
        self.resync_interval = interval
        self.retention = retention
        self.probe_timeout = probe_timeout
        self.timeout = 2 * probe_timeout + 10.0  # two probes, each with its own timeout
        self.clock = clock

    async def keys(self, db: Database) -> AsyncIterator[str]:
        yield RETENTION_KEY
        for row in await db.fetch(db.q.observable_cluster_ids):
            yield row["id"]

    async def reconcile(self, key: str, ctx: Context) -> Result:
        if key == RETENTION_KEY:
            await self.sweep(ctx.db)
            return Result(requeue_after=SWEEP_INTERVAL)
        db = ctx.db
        cluster = await db.fetchrow(db.q.cluster_for_observation, key)
        if cluster is None or cluster["status"] != "ready":
            return Result(forget=True)  # resync brings the key back once it is ready
        if cluster["kubeconfig_encrypted"] is None:
            return Result(requeue_after=self.resync_interval)  # nothing to sample yet
        sampled_at = self.clock()
        seen = await observe(self.secrets, cluster["kubeconfig_encrypted"], self.probe_timeout)
        usage = await control_plane_usage(
            self.host,
            namespace=cluster["namespace"],
            release=cluster["vcluster_name"],
            seconds=self.probe_timeout,
        )
        await db.execute(
            db.q.insert_control_plane_sample,
            key,
            sampled_at,
            usage.cpu_millicores if usage else None,
            usage.memory_bytes if usage else None,
            seen.latency_ms,
            1.0 if seen.connection_status == "reachable" else 0.0,
        )
        return Result(requeue_after=self.resync_interval)

    async def sweep(self, db: Database) -> None:
        now = self.clock()
        async with db.transaction() as conn:
            await conn.execute(db.q.expire_control_plane_samples, now - self.retention)
            for resolution, bucket, age in ROLLUPS:
                await conn.execute(db.q.rollup_control_plane_samples, now - age, resolution, bucket)
