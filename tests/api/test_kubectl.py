"""POST /api/console/clusters/{id}/kubectl (seed §3.7): the real kubectl binary against
a fake Kubernetes API standing for the vCluster. TLS because client-go sends bearer tokens
only over TLS."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.adapters.kubectl import Kubectl
from kubebyon.db.database import Database
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser, User, login
from tests.fakes.kube_api import FakeKubeAPI
from tests.integration.test_connection_and_metrics import insert_cluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl binary not installed")


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    """Parametrize indirectly with a dict of settings to change them."""
    return Settings(**getattr(request, "param", {}))


@pytest.fixture
def services(services: Services, settings: Settings) -> Services:
    services.kubectl = Kubectl(
        path=settings.kubectl_path,
        timeout=settings.kubectl_timeout_seconds,
        max_output_bytes=settings.kubectl_max_output_bytes,
    )
    return services


@pytest.fixture
async def vcluster() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI(tls=True, namespaces=("default", "kube-system", "shop")) as fake:
        fake.put_object(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-7f9c", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            }
        )
        yield fake


@pytest.fixture
async def ready(db: Database, services: Services, signed_in: User, vcluster: FakeKubeAPI) -> str:
    """A ready cluster of the signed-in user whose kubeconfig reaches ``vcluster``."""
    return await insert_cluster(
        db, services.secrets, kubeconfig=vcluster.kubeconfig_dict(), owner_id=signed_in.id
    )


async def kubectl(client: TestClient, cluster_id: str, body: Any, status: int = 200) -> Any:
    response = await client.post(f"/api/console/clusters/{cluster_id}/kubectl", json=body)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def kubectl_audit(db: Database, cluster_id: str) -> list[Any]:
    return await db.fetch(
        "SELECT * FROM audit_events WHERE resource_type = 'cluster' AND action = 'kubectl_exec'"
        " AND resource_id = $1 ORDER BY occurred_at, id",
        cluster_id,
    )


async def test_read_only_commands_run_against_the_cluster(
    client: TestClient, db: Database, ready: str, signed_in: User
) -> None:
    namespaces = await kubectl(client, ready, {"args": ["get", "namespaces"]})
    assert namespaces["exit_code"] == 0
    assert namespaces["truncated"] is False
    names = [line.split()[0] for line in namespaces["stdout"].splitlines()]
    assert names == ["NAME", "default", "kube-system", "shop"]

    pods = await kubectl(client, ready, {"command": "get pods -A"})
    assert pods["exit_code"] == 0
    header, row = pods["stdout"].splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert row.split()[:2] == ["shop", "web-7f9c"]

    missing = await kubectl(client, ready, {"command": "kubectl get pod nope -n shop"})
    assert missing["exit_code"] != 0
    assert 'pods "nope" not found' in missing["stderr"]

    events = await kubectl_audit(db, ready)
    assert [e["result"] for e in events] == ["success"] * 3
    assert events[1]["actor_user_id"] == signed_in.id
    assert events[1]["cluster_id"] == ready
    assert events[1]["extra"] == {"args": ["get", "pods", "-A"], "exit_code": 0, "truncated": False}
    assert events[2]["extra"]["exit_code"] == missing["exit_code"]
    for event in events:  # the arguments, never the output
        assert "web-7f9c" not in event["message"] + str(event["extra"])
        assert "NAMESPACE" not in event["message"] + str(event["extra"])


async def test_no_shell_is_involved(client: TestClient, ready: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    answer = await kubectl(client, ready, {"command": f"get namespaces; touch {marker}"})
    assert answer["exit_code"] != 0  # kubectl was asked for a resource named "namespaces;"
    assert not marker.exists()


SEED_DENY_LIST = [  # (command, the argument the answer must name)
    ("apply -f pod.yaml", "apply"),
    ("delete pod web-7f9c -n shop", "delete"),
    ("patch pod web-7f9c -n shop -p {}", "patch"),
    ("exec -it web-7f9c -n shop -- sh", "exec"),
    ("port-forward web-7f9c 8080:80", "port-forward"),
    ("cp shop/web-7f9c:/etc/passwd passwd", "cp"),
    ("drain node-1", "drain"),
    ("cordon node-1", "cordon"),
    ("wait --for=delete pod/web-7f9c", "wait"),
    ("get --raw=/api", "--raw=/api"),
    ("get pods --as=admin", "--as=admin"),
    ("get pods --as-group=system:masters", "--as-group=system:masters"),
    ("get pods --server=x", "--server=x"),
    ("get pods --token=x", "--token=x"),
    ("get pods --kubeconfig=/etc/kubernetes/admin.conf", "--kubeconfig=/etc/kubernetes/admin.conf"),
    ("get -f pod.yaml", "-f"),
    ("get -k overlay", "-k"),
    ("get pods -w", "-w"),
    ("logs -f web-7f9c -n shop", "-f"),
    ("get pods -A --watch-only", "--watch-only"),
]


async def test_the_seed_deny_list_is_refused_before_anything_runs(
    client: TestClient, db: Database, ready: str, vcluster: FakeKubeAPI
) -> None:
    vcluster.reset_request_counts()
    for command, offender in SEED_DENY_LIST:
        answer = await kubectl(client, ready, {"command": command}, status=400)
        assert answer["error"]["code"] == "kubectl_denied"
        assert answer["error"]["message"].startswith(f"kubectl argument {offender!r} ")
    as_args = await kubectl(client, ready, {"args": ["get", "pods", "-n", "shop", "-Aw"]}, 400)
    assert "'-Aw'" in as_args["error"]["message"]
    assert vcluster.requests == []  # kubectl never reached the cluster

    events = await kubectl_audit(db, ready)
    assert len(events) == len(SEED_DENY_LIST) + 1
    assert {e["result"] for e in events} == {"failure"}
    assert events[-1]["extra"] == {
        "args": ["get", "pods", "-n", "shop", "-Aw"],
        "denied_argument": "-Aw",
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"args": ["get", "pods"], "command": "get pods"},
        {"args": []},
        {"args": "get pods"},
        {"args": ["get", 1]},
        {"command": ""},
        {"command": "get pods -l 'app=web"},
        {"command": "get " + "a " * 100},
        {"args": ["get", "pods"], "shell": True},
    ],
)
async def test_malformed_bodies_are_400(client: TestClient, ready: str, body: Any) -> None:
    answer = await kubectl(client, ready, body, status=400)
    assert answer["error"]["code"] == "validation_error"


async def test_clusters_the_caller_cannot_see_are_404(
    client: TestClient, db: Database, services: Services, make_user: MakeUser, ready: str
) -> None:
    await kubectl(client, "cl_unknown", {"command": "get pods"}, status=404)
    other = await make_user()
    await login(client, other)
    answer = await kubectl(client, ready, {"command": "get pods"}, status=404)
    assert answer["error"]["code"] == "not_found"
    await login(client, await make_user(role="admin"))
    assert (await kubectl(client, ready, {"command": "get pods -A"}))["exit_code"] == 0
    await db.execute("UPDATE clusters SET status = 'deleted' WHERE id = $1", ready)
    await kubectl(client, ready, {"command": "get pods"}, status=404)


async def test_clusters_that_are_not_ready_are_409(
    client: TestClient, db: Database, services: Services, signed_in: User, vcluster: FakeKubeAPI
) -> None:
    provisioning = await insert_cluster(
        db,
        services.secrets,
        kubeconfig=vcluster.kubeconfig_dict(),
        owner_id=signed_in.id,
        status="provisioning",
    )
    answer = await kubectl(client, provisioning, {"command": "get pods"}, status=409)
    assert "provisioning" in answer["error"]["message"]
    pending = await insert_cluster(db, services.secrets, kubeconfig=None, owner_id=signed_in.id)
    answer = await kubectl(client, pending, {"command": "get pods"}, status=409)
    assert answer["error"]["code"] == "kubeconfig_pending"


@pytest.mark.parametrize("settings", [{"kubectl_path": "/nonexistent/kubectl"}], indirect=True)
async def test_a_missing_kubectl_is_503(client: TestClient, ready: str) -> None:
    answer = await kubectl(client, ready, {"command": "get pods"}, status=503)
    assert answer["error"]["code"] == "kubectl_unavailable"
    assert "kubectl cannot be started" in answer["error"]["message"]


async def test_without_kubectl_on_path_the_message_says_how_to_fix_it(
    client: TestClient, ready: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    answer = await kubectl(client, ready, {"command": "get pods"}, status=503)
    assert "KUBEBYON_KUBECTL_PATH" in answer["error"]["message"]


@pytest.fixture
async def silent_api() -> AsyncIterator[str]:
    """An API server that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("settings", [{"kubectl_timeout_seconds": 1.0}], indirect=True)
async def test_a_command_that_hangs_is_killed_at_the_timeout(
    client: TestClient,
    db: Database,
    services: Services,
    signed_in: User,
    vcluster: FakeKubeAPI,
    silent_api: str,
) -> None:
    kubeconfig = vcluster.kubeconfig_dict()
    kubeconfig["clusters"][0]["cluster"]["server"] = silent_api
    cluster_id = await insert_cluster(
        db, services.secrets, kubeconfig=kubeconfig, owner_id=signed_in.id
    )
    started = time.monotonic()
    answer = await kubectl(client, cluster_id, {"command": "get pods"}, status=504)
    assert time.monotonic() - started < 8  # kubectl alone would wait 10 s for the TLS handshake
    assert answer["error"]["code"] == "kubectl_timeout"
    (event,) = await kubectl_audit(db, cluster_id)
    assert event["result"] == "failure"
    assert event["extra"]["timed_out"] is True


@pytest.mark.parametrize("settings", [{"kubectl_max_output_bytes": 300}], indirect=True)
async def test_output_beyond_the_cap_is_dropped(client: TestClient, ready: str) -> None:
    answer = await kubectl(client, ready, {"command": "get namespaces -o json"})
    assert answer["truncated"] is True
    assert answer["exit_code"] == 0  # kubectl ran to its end; only the rest was dropped
    assert len(answer["stdout"].encode()) <= 300
    assert answer["stdout"].startswith("{")
    small = await kubectl(client, ready, {"command": "get pods -n shop -o name"})
    assert small["truncated"] is False
    assert small["stdout"] == "pod/web-7f9c\n"


def wrapper(tmp_path: Path) -> Path:
    """A kubectl that notes its kubeconfig's path and mode and its environment, then runs
    the real kubectl."""
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'config="${1#--kubeconfig=}"\n'
        f'echo "$config" > {tmp_path}/config-path\n'
        f'stat -c %a "$config" > {tmp_path}/config-mode\n'
        f"env > {tmp_path}/env\n"
        f'exec {KUBECTL} "$@"\n'
    )
    script.chmod(0o755)
    return script


async def test_the_kubeconfig_is_private_and_temporary_and_the_environment_minimal(
    client: TestClient,
    services: Services,
    ready: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.kubectl = Kubectl(path=wrapper(tmp_path), timeout=30, max_output_bytes=1 << 20)
    # Inherited, these would send kubectl elsewhere: a dead proxy, another kubeconfig.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "other-kubeconfig"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-pass")

    answer = await kubectl(client, ready, {"command": "get pods -n shop -o name"})
    assert answer["stdout"] == "pod/web-7f9c\n"

    config_path = Path((tmp_path / "config-path").read_text().strip())
    assert (tmp_path / "config-mode").read_text().strip() == "600"
    assert not config_path.exists()
    assert not config_path.parent.exists()  # kubectl's HOME and cache went with it
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["HOME"] == str(config_path.parent)
    assert not {"HTTPS_PROXY", "KUBECONFIG", "AWS_SECRET_ACCESS_KEY"} & env.keys()
    assert os.environ["HTTPS_PROXY"]  # the server's own environment is untouched
