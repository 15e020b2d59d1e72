"""Bring your own node, the whole path in one test: a user signs in to the real app,
creates a cluster, a join token and fetches the join script, which runs under ``sh`` on a
stub machine (tests/integration/test_join_script.py); the "installed agent" registers a
Node on the host with the labels and taint the script passed, and the node goes ready,
not ready, offline and away — all of it seen through the console API.

The real Runtime runs the real reconcilers (vcluster, join_tokens, nodes, connection, job
leases) and job handlers on PostgreSQL against the fake host Kubernetes API (TLS; its own
CA published as ``kube-system/kube-root-ca.crt``, as a k3s server does) and the fake k3s
helm-controller. The nodes reconciler's clock is the test's, so "no heartbeat past the
grace" takes no waiting."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.adapters.kube import Kube
from kubebyon.runtime.contract import Reconciler
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobLoop
from kubebyon.settings import Settings
from reconcilers.cluster_jobs import cluster_job_handlers
from reconcilers.connection import ConnectionReconciler
from reconcilers.job_leases import JobLeaseReconciler
from reconcilers.join_tokens import JoinTokenReconciler
from reconcilers.node_jobs import node_job_handlers
from reconcilers.nodes import NodesReconciler
from reconcilers.vcluster import VClusterReconciler
from tests.api import conftest as api
from tests.api.conftest import MakeUser, login
from tests.fakes.helm_controller import FakeHelmController
from tests.fakes.kube_api import FakeKubeAPI
from tests.integration import test_join_script as join_script
from tests.integration.test_join_script import Machine
from tests.integration.test_node_reconciler import Clock, host_node
from tests.support import wait_until

# Fixtures reused as they are: the real app on this module's settings, users to sign in
# as, and a machine of stub commands to run the join script on.
client, services, make_user = api.client, api.services, api.make_user
machine = join_script.machine

HOST_VERSION = "v1.31.4+k3s1"  # what the host's /version says: agents install this k3s
POLL = 0.05
JSON = dict[str, Any]
Client = TestClient[web.Request, web.Application]
CLUSTER = {
    "name": "shop",
    "control_plane_host": "127.0.0.1",
    "kubernetes_version": "v1.31.2",
    "workload_cpu_limit_milli_cores": 2000,
    "workload_memory_limit_mib": 4096,
    "control_plane_cpu_request_milli_cores": 100,
    "control_plane_memory_request_mib": 512,
}


def server_ca(host: FakeKubeAPI) -> bytes:
    """The PEM of the host API server's CA (the fake's self-signed certificate)."""
    cluster = host.kubeconfig_dict()["clusters"][0]["cluster"]
    return base64.b64decode(cluster["certificate-authority-data"])


@pytest.fixture
async def host() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI(tls=True, git_version=HOST_VERSION) as fake:
        fake.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": "kube-system"},
                "data": {"ca.crt": server_ca(fake).decode()},
            }
        )
        yield fake


@pytest.fixture
def settings(host: FakeKubeAPI) -> Settings:
    """Agents join the fake host's API (K3S_URL)."""
    return Settings(host_api_url=host.url)


@asynccontextmanager
async def product(svc: Services, host: FakeKubeAPI, clock: Clock) -> AsyncIterator[None]:
    """The runtime as ``kubebyon serve`` builds it (reconcilers/__init__.py), with test
    timings, the fake host and the fake helm-controller."""
    settings, db, secrets = svc.settings, svc.db, svc.secrets
    async with (
        FakeKubeAPI(tls=True, git_version="v1.31.2") as vcluster,
        FakeHelmController(host, vcluster),
    ):
        kube = Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)
        reconcilers: list[Reconciler] = [
            JobLeaseReconciler(max_attempts=3, interval=0.2),
            VClusterReconciler(
                kube,
                secrets,
                chart_repo=settings.vcluster_chart_repo,
                chart_version=settings.vcluster_chart_version,
                poll_seconds=POLL,
                resync_interval=3600,
            ),
            ConnectionReconciler(secrets, interval=3600, probe_timeout=1),
            NodesReconciler(
                kube,
                offline_grace=settings.node_offline_grace_seconds,
                watch_seconds=1,
                clock=clock,
            ),
            JoinTokenReconciler(kube, secrets, k3s_version=settings.k3s_version),
        ]
        handlers = {
            **cluster_job_handlers(poll_seconds=POLL),
            **node_job_handlers(kube, drain_timeout=5, retry_seconds=POLL),
        }
        jobs = JobLoop(
            db,
            handlers,
            worker_id="w1",
            lease_seconds=10,
            idle_poll_seconds=1,
            max_attempts=3,
            backoff_base=0.05,
            backoff_cap=0.2,
        )
        runtime = Runtime(
            db,
            reconcilers,
            extra_loops=[jobs],
            lease_seconds=10,
            idle_poll_seconds=0.5,
            backoff_base=0.05,
            backoff_cap=0.2,
            rng=random.Random(7),
        )
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop(grace=2)


async def get_json(http: Client, path: str, **params: str) -> Any:
    response = await http.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def agent_node(install: JSON, clock: Clock, ready: str | None) -> JSON:
    """The Node the k3s agent registers, from the installer's arguments: its name, labels
    and taints are what the join script passed; its status is the kubelet's."""
    flags = install["args"][1:]
    assert flags[0] == "agent"
    values: dict[str, list[str]] = {}
    for flag, value in zip(flags[1::2], flags[2::2], strict=True):
        values.setdefault(flag, []).append(value)
    (name,) = values["--node-name"]
    node = host_node(name, "", ready=ready, heartbeat=clock.now, since=clock.now)
    node["metadata"]["labels"] = dict(label.split("=", 1) for label in values["--node-label"])
    taints = []
    for taint in values["--node-taint"]:
        key_value, effect = taint.rsplit(":", 1)
        key, value = key_value.split("=", 1)
        taints.append({"key": key, "value": value, "effect": effect})
    node["spec"] = {"taints": taints}
    return node


async def test_a_node_joins_with_a_token_and_lives_through_every_status(
    client: Client,
    services: Services,
    make_user: MakeUser,
    host: FakeKubeAPI,
    machine: Machine,
) -> None:
    db = services.db
    clock = Clock()
    clock.now = datetime.now(UTC).replace(microsecond=0)
    grace = services.settings.node_offline_grace_seconds
    user = await make_user()
    await login(client, user)

    async with product(services, host, clock):
        # A cluster, created through the console, becomes ready.
        response = await client.post("/api/console/clusters", json=CLUSTER)
        assert response.status == 201, await response.text()
        cluster_id = (await response.json())["cluster"]["id"]

        async def cluster_status() -> str:
            return str(
                (await get_json(client, f"/api/console/clusters/{cluster_id}"))["cluster"]["status"]
            )

        await wait_until(lambda: _is(cluster_status, "ready"), what="cluster ready")

        # A join token: its value and join command are shown once.
        response = await client.post(
            f"/api/console/clusters/{cluster_id}/join-token", json={"ttl_seconds": 3600}
        )
        assert response.status == 201, await response.text()
        token = (await response.json())["token"]
        value, token_id = token["value"], token["id"]
        bootstrap = value.removeprefix("kbt_")  # <token id>.<token secret>
        assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", bootstrap)
        join_url = re.fullmatch(r'curl -sfL "(.+)" \| sh -', token["join_command"])
        assert join_url is not None
        assert (await get_json(client, "/api/console/overview"))["tokens"]["active"] == 1

        # The reconciler puts the bootstrap token on the host for the agent to present.
        name = token["bootstrap_secret_name"]
        secret = await wait_until(
            lambda: host.get("secrets", name, "kube-system"), what="bootstrap Secret"
        )
        assert secret["type"] == "bootstrap.kubernetes.io/token"
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert f"{data['token-id']}.{data['token-secret']}" == bootstrap
        assert data["usage-bootstrap-authentication"] == "true"
        assert secret["metadata"]["labels"]["kubebyon.io/cluster-id"] == cluster_id
        await wait_until(
            lambda: db.fetchval(
                "SELECT host_ca_hash IS NOT NULL FROM join_tokens WHERE id = $1", token_id
            ),
            what="the token's host CA hash",
        )

        # The join script, fetched as the join command fetches it.
        url = urlsplit(join_url[1])
        assert url.path == "/join"
        response = await client.get(f"{url.path}?{url.query}")
        assert response.status == 200, await response.text()
        assert response.content_type == "text/x-shellscript"
        script = await response.text()
        # Secure form only: the agent checks the host's CA against this hash first.
        ca_hash = hashlib.sha256(server_ca(host)).hexdigest()
        secure_token = f"K10{ca_hash}::{bootstrap}"
        for line in (
            f"K3S_JOIN_TOKEN='{secure_token}'",
            f"K3S_SERVER_URL='{host.url}'",
            f"K3S_VERSION='{HOST_VERSION}'",
            f"CLUSTER_LABEL='kubebyon.io/cluster-id={cluster_id}'",
            f"TOKEN_LABEL='kubebyon.io/join-token-id={token_id}'",
            f"NODE_TAINT='kubebyon.io/cluster-id={cluster_id}:NoSchedule'",
        ):
            assert f"\n{line}\n" in script

        # The machine runs it: the k3s installer gets exactly this.
        machine.script.write_text(script)
        run = machine.run()
        assert run.code == 0, run.err
        (install,) = run.called("sh")
        assert install["env"] == {
            "INSTALL_K3S_VERSION": HOST_VERSION,
            "K3S_URL": host.url,
            "K3S_TOKEN": secure_token,
        }

        # The agent registers its Node (no Ready condition yet) with the script's labels.
        node = agent_node(install, clock, ready=None)
        assert node["metadata"]["labels"] == {
            "kubebyon.io/cluster-id": cluster_id,
            "kubebyon.io/join-token-id": token_id,
        }
        assert node["spec"]["taints"] == [
            {"key": "kubebyon.io/cluster-id", "value": cluster_id, "effect": "NoSchedule"}
        ]
        host.put_object(node)
        node_name = node["metadata"]["name"]

        async def console_node() -> JSON | None:
            nodes = (await get_json(client, "/api/console/nodes", cluster_id=cluster_id))["nodes"]
            return next((n for n in nodes if n["name"] == node_name), None)

        async def node_status() -> str | None:
            found = await console_node()
            return None if found is None else str(found["status"])

        await wait_until(lambda: _is(node_status, "pending"), what="node joined")
        node_id = (await console_node() or {})["id"]

        # The token is used up: marked so, its Secret gone, its script refused.
        async def token_row() -> Any:
            return await db.fetchrow("SELECT * FROM join_tokens WHERE id = $1", token_id)

        used = await wait_until(
            lambda: _where(token_row, lambda r: r["secret_removed_at"] is not None),
            what="token used and its Secret removed",
        )
        assert (used["status"], used["used_by_node_id"]) == ("used", node_id)
        assert used["used_at"] is not None
        assert host.get("secrets", name, "kube-system") is None
        refused = await client.get("/join", params={"token": value})
        assert refused.status == 404
        assert (await refused.text()).count("\n") == 1
        assert (await get_json(client, "/api/console/overview"))["tokens"]["active"] == 0

        # Ready, then not ready, as the kubelet reports.
        for ready, status in (("True", "ready"), ("False", "not_ready")):
            clock.advance(1)
            host.put_object(agent_node(install, clock, ready=ready))
            await wait_until(lambda status=status: _is(node_status, status), what=status)
        last_heartbeat = clock.now

        # The heartbeats stop: past the grace the node is offline.
        offline_at = clock.advance(grace + 1)
        await wait_until(lambda: _is(node_status, "offline"), what="offline")
        found = await console_node()
        assert found is not None
        assert datetime.fromisoformat(found["offline_at"]) == offline_at
        assert datetime.fromisoformat(found["last_seen_at"]) == last_heartbeat

        # Removed from the host: deleted, no longer listed.
        clock.advance(1)
        host.delete_object("nodes", node_name)
        await wait_until(
            lambda: db.fetchval("SELECT status = 'deleted' FROM nodes WHERE id = $1", node_id),
            what="deleted",
        )
        assert await console_node() is None
        assert (await client.get(f"/api/console/nodes/{node_id}")).status == 404

    events = (await get_json(client, "/api/console/node-events", cluster_id=cluster_id))["events"]
    assert [(e["type"], e["old_status"], e["new_status"]) for e in reversed(events)] == [
        ("joined", None, "pending"),
        ("ready", "pending", "ready"),
        ("not_ready", "ready", "not_ready"),
        ("offline", "not_ready", "offline"),
        ("deleted", "offline", "deleted"),
    ]
    assert {(e["node_id"], e["node_name"]) for e in events} == {(node_id, node_name)}

    activities = (await get_json(client, "/api/console/activities", limit="100"))["activities"]
    ours = [a for a in reversed(activities) if a["type"].startswith(("token_", "node_"))]
    types = [a["type"] for a in ours]
    # joined and used are one transaction: the same instant, either order.
    assert types[0] == "token_create"
    assert sorted(types[1:3]) == ["node_joined", "token_used"]
    assert types[3:] == ["node_offline"]
    assert {a["cluster_id"] for a in ours} == {cluster_id}
    assert {a["node_name"] for a in ours[1:]} == {node_name}


async def _is(read: Callable[[], Awaitable[object]], expected: str) -> bool:
    return await read() == expected


async def _where(read: Callable[[], Awaitable[Any]], predicate: Callable[[Any], bool]) -> Any:
    row = await read()
    return row if row is not None and predicate(row) else None
