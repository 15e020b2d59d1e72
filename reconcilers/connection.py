"""Connection: is each ready cluster's API reachable with the kubeconfig we hand out?

One key per cluster. Every interval the cluster's API answers ``GET /version`` (or not),
and the cluster row records ``connection_status`` (seed §2.1: ``kubeconfig_pending`` while
a ready cluster has no kubeconfig yet, ``reachable``, ``unreachable`` when the API does not
answer, ``error`` when the kubeconfig cannot be used), the observed Kubernetes version and
``last_observed_at``. An unreachable cluster is an observation, not a failed reconcile: no
backoff, no error storm, the next look is on the interval like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from kubebyon.adapters.vcluster_probe import ClusterUnreachable, KubeconfigInvalid, probe_version
from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context, Result
from kubebyon.secretbox import SecretBox, SecretKeyError

NAME = "connection"
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Observation:
    connection_status: str
    kubernetes_version: str | None = None
    latency_ms: float | None = None
    problem: str | None = None


async def observe(
    secrets: SecretBox, kubeconfig_encrypted: str | None, seconds: float
) -> Observation:
    """How the cluster's API answers its own kubeconfig right now."""
    if kubeconfig_encrypted is None:
        return Observation("kubeconfig_pending")
    try:
        probe = await probe_version(secrets.decrypt(kubeconfig_encrypted), seconds=seconds)
    except (KubeconfigInvalid, SecretKeyError) as exc:
        return Observation("error", problem=str(exc))
    except ClusterUnreachable as exc:
        return Observation("unreachable", problem=str(exc))
    return Observation("reachable", probe.git_version, probe.latency_ms)


class ConnectionReconciler:
    name = NAME
    max_concurrency = 8

    def __init__(
        self, secrets: SecretBox, *, interval: float, probe_timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.secrets = secrets
        self.resync_interval = interval
        self.probe_timeout = probe_timeout
        self.timeout = probe_timeout + 10.0  # the probe's own timeout fires first

    async def keys(self, db: Database) -> AsyncIterator[str]:
        for row in await db.fetch(db.q.observable_cluster_ids):
            yield row["id"]

    async def reconcile(self, key: str, ctx: Context) -> Result:
        db = ctx.db
        cluster = await db.fetchrow(db.q.cluster_for_observation, key)
        if cluster is None or cluster["status"] != "ready":
            return Result(forget=True)  # resync brings the key back once it is ready
        seen = await observe(self.secrets, cluster["kubeconfig_encrypted"], self.probe_timeout)
        await db.execute(
            db.q.record_cluster_connection, key, seen.connection_status, seen.kubernetes_version
        )
        if seen.connection_status != cluster["connection_status"]:
            ctx.log.info(
                "cluster connection changed",
                cluster_id=key,
                previous=cluster["connection_status"],
                connection_status=seen.connection_status,
                problem=seen.problem,
            )
        status = {"connection_status": seen.connection_status}
        if seen.problem:
            status["problem"] = seen.problem
        return Result(requeue_after=self.resync_interval, status=status)
