"""The connection and control-plane-metrics reconcilers, against fake Kubernetes APIs (one
standing for a vCluster, one for the host with its metrics API) through the real
kubernetes_asyncio client, on real PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from kubebyon.adapters.kube import Kube, connect_host
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from kubebyon.runtime.contract import Context, Reconciler
from kubebyon.runtime.driver import Runtime
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings
from reconcilers import build_reconcilers
from reconcilers.connection import NAME as CONNECTION
from reconcilers.connection import ConnectionReconciler
from reconcilers.control_plane_metrics import NAME as METRICS
from reconcilers.control_plane_metrics import RETENTION_KEY, ControlPlaneMetricsReconciler
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import queue_row, wait_until

NOW = datetime(2026, 1, 10, 12, 2, tzinfo=UTC)


async def insert_cluster(
    db: Database,
    secrets: SecretBox,
    *,
    kubeconfig: dict[str, Any] | str | None,
    status: str = "ready",
    owner_id: str | None = None,
    vcluster_name: str | None = None,
) -> str:
    """A cluster row as the vcluster reconciler leaves it, with ``kubeconfig`` (a dict is
    dumped as YAML) stored encrypted."""
    cluster_id = new_id("cl")
    name = vcluster_name or f"vc-{cluster_id[-8:]}"
    if isinstance(kubeconfig, dict):
        kubeconfig = yaml.safe_dump(kubeconfig)
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name,"
        " kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib,"
        " control_plane_cpu_request_milli_cores, control_plane_memory_request_mib, status,"
        " kubeconfig_encrypted, kubeconfig_available)"
        " VALUES ($1, $2, $3, $3, $3, 'v1.33.4', 2000, 4096, 200, 256, $4, $5, $6)",
        cluster_id,
        owner_id,
        name,
        status,
        secrets.encrypt(kubeconfig) if kubeconfig is not None else None,
        kubeconfig is not None,
    )
    return cluster_id


@pytest.fixture
def secrets() -> SecretBox:
    return SecretBox([Fernet.generate_key()])


@pytest.fixture
async def vcluster() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI(git_version="v1.33.4") as fake:
        yield fake


@pytest.fixture
async def host() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as fake:
        yield fake


@pytest.fixture
async def host_api(host: FakeKubeAPI, tmp_path: Path) -> AsyncIterator[Kube]:
    """The host as the daemon connects to it (KUBEBYON_KUBECONFIG_PATH)."""
    kube = await connect_host(host.write_kubeconfig(tmp_path / "host-kubeconfig"))
    assert kube is not None
    yield kube
    await kube.close()


@asynccontextmanager
async def running(db: Database, reconcilers: Sequence[Reconciler]) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        db,
        reconcilers,
        lease_seconds=5.0,
        idle_poll_seconds=0.2,
        backoff_base=0.05,
        backoff_cap=0.3,
        rng=random.Random(6),
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace=5.0)


async def cluster(db: Database, cluster_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM clusters WHERE id = $1", cluster_id)


def connection_is(db: Database, cluster_id: str, status: str) -> Any:
    async def check() -> Any:
        row = await cluster(db, cluster_id)
        return row if row["connection_status"] == status else None

    return check


# ------------------------------------------------------------------------- connection


async def test_connection_status_follows_the_cluster_api(
    db: Database, secrets: SecretBox, vcluster: FakeKubeAPI
) -> None:
    reachable = await insert_cluster(db, secrets, kubeconfig=vcluster.kubeconfig_dict())
    pending = await insert_cluster(db, secrets, kubeconfig=None)
    unusable = await insert_cluster(db, secrets, kubeconfig="just a string")
    refused = await insert_cluster(db, secrets, kubeconfig=vcluster.kubeconfig_dict(token="nope"))
    provisioning = await insert_cluster(
        db, secrets, kubeconfig=vcluster.kubeconfig_dict(), status="provisioning"
    )
    async with running(db, [ConnectionReconciler(secrets, interval=0.2)]):
        row = await wait_until(connection_is(db, reachable, "reachable"), what="reachable")
        assert row["observed_kubernetes_version"] == "v1.33.4"
        assert row["last_observed_at"] is not None
        await wait_until(connection_is(db, pending, "kubeconfig_pending"), what="pending")
        await wait_until(connection_is(db, unusable, "error"), what="bad kubeconfig")
        await wait_until(connection_is(db, refused, "error"), what="refused credentials")

        vcluster.down()  # every request answers 503
        await wait_until(connection_is(db, reachable, "unreachable"), what="503 -> unreachable")
        vcluster.up()
        await wait_until(connection_is(db, reachable, "reachable"), what="back")

        await vcluster.stop()  # connections refused
        down = await wait_until(connection_is(db, reachable, "unreachable"), what="refused")
        assert down["observed_kubernetes_version"] == "v1.33.4"  # the last one seen stays
        await vcluster.start()
        await wait_until(connection_is(db, reachable, "reachable"), what="restarted")

        # an unreachable cluster is an observation, not a failing reconcile
        row = await queue_row(db, "connection", reachable)
        assert row["attempts"] == 0
        assert row["last_error"] is None

        # deleted: the key is dropped, the row keeps its last observation
        await db.execute("UPDATE clusters SET status = 'deleted' WHERE id = $1", reachable)
        await wait_until(lambda: _queue_row_gone(db, "connection", reachable), what="key forgotten")
    assert (await cluster(db, provisioning))["connection_status"] == "pending"
    assert (await cluster(db, reachable))["connection_status"] == "reachable"


async def _queue_row_gone(db: Database, reconciler: str, key: str) -> bool:
    return await queue_row(db, reconciler, key) is None


# ---------------------------------------------------------------------------- metrics


def pod_metrics(namespace: str, name: str, release: str, *usage: tuple[str, str]) -> Any:
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "vcluster", "release": release},
        },
        "timestamp": "2026-01-10T12:00:00Z",
        "window": "30s",
        "containers": [
            {"name": f"c{i}", "usage": {"cpu": cpu, "memory": memory}}
            for i, (cpu, memory) in enumerate(usage)
        ],
    }


async def samples(db: Database, cluster_id: str | None = None) -> list[Any]:
    return await db.fetch(
        "SELECT * FROM control_plane_samples WHERE $1::text IS NULL OR cluster_id = $1"
        " ORDER BY cluster_id, resolution_seconds, sampled_at",
        cluster_id,
    )


def metrics_reconciler(secrets: SecretBox, host: Kube | None, *, start: datetime = NOW) -> Any:
    """Its clock starts at ``start`` and moves a minute at each reading."""
    clock = iter(start + timedelta(minutes=i) for i in range(100))
    return ControlPlaneMetricsReconciler(
        host,
        secrets,
        interval=60,
        retention=timedelta(days=7),
        clock=lambda: next(clock),
    )


async def test_a_sample_holds_pod_usage_latency_and_availability(
    db: Database, secrets: SecretBox, vcluster: FakeKubeAPI, host: FakeKubeAPI, host_api: Kube
) -> None:
    host.register_resource("metrics.k8s.io", "v1beta1", "pods", "PodMetrics")
    host.put_object(pod_metrics("demo", "demo-0", "demo", ("25m", "100Mi"), ("250000n", "1Ki")))
    host.put_object(pod_metrics("demo", "demo-1", "demo", ("1", "1Gi")))  # an HA replica
    host.put_object(pod_metrics("demo", "other-0", "other", ("7", "7Gi")))  # not this release
    reconciler = metrics_reconciler(secrets, host_api)
    cluster_id = await insert_cluster(
        db, secrets, kubeconfig=vcluster.kubeconfig_dict(), vcluster_name="demo"
    )
    ctx = Context(db=db, key=cluster_id, attempt=0)

    await reconciler.reconcile(cluster_id, ctx)
    vcluster.down()
    await reconciler.reconcile(cluster_id, ctx)

    first, second = await samples(db, cluster_id)
    assert first["resolution_seconds"] == 0
    assert first["sampled_at"] == NOW
    assert first["cpu_millicores"] == pytest.approx(25 + 0.25 + 1000)
    assert first["memory_bytes"] == pytest.approx(100 * 2**20 + 1024 + 2**30)
    assert first["available"] == 1.0
    assert first["api_latency_ms"] > 0
    assert second["sampled_at"] == NOW + timedelta(minutes=1)
    assert second["available"] == 0.0
    assert second["api_latency_ms"] is None
    assert second["cpu_millicores"] == pytest.approx(1025.25)  # the host still answers


async def test_without_a_metrics_api_usage_is_null(
    db: Database, secrets: SecretBox, vcluster: FakeKubeAPI, host: FakeKubeAPI, host_api: Kube
) -> None:
    cluster_id = await insert_cluster(db, secrets, kubeconfig=vcluster.kubeconfig_dict())
    ctx = Context(db=db, key=cluster_id, attempt=0)
    minute = timedelta(minutes=1)
    await metrics_reconciler(secrets, host_api).reconcile(cluster_id, ctx)  # no metrics API
    await metrics_reconciler(secrets, None, start=NOW + minute).reconcile(cluster_id, ctx)
    await host.stop()  # host down
    await metrics_reconciler(secrets, host_api, start=NOW + 2 * minute).reconcile(cluster_id, ctx)

    rows = await samples(db, cluster_id)
    assert len(rows) == 3
    for row in rows:
        assert row["cpu_millicores"] is None
        assert row["memory_bytes"] is None
        assert row["available"] == 1.0


async def test_clusters_that_are_not_ready_are_not_sampled(
    db: Database, secrets: SecretBox, vcluster: FakeKubeAPI
) -> None:
    reconciler = metrics_reconciler(secrets, None)
    provisioning = await insert_cluster(
        db, secrets, kubeconfig=vcluster.kubeconfig_dict(), status="provisioning"
    )
    no_kubeconfig = await insert_cluster(db, secrets, kubeconfig=None)
    result = await reconciler.reconcile(provisioning, Context(db=db, key=provisioning, attempt=0))
    assert result.forget
    result = await reconciler.reconcile("cl_gone", Context(db=db, key="cl_gone", attempt=0))
    assert result.forget
    result = await reconciler.reconcile(no_kubeconfig, Context(db=db, key=no_kubeconfig, attempt=0))
    assert not result.forget
    assert await samples(db) == []


async def insert_sample(
    db: Database,
    cluster_id: str,
    at: datetime,
    resolution: int,
    cpu: float | None,
    available: float = 1.0,
) -> None:
    await db.execute(
        "INSERT INTO control_plane_samples (cluster_id, sampled_at, resolution_seconds,"
        " cpu_millicores, memory_bytes, api_latency_ms, available)"
        " VALUES ($1, $2, $3, $4::float8, $4::float8 * 1000, $4::float8 / 10, $5)",
        cluster_id,
        at,
        resolution,
        cpu,
        available,
    )


async def test_the_sweep_downsamples_with_age_and_expires_after_retention(
    db: Database, secrets: SecretBox
) -> None:
    live = await insert_cluster(db, secrets, kubeconfig=None)
    deleted = await insert_cluster(db, secrets, kubeconfig=None, status="deleted")
    day = timedelta(days=1)
    # raw samples (NOW is 12:02; raw samples become 5-minute buckets after 6 hours)
    await insert_sample(db, live, NOW - timedelta(hours=7, minutes=2), 0, 10)  # 05:00
    await insert_sample(db, live, NOW - timedelta(hours=7), 0, 20, 1.0)  # 05:02
    await insert_sample(db, live, NOW - timedelta(hours=6, minutes=58), 0, None, 0.0)  # 05:04
    await insert_sample(db, live, NOW - timedelta(hours=6, minutes=1), 0, 40)  # 06:01
    await insert_sample(db, live, NOW - timedelta(hours=1), 0, 50)  # 11:02
    await insert_sample(db, deleted, NOW - timedelta(hours=7), 0, 60)  # 05:02
    await insert_sample(db, live, NOW - 8 * day, 0, 70)  # past retention
    # 5-minute buckets (hourly buckets after 24 hours)
    yesterday = datetime(2026, 1, 9, tzinfo=UTC)
    await insert_sample(db, live, yesterday.replace(hour=5), 300, 10)
    await insert_sample(db, live, yesterday.replace(hour=5, minute=5), 300, 20, 0.0)
    await insert_sample(db, live, yesterday.replace(hour=5, minute=55), 300, 60)
    await insert_sample(db, live, yesterday.replace(hour=12), 300, 80)  # its hour is not over
    # hourly buckets
    await insert_sample(db, live, NOW - 7 * day - timedelta(minutes=3), 3600, 90)  # expired
    await insert_sample(db, live, NOW - 7 * day + timedelta(minutes=58), 3600, 100)

    reconciler = metrics_reconciler(secrets, None)
    expected = [
        (deleted, 300, datetime(2026, 1, 10, 5, 0, tzinfo=UTC), 60, 1.0),
        (live, 0, datetime(2026, 1, 10, 6, 1, tzinfo=UTC), 40, 1.0),  # bucket not complete
        (live, 0, datetime(2026, 1, 10, 11, 2, tzinfo=UTC), 50, 1.0),
        (live, 300, datetime(2026, 1, 9, 12, 0, tzinfo=UTC), 80, 1.0),
        (live, 300, datetime(2026, 1, 10, 5, 0, tzinfo=UTC), 15, pytest.approx(2 / 3)),
        (live, 3600, datetime(2026, 1, 3, 13, 0, tzinfo=UTC), 100, 1.0),
        (live, 3600, datetime(2026, 1, 9, 5, 0, tzinfo=UTC), 30, pytest.approx(2 / 3)),
    ]
    for _ in range(2):  # a second sweep changes nothing
        await reconciler.reconcile(RETENTION_KEY, Context(db=db, key=RETENTION_KEY, attempt=0))
        rows = await samples(db)
        got = [
            (r["cluster_id"], r["resolution_seconds"], r["sampled_at"], r["cpu_millicores"])
            for r in rows
        ]
        assert sorted(got) == sorted(e[:4] for e in expected)
        by_key = {(r["cluster_id"], r["resolution_seconds"], r["sampled_at"]): r for r in rows}
        for cluster_id, resolution, at, cpu, available in expected:
            row = by_key[(cluster_id, resolution, at)]
            assert row["available"] == available
            assert row["memory_bytes"] == pytest.approx(cpu * 1000)


# -------------------------------------------------------------------------- wiring


async def test_both_reconcilers_run_from_the_registration_list(
    db: Database, secrets: SecretBox, vcluster: FakeKubeAPI
) -> None:
    settings = Settings(
        connection_probe_interval_seconds=0.2, control_plane_metrics_interval_seconds=0.2
    )
    cluster_id = await insert_cluster(db, secrets, kubeconfig=vcluster.kubeconfig_dict())
    ours = [r for r in build_reconcilers(settings, secrets) if r.name in (CONNECTION, METRICS)]
    assert len(ours) == 2
    async with running(db, ours):
        await wait_until(connection_is(db, cluster_id, "reachable"), what="probed")
        await wait_until(lambda: _sample_count(db, cluster_id, 2), what="two samples")
    rows = await samples(db, cluster_id)
    assert all(r["available"] == 1.0 and r["cpu_millicores"] is None for r in rows)


async def _sample_count(db: Database, cluster_id: str, count: int) -> bool:
    return len(await samples(db, cluster_id)) >= count
