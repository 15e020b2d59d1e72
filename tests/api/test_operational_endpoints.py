"""/healthz, /metrics, /api/openapi.json and the behaviour every response shares."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from api.app import build_services, create_app
from kubebyon import logs
from kubebyon.db.database import Database
from kubebyon.health import HealthMonitor
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}


def make_app(db: Database, monitor: HealthMonitor) -> web.Application:
    box = SecretBox([Fernet.generate_key()])
    return create_app(build_services(Settings(), db, monitor, box))


@pytest.fixture
async def monitor(db: Database) -> HealthMonitor:
    health = HealthMonitor(db, runtime_health=lambda: {"ok": True, "stale_loops": []})
    await health.probe_database()
    return health


@pytest.fixture
async def client(db: Database, monitor: HealthMonitor) -> AsyncIterator[TestClient]:
    app = make_app(db, monitor)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_healthz_reports_each_component(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["reconcilers"]["status"] == "ok"
    # No host cluster configured is a state, not a failure.
    assert body["checks"]["host_cluster"] == {"status": "not_configured"}


async def test_healthz_is_503_naming_the_database_when_it_is_unreachable(
    dsn: str, monitor: HealthMonitor
) -> None:
    broken = await Database.open(dsn, min_size=1, max_size=1)
    health = HealthMonitor(broken, runtime_health=lambda: {"ok": True})
    app = make_app(broken, health)
    async with TestClient(TestServer(app)) as test_client:
        await health.probe_database()
        assert (await test_client.get("/healthz")).status == 200
        await broken.pool.close()  # the database goes away
        await health.probe_database()
        response = await test_client.get("/healthz")
        body = await response.json()
    assert response.status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "unavailable"
    assert body["checks"]["reconcilers"]["status"] == "ok"


async def test_healthz_is_503_when_the_reconciler_loops_stall(db: Database) -> None:
    health = HealthMonitor(db, runtime_health=lambda: {"ok": False, "stale_loops": ["vcluster"]})
    await health.probe_database()
    async with TestClient(TestServer(make_app(db, health))) as test_client:
        response = await test_client.get("/healthz")
        body = await response.json()
    assert response.status == 503
    assert body["checks"]["reconcilers"] == {"status": "unavailable", "stale_loops": ["vcluster"]}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/healthz", 200), ("GET", "/no-such-path", 404), ("POST", "/healthz", 405)],
)
async def test_security_headers_on_every_response(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value


async def test_errors_use_the_console_envelope(client: TestClient) -> None:
    missing = await client.get("/api/nothing-here")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    # The console's surface is not revealed to anonymous callers.
    hidden = await client.get("/api/console/nothing-here")
    assert hidden.status == 401
    assert (await hidden.json())["error"]["code"] == "unauthenticated"
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status == 405
    assert "GET" in wrong_method.headers["Allow"]
    body = await wrong_method.json()
    assert body["error"]["code"] == "method_not_allowed"
    assert "DELETE" in body["error"]["message"]


async def test_foreign_dialects_get_their_own_error_envelopes(client: TestClient) -> None:
    bcs = await (await client.get("/bcsapi/v4/usermanager/v1/nothing")).json()
    assert set(bcs) == {"result", "code", "message", "data"}
    assert bcs["result"] is False
    kite = await (await client.get("/api/v1/admin/roles/x/y/z")).json()
    assert set(kite) == {"error"}
    assert isinstance(kite["error"], str)


async def test_request_id_is_echoed_when_sane_and_replaced_otherwise(client: TestClient) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    hostile = "<script>alert(1)</script>" + "x" * 200
    replaced = await client.get("/healthz", headers={"X-Request-ID": hostile})
    assert replaced.headers["X-Request-ID"] != hostile
    assert len(replaced.headers["X-Request-ID"]) == 16


async def test_metrics_label_routes_by_template_not_raw_path(client: TestClient) -> None:
    await client.get("/healthz")
    await client.get("/no-such-path/usr_123")
    text = await (await client.get("/metrics")).text()
    assert 'kubebyon_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "usr_123" not in text
    for name in (
        "kubebyon_reconcile_queue_depth",
        "kubebyon_cluster_jobs",
        "kubebyon_db_pool_connections",
        "kubebyon_build_info",
    ):
        assert name in text


async def test_metrics_report_queue_depth_and_job_counts_from_the_database(
    client: TestClient, db: Database
) -> None:
    await db.execute(
        "INSERT INTO reconcile_queue (reconciler, key, due_at) VALUES "
        "('depth_probe', 'a', now() - interval '30 seconds'), ('depth_probe', 'b', now())"
    )
    await db.execute(
        "INSERT INTO cluster_jobs (id, cluster_id, type, status) VALUES "
        "('job_1', 'cl_1', 'cluster_create', 'failed')"
    )
    text = await (await client.get("/metrics")).text()
    assert 'kubebyon_reconcile_queue_depth{reconciler="depth_probe"} 2.0' in text
    oldest = next(
        line
        for line in text.splitlines()
        if line.startswith('kubebyon_reconcile_oldest_due_seconds{reconciler="depth_probe"}')
    )
    assert float(oldest.split()[-1]) >= 30
    assert 'kubebyon_cluster_jobs{status="failed"} 1.0' in text


async def test_openapi_document_is_3_1_and_describes_its_routes(client: TestClient) -> None:
    response = await client.get("/api/openapi.json")
    doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    health = doc["paths"]["/healthz"]["get"]
    assert health["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HealthResponse"
    }
    created = doc["paths"]["/api/console/api-keys"]["post"]["responses"]
    assert "201" in created
    assert "200" not in created
    upload = doc["paths"]["/api/console/me/avatar"]["post"]["requestBody"]["content"]
    assert "avatar" in upload["multipart/form-data"]["schema"]["properties"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_request_log_has_one_line_per_request_and_never_the_query_string(
    client: TestClient, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json", "info")
    capfd.readouterr()
    await client.get("/api/openapi.json?token=s3cr3t-join-token", headers={"X-Request-ID": "r1"})
    await client.get("/healthz")  # successful probes are not logged at INFO
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1
    assert requests[0]["request_id"] == "r1"
    assert requests[0]["path"] == "/api/openapi.json"
    assert requests[0]["status"] == 200
    assert "s3cr3t-join-token" not in err
