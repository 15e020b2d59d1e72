"""Clusters on vCluster end to end: the vcluster reconciler and the cluster jobs on the
real Runtime and PostgreSQL, against the fake Kubernetes API (the host) with a fake k3s
helm-controller, and a second fake API standing for the vCluster itself."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from kubernetes_asyncio import client, config

from kubebyon.adapters.kube import NAMESPACES, HostConfigError, Kube, KubeError, connect_host
from kubebyon.db.database import Database
from kubebyon.db.desired_state import enqueue_operation, wake
from kubebyon.domain.admission import KEY_PURPOSE, signature
from kubebyon.domain.ids import new_id
from kubebyon.health import HealthMonitor
from kubebyon.runtime.contract import Context, PermanentError
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobLoop
from kubebyon.secretbox import SecretBox
from reconcilers.cluster_jobs import cluster_job_handlers
from reconcilers.job_leases import JobLeaseReconciler
from reconcilers.vcluster import NO_HOST, VClusterReconciler
from tests.fakes.helm_controller import FINALIZER, FakeHelmController, chart_values
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import queue_row, wait_until

ROOT = Path(__file__).resolve().parents[2]
REPO, VERSION = "https://charts.example.test", "0.36.1"
POLL = 0.05


@dataclass
class Env:
    db: Database
    host: FakeKubeAPI
    vcluster: FakeKubeAPI
    helm: FakeHelmController
    kube: Kube
    secrets: SecretBox

    def reconciler(self, **options: Any) -> VClusterReconciler:
        return VClusterReconciler(
            self.kube,
            self.secrets,
            chart_repo=REPO,
            chart_version=VERSION,
            poll_seconds=POLL,
            resync_interval=3600,
            **options,
        )

    @asynccontextmanager
    async def running(self, *, max_attempts: int = 3) -> AsyncIterator[Runtime]:
        jobs = JobLoop(
            self.db,
            cluster_job_handlers(poll_seconds=POLL),
            worker_id="w1",
            lease_seconds=10,
            idle_poll_seconds=1,
            max_attempts=max_attempts,
            backoff_base=0.05,
            backoff_cap=0.2,
        )
        runtime = Runtime(
            self.db,
            [self.reconciler(), JobLeaseReconciler(max_attempts=max_attempts, interval=0.2)],
            extra_loops=[jobs],
            lease_seconds=10,
            idle_poll_seconds=1,
            backoff_base=0.05,
            backoff_cap=0.2,
            rng=random.Random(6),
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop(grace=5)


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    async with (
        FakeKubeAPI() as host,
        FakeKubeAPI(tls=True, git_version="v1.31.2") as vcluster,
        FakeHelmController(host, vcluster) as helm,
    ):
        kube = Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)
        yield Env(db, host, vcluster, helm, kube, SecretBox([Fernet.generate_key()]))


# ------------------------------------------------------------------- helpers


async def make_user(db: Database) -> str:
    user_id = new_id("usr")
    await db.execute(
        "INSERT INTO users (id, email) VALUES ($1, $2)", user_id, f"{user_id}@example.com"
    )
    return user_id


async def create_cluster(db: Database, owner: str, **fields: Any) -> tuple[str, str]:
    """Write a cluster as the console API does: row, operation + job, wake-up."""
    name = fields.pop("vcluster_name", "demo")
    row = {
        "id": new_id("cl"),
        "owner_user_id": owner,
        "name": name,
        "namespace": name,
        "vcluster_name": name,
        "control_plane_host": "127.0.0.1",
        "kubernetes_version": "v1.31.2",
        "workload_cpu_limit_milli_cores": 2000,
        "workload_memory_limit_mib": 4096,
        "control_plane_cpu_request_milli_cores": 100,
        "control_plane_memory_request_mib": 512,
        "public_access_enabled": False,
        "public_access_mode": "nodeport",
        "public_access_port": None,
        **fields,
    }
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    async with db.transaction() as conn:
        await conn.execute(f"INSERT INTO clusters ({columns}) VALUES ({params})", *row.values())
        _, job = await enqueue_operation(
            conn,
            cluster_id=row["id"],
            operation_type="cluster_create",
            requested_by_user_id=owner,
            payload={"generation": 1},
        )
        await wake(conn, "vcluster", row["id"])
    return row["id"], job["id"]


async def change_cluster(db: Database, cluster_id: str, operation: str, **changes: Any) -> str:
    """An update (or, with status='deleting', a deletion) as the console API writes it."""
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    async with db.transaction() as conn:
        generation = await conn.fetchval(
            f"UPDATE clusters SET {sets}, generation = generation + 1, updated_at = now() "
            "WHERE id = $1 RETURNING generation",
            cluster_id,
            *changes.values(),
        )
        _, job = await enqueue_operation(
            conn,
            cluster_id=cluster_id,
            operation_type=operation,
            requested_by_user_id=None,
            payload={"generation": generation},
        )
        await wake(conn, "vcluster", cluster_id)
    job_id: str = job["id"]
    return job_id


async def cluster(db: Database, cluster_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM clusters WHERE id = $1", cluster_id)


async def settled(db: Database, job_id: str, timeout: float = 20) -> Any:
    async def check() -> Any:
        row = await db.fetchrow(db.q.get_job, job_id)
        return row if row["status"] in ("succeeded", "failed") else None

    return await wait_until(check, timeout=timeout, what=f"job {job_id} finished")


async def operation(db: Database, job_id: str) -> Any:
    return await db.fetchrow(
        "SELECT o.* FROM cluster_operations o JOIN cluster_jobs j ON j.operation_id = o.id "
        "WHERE j.id = $1",
        job_id,
    )


async def audit_actions(db: Database, cluster_id: str) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch(
        "SELECT action, result, actor_user_id FROM audit_events WHERE cluster_id = $1 "
        "ORDER BY occurred_at, id",
        cluster_id,
    )
    return [(r["action"], r["result"], r["actor_user_id"]) for r in rows]


async def stage_of(db: Database, job_id: str, stage: str) -> bool:
    return bool((await operation(db, job_id))["stage"] == stage)


async def forgotten(db: Database, cluster_id: str) -> bool:
    return await queue_row(db, "vcluster", cluster_id) is None


# ----------------------------------------------------------------- lifecycle


async def test_create_update_delete(env: Env) -> None:
    db, host, helm = env.db, env.host, env.helm
    owner = await make_user(db)
    port = env.vcluster.port  # the NodePort "is" the fake vCluster's port on 127.0.0.1
    async with env.running():
        cluster_id, job_id = await create_cluster(
            db, owner, public_access_enabled=True, public_access_port=port
        )
        created = await settled(db, job_id)
        assert (created["status"], created["attempt_count"]) == ("succeeded", 1)
        assert (await operation(db, job_id))["stage"] == "done"

        row = await cluster(db, cluster_id)
        endpoint = f"https://127.0.0.1:{port}"
        assert row["status"] == "ready"
        assert row["api_endpoint"] == endpoint
        assert row["observed_generation"] == 1
        assert row["kubeconfig_available"] is True
        assert row["kubeconfig_available_at"] is not None
        assert row["connection_status"] == "pending"  # the connection reconciler's to probe
        assert row["last_error_message"] is None
        assert await queue_row(db, "connection", cluster_id) is not None

        # Stored encrypted; decrypted, it reaches the vCluster at api_endpoint.
        assert env.vcluster.token not in row["kubeconfig_encrypted"]
        kubeconfig = yaml.safe_load(env.secrets.decrypt(row["kubeconfig_encrypted"]))
        assert kubeconfig["clusters"][0]["cluster"]["server"] == endpoint
        api = await config.new_client_from_config_dict(kubeconfig)
        async with api:
            version = await client.VersionApi(api).get_code()
        assert version.git_version == "v1.31.2"

        namespace = host.get("namespaces", "demo")
        assert namespace is not None
        assert namespace["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "kubebyon",
            "kubebyon.io/cluster-id": cluster_id,
        }
        assert host.get("resourcequotas", "kubebyon-workloads", "demo")["spec"]["hard"] == {
            "requests.cpu": "2200m",
            "requests.memory": "4736Mi",
        }
        assert host.get("limitranges", "kubebyon-defaults", "demo") is not None
        (chart,) = host.objects("helmcharts")
        assert chart["metadata"]["finalizers"] == [FINALIZER]
        assert {k: chart["spec"][k] for k in ("chart", "repo", "version", "targetNamespace")} == {
            "chart": "vcluster",
            "repo": REPO,
            "version": VERSION,
            "targetNamespace": "demo",
        }
        values = chart_values(chart)
        assert values["exportKubeConfig"]["server"] == endpoint
        assert values["controlPlane"]["service"]["spec"]["type"] == "NodePort"
        first_job = host.get("jobs", "helm-install-demo", "demo")["metadata"]["uid"]

        # Update resources and public access: the same HelmChart changes in place, and
        # the old completed install job does not count for the new values.
        helm.pause()
        job_id = await change_cluster(
            db,
            cluster_id,
            "cluster_update",
            workload_cpu_limit_milli_cores=3000,
            control_plane_cpu_request_milli_cores=250,
            public_access_mode="loadbalancer",
        )
        await wait_until(lambda: stage_of(db, job_id, "installing"), what="upgrade waits")
        assert (await cluster(db, cluster_id))["observed_generation"] == 1
        helm.resume()
        assert (await settled(db, job_id))["status"] == "succeeded"
        (chart,) = host.objects("helmcharts")
        values = chart_values(chart)
        assert values["controlPlane"]["service"]["spec"]["type"] == "LoadBalancer"
        assert values["controlPlane"]["statefulSet"]["resources"]["requests"]["cpu"] == "250m"
        assert values["exportKubeConfig"]["server"] == "https://127.0.0.1:443"
        # The upgrade really ran: a new install job, not the old completed one.
        assert host.get("jobs", "helm-install-demo", "demo")["metadata"]["uid"] != first_job
        assert helm.installed == ["demo/demo", "demo/demo"]
        hard = host.get("resourcequotas", "kubebyon-workloads", "demo")["spec"]["hard"]
        assert hard["requests.cpu"] == "3350m"
        row = await cluster(db, cluster_id)
        assert (row["status"], row["observed_generation"]) == ("ready", 2)
        assert row["api_endpoint"] == "https://127.0.0.1:443"
        readdressed = yaml.safe_load(env.secrets.decrypt(row["kubeconfig_encrypted"]))
        assert readdressed["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:443"

        # Delete: helm-controller's finalizer holds the HelmChart until it has uninstalled.
        helm.pause()
        job_id = await change_cluster(db, cluster_id, "cluster_delete", status="deleting")
        await wait_until(
            lambda: (
                (host.get("helmcharts", "demo", "demo") or {})
                .get("metadata", {})
                .get("deletionTimestamp")
            ),
            what="HelmChart deletion requested",
        )
        assert host.get("namespaces", "demo") is not None  # not before the uninstall
        assert (await cluster(db, cluster_id))["status"] == "deleting"
        helm.resume()
        deleted = await settled(db, job_id)
        assert deleted["status"] == "succeeded"
        row = await cluster(db, cluster_id)
        assert row["status"] == "deleted"
        assert row["deleted_at"] is not None
        assert row["kubeconfig_encrypted"] is None
        assert host.objects("helmcharts") == []
        assert host.get("namespaces", "demo") is None
        assert helm.uninstalled == ["demo/demo"]
        await wait_until(lambda: forgotten(db, cluster_id), what="key forgotten")
    assert await audit_actions(db, cluster_id) == [
        ("create_succeeded", "success", owner),
        ("settings_update_succeeded", "success", owner),
        ("delete_succeeded", "success", owner),
    ]


async def test_install_stages_show_and_waiting_spends_no_attempts(env: Env) -> None:
    """A HelmChart has no success condition: the job waits for the install job AND the
    control plane; all the while the operation shows the stage and keeps its attempt."""
    db, helm = env.db, env.helm
    owner = await make_user(db)
    helm.pause()
    helm.set_control_plane_ready(False)
    async with env.running(max_attempts=2):
        cluster_id, job_id = await create_cluster(db, owner)

        await wait_until(lambda: stage_of(db, job_id, "installing"), what="installing")
        row = await cluster(db, cluster_id)
        assert (row["status"], row["connection_status"]) == ("provisioning", "kubeconfig_pending")
        helm.resume()  # the install job completes, the StatefulSet is not ready
        await wait_until(lambda: stage_of(db, job_id, "waiting_for_control_plane"), what="waiting")
        assert (await cluster(db, cluster_id))["status"] == "provisioning"
        helm.set_control_plane_ready(True)
        done = await settled(db, job_id)
    assert (done["status"], done["attempt_count"]) == ("succeeded", 1)
    row = await cluster(db, cluster_id)
    assert row["status"] == "ready"
    # Public access off: the endpoint is the vCluster Service inside the host cluster.
    assert row["api_endpoint"] == "https://demo.demo.svc:443"


async def test_host_api_down_during_create_recovers(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    host.down()
    async with env.running(max_attempts=2):
        cluster_id, job_id = await create_cluster(db, owner)

        async def failing() -> Any:
            row = await cluster(db, cluster_id)
            return row if row["last_error_message"] else None

        row = await wait_until(failing, what="host error recorded")
        assert row["status"] == "provisioning"
        assert row["last_error_message"].startswith("host cluster: 503")
        # Several failed reconciles later the job is still waiting, not failed.
        await wait_until(lambda: _attempts_at_least(db, "vcluster", cluster_id, 3), what="retries")
        job = await db.fetchrow(db.q.get_job, job_id)
        assert job["status"] in ("pending", "running")
        host.up()
        assert (await settled(db, job_id))["status"] == "succeeded"
    row = await cluster(db, cluster_id)
    assert (row["status"], row["last_error_message"]) == ("ready", None)
    assert len(host.objects("helmcharts")) == 1
    assert env.helm.installed == ["demo/demo"]


async def _attempts_at_least(db: Database, reconciler: str, key: str, n: int) -> bool:
    row = await queue_row(db, reconciler, key)
    return row is not None and row["attempts"] >= n


async def test_failed_install_is_an_error_until_the_cluster_is_changed(env: Env) -> None:
    db, host, helm = env.db, env.host, env.helm
    owner = await make_user(db)
    helm.fail_with = "chart vcluster version 0.36.1 not found in repository"
    async with env.running():
        cluster_id, job_id = await create_cluster(db, owner)
        failed = await settled(db, job_id)
        assert failed["status"] == "failed"
        assert "chart vcluster version 0.36.1 not found" in failed["last_error"]
        row = await cluster(db, cluster_id)
        assert row["status"] == "error"
        assert row["last_error_message"] == failed["last_error"]
        assert "logs job/helm-install-demo" in row["last_error_message"]
        assert (await operation(db, job_id))["status"] == "failed"

        # The operator fixes the cause; the user's next change converges the cluster.
        helm.fail_with = None
        job_id = await change_cluster(
            db, cluster_id, "cluster_update", workload_memory_limit_mib=8192
        )
        assert (await settled(db, job_id))["status"] == "succeeded"
    assert (await cluster(db, cluster_id))["status"] == "ready"
    assert len(host.objects("helmcharts")) == 1
    assert await audit_actions(db, cluster_id) == [
        ("create_failed", "failure", owner),
        ("create_succeeded", "success", owner),
    ]


async def test_invalid_desired_state_is_an_actionable_error(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    host.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "taken"}})
    async with env.running():
        no_host, first = await create_cluster(
            db, owner, public_access_enabled=True, control_plane_host=None
        )
        foreign, second = await create_cluster(db, owner, vcluster_name="taken")
        one, two = await settled(db, first), await settled(db, second)
        assert (one["status"], two["status"]) == ("failed", "failed")
        assert "public access needs control_plane_host" in one["last_error"]
        assert "already has a namespace 'taken'" in two["last_error"]
        for cluster_id in (no_host, foreign):
            row = await cluster(db, cluster_id)
            assert row["status"] == "error"
            assert row["observed_generation"] == 1
        assert host.get("namespaces", "demo") is None
        assert host.objects("helmcharts") == []

        # Deleting the cluster leaves the namespace it never owned alone.
        job_id = await change_cluster(db, foreign, "cluster_delete", status="deleting")
        assert (await settled(db, job_id))["status"] == "succeeded"
    assert (await cluster(db, foreign))["status"] == "deleted"
    assert host.get("namespaces", "taken") is not None


async def test_delete_when_the_namespace_is_already_gone(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    async with env.running():
        cluster_id, job_id = await create_cluster(db, owner)
        assert (await settled(db, job_id))["status"] == "succeeded"
        host.delete_object("namespaces", "demo")  # an operator removed it by hand
        job_id = await change_cluster(db, cluster_id, "cluster_delete", status="deleting")
        assert (await settled(db, job_id))["status"] == "succeeded"
    row = await cluster(db, cluster_id)
    assert (row["status"], row["last_error_message"]) == ("deleted", None)
    assert row["deleted_at"] is not None
    assert env.helm.uninstalled == []  # nothing was left to uninstall
    assert host.objects("helmcharts") == []


async def test_admission_webhooks_are_registered_on_the_host_and_removed_on_delete(
    env: Env,
) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    await db.execute(
        "UPDATE system_settings SET document = $1 WHERE id = 1",
        {"public_base_url": "https://kubebyon.example.test"},
    )
    async with env.running():
        cluster_id, job_id = await create_cluster(db, owner)
        assert (await settled(db, job_id))["status"] == "succeeded"
        name = "kubebyon-" + cluster_id.replace("_", "-")
        mutating = host.get("mutatingwebhookconfigurations", name)
        validating = host.get("validatingwebhookconfigurations", name)
        assert mutating is not None and validating is not None
        sig = signature(env.secrets.derive_key(KEY_PURPOSE), cluster_id)
        base = f"https://kubebyon.example.test/api/internal/admission/clusters/{cluster_id}/{sig}"
        (mutate,) = mutating["webhooks"]
        (validate,) = validating["webhooks"]
        assert mutate["clientConfig"]["url"] == f"{base}/mutate-pod"
        assert validate["clientConfig"]["url"] == f"{base}/validate-pod"
        assert validate["failurePolicy"] == "Fail"
        # The cluster's namespace, which the reconciler labels with the cluster id.
        selector = {"matchLabels": {"kubebyon.io/cluster-id": cluster_id}}
        assert mutate["namespaceSelector"] == validate["namespaceSelector"] == selector
        assert host.get("namespaces", "demo")["metadata"]["labels"]["kubebyon.io/cluster-id"] == (
            cluster_id
        )
        # Converging again reads them and writes nothing.
        host.reset_request_counts()
        await env.reconciler().reconcile(cluster_id, Context(db=db, key=cluster_id, attempt=0))
        webhooks = [path for _, path in host.requests if "admissionregistration" in path]
        assert len(webhooks) == 2
        assert {method for method, _ in host.request_count} == {"GET"}

        job_id = await change_cluster(db, cluster_id, "cluster_delete", status="deleting")
        assert (await settled(db, job_id))["status"] == "succeeded"
    assert host.objects("mutatingwebhookconfigurations") == []
    assert host.objects("validatingwebhookconfigurations") == []


async def test_a_node_port_kubernetes_picks_is_learned_and_pinned(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    async with env.running():
        cluster_id, job_id = await create_cluster(db, owner, public_access_enabled=True)
        assert (await settled(db, job_id))["status"] == "succeeded"
    row = await cluster(db, cluster_id)
    (service,) = host.objects("services", "demo")
    node_port = service["spec"]["ports"][0]["nodePort"]
    assert row["public_access_port"] == node_port
    assert row["api_endpoint"] == f"https://127.0.0.1:{node_port}"
    values = chart_values(host.get("helmcharts", "demo", "demo"))
    assert values["controlPlane"]["service"]["httpsNodePort"] == node_port
    assert values["exportKubeConfig"]["server"] == row["api_endpoint"]


async def test_without_a_host_cluster_clusters_wait_quietly(env: Env) -> None:
    db = env.db
    owner = await make_user(db)
    cluster_id, _ = await create_cluster(db, owner)
    reconciler = VClusterReconciler(
        None, env.secrets, chart_repo=REPO, chart_version=VERSION, no_host_retry_seconds=60
    )
    ctx = Context(db=db, key=cluster_id, attempt=0)
    result = await reconciler.reconcile(cluster_id, ctx)
    assert result.requeue_after == 60
    assert result.status == {"stage": "waiting_for_host_cluster"}
    row = await cluster(db, cluster_id)
    assert (row["status"], row["last_error_message"]) == ("provisioning", NO_HOST)
    assert NO_HOST == "no host cluster is configured (set KUBEBYON_KUBECONFIG_PATH)"
    await reconciler.reconcile(cluster_id, ctx)  # again: nothing is written
    assert (await cluster(db, cluster_id))["updated_at"] == row["updated_at"]


async def test_resync_of_unchanged_clusters_costs_a_few_reads_and_no_writes(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    count = 30
    ids = [
        (await create_cluster(db, owner, vcluster_name=f"c{n}", public_access_enabled=True))[0]
        for n in range(count)
    ]
    async with env.running():

        async def all_ready() -> bool:
            n = await db.fetchval("SELECT count(*) FROM clusters WHERE status = 'ready'")
            return bool(n == count)

        await wait_until(all_ready, timeout=60, what="every cluster ready")
    before = await db.fetchrow(
        "SELECT max(updated_at) AS updated, (SELECT count(*) FROM audit_events) AS audits "
        "FROM clusters"
    )
    reconciler = env.reconciler()
    keys = [key async for key in reconciler.keys(db)]
    assert sorted(keys) == sorted(ids)
    host.reset_request_counts()
    for key in keys:
        result = await reconciler.reconcile(key, Context(db=db, key=key, attempt=0))
        assert result.status == {"stage": "ready"}
    # O(1) per cluster: the namespace, its quota and limit range, the HelmChart and the
    # kubeconfig Secret are read once each; nothing is written.
    assert {method for method, _ in host.request_count} == {"GET"}
    assert sorted(host.request_count.values()) == [count] * 5
    after = await db.fetchrow(
        "SELECT max(updated_at) AS updated, (SELECT count(*) FROM audit_events) AS audits "
        "FROM clusters"
    )
    assert after == before


async def test_invalid_state_raises_permanent_and_host_errors_temporary(env: Env) -> None:
    db, host = env.db, env.host
    owner = await make_user(db)
    bad, _ = await create_cluster(db, owner, public_access_enabled=True, control_plane_host=None)
    good, _ = await create_cluster(db, owner, vcluster_name="good")
    reconciler = env.reconciler()
    with pytest.raises(PermanentError, match="control_plane_host"):
        await reconciler.reconcile(bad, Context(db=db, key=bad, attempt=0))
    host.fail_next(5, status=500)
    with pytest.raises(Exception, match="host cluster: 500") as err:
        await reconciler.reconcile(good, Context(db=db, key=good, attempt=0))
    assert type(err.value).__name__ == "TemporaryError"
    assert (await cluster(db, good))["status"] == "provisioning"


# ---------------------------------------------------------------- host access


async def test_host_from_the_in_cluster_service_account(tmp_path: Path) -> None:
    async with FakeKubeAPI(tls=True, token="sa-token") as api:
        ca = api.kubeconfig_dict()["clusters"][0]["cluster"]["certificate-authority-data"]
        (tmp_path / "token").write_text("sa-token")
        (tmp_path / "ca.crt").write_bytes(base64.b64decode(ca))
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
        kube = await connect_host(None, environ=environ, service_account_dir=tmp_path)
        assert kube is not None
        try:
            assert (await kube.version())["gitVersion"] == api.git_version
        finally:
            await kube.close()
    assert await connect_host(None, environ={}, service_account_dir=tmp_path) is None
    # KUBERNETES_SERVICE_HOST without a mounted token: not configured, not a crash.
    assert await connect_host(None, environ=environ, service_account_dir=tmp_path / "x") is None
    garbage = tmp_path / "kubeconfig"
    garbage.write_text("clusters: 3\n")
    with pytest.raises(HostConfigError, match="host cluster configuration"):
        await connect_host(garbage)


async def test_host_calls_retry_only_what_retrying_can_fix(env: Env) -> None:
    host, kube = env.host, env.kube
    host.fail_next(1, status=503)
    assert await kube.get(NAMESPACES, "default") is not None
    assert host.request_count[("GET", "/api/v1/namespaces/{name}")] == 2
    host.reset_request_counts()
    host.fail_next(1, status=429)
    assert await kube.get(NAMESPACES, "default") is not None
    assert host.request_count[("GET", "/api/v1/namespaces/{name}")] == 2
    host.reset_request_counts()
    host.fail_next(1, status=422, method="POST")
    with pytest.raises(KubeError) as err:
        await kube.create(NAMESPACES, {"metadata": {"name": "x"}})
    assert err.value.status == 422
    assert host.request_count[("POST", "/api/v1/namespaces")] == 1
    assert await kube.get(NAMESPACES, "missing") is None
    host.down()
    with pytest.raises(KubeError) as err:
        await kube.get(NAMESPACES, "default")
    assert err.value.status == 503


async def test_healthz_reports_the_host_without_failing(env: Env) -> None:
    monitor = HealthMonitor(env.db, host_cluster_configured=True, host_probe=env.kube.version)
    await monitor.probe_database()
    await monitor.probe_host()
    healthy, checks = monitor.report()
    assert healthy
    assert checks["host_cluster"] == {"status": "configured"}
    env.host.down()
    await monitor.probe_host()
    healthy, checks = monitor.report()
    assert healthy  # an unreachable host makes clusters wait, not this process unhealthy
    assert checks["host_cluster"] == {"status": "unreachable", "error": "KubeError"}
    idle = HealthMonitor(env.db)
    await idle.probe_database()
    assert idle.report()[1]["host_cluster"] == {"status": "not_configured"}


async def test_a_daemon_killed_mid_create_leaves_the_job_to_another_process(
    env: Env, dsn: str, tmp_path: Path
) -> None:
    """The real ``kubebyon serve`` (host from KUBEBYON_KUBECONFIG_PATH) starts the install
    and is killed with SIGKILL; another process takes the job over and finishes it."""
    db, host, helm = env.db, env.host, env.helm
    owner = await make_user(db)
    helm.pause()
    cluster_id, job_id = await create_cluster(db, owner)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBYON_")}
    environment.update(
        KUBEBYON_DATABASE_URL=dsn,
        KUBEBYON_KUBECONFIG_PATH=str(host.write_kubeconfig(tmp_path / "host.yaml")),
        KUBEBYON_SECRET_KEY=Fernet.generate_key().decode(),
        KUBEBYON_DATA_DIR=str(tmp_path),
        KUBEBYON_LEASE_SECONDS="2",
        KUBEBYON_LOG_FORMAT="json",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubebyon",
        "serve",
        "--no-api",
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_until(
            lambda: stage_of(db, job_id, "installing"), timeout=30, what="daemon installing"
        )
        assert host.get("helmcharts", "demo", "demo") is not None
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    helm.resume()
    async with env.running():
        done = await settled(db, job_id, timeout=30)
    assert done["status"] == "succeeded"
    assert done["worker_id"] == "w1"
    row = await cluster(db, cluster_id)
    assert (row["status"], row["kubeconfig_available"]) == ("ready", True)
    assert len(host.objects("helmcharts")) == 1
