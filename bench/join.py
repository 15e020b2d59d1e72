"""The join script: ``GET /join?token=…`` requests per second for a valid token, against
``GET /healthz`` of the same server in the same run.

The product app exactly as ``bench.healthz_rps`` serves it (``start_product``: production
runtime, running HealthMonitor, every middleware, JSON logs at INFO into a file), with
``KUBEBYON_HOST_API_URL`` pointing at a ``FakeKubeAPI`` (TLS) that stands for the host and
publishes its CA as ``kube-system/kube-root-ca.crt``. A user signs in through ``POST
/api/auth/login`` and creates a join token for a ready cluster through the console API;
the real ``JoinTokenReconciler`` (called once) creates its bootstrap Secret on the fake
host and records the CA hash and k3s version the script needs. Each join request then
does what a machine's ``curl`` makes the server do: the per-IP rate limiter, one lookup of
the token by its hash, rendering the script, one INFO log line.

The join rate limit (``KUBEBYON_JOIN_RATE_LIMIT_BURST``, 5 per 3 s per client IP by
default) would answer 429 to all but a handful of requests from one load generator; it is
raised for this benchmark so that it measures the cost of serving a script. The limiter's
own check still runs on every request.

The load comes from a separate process (``bench.loadgen``, keep-alive, ``CONCURRENCY``
requests in flight); ``/healthz`` and the join script alternate ABBA so that drift
cancels, and every answer must be a 200.
"""

from __future__ import annotations

import base64
import contextlib

import aiohttp

from bench.clusters import insert_clusters, insert_user, sign_in
from bench.common import Outcome, Postgres, out
from bench.healthz_rps import _describe, check, drive, start_product
from kubebyon.adapters.kube import Kube
from kubebyon.domain.tokens import SESSION_COOKIE
from kubebyon.runtime.contract import Context
from kubebyon.settings import Settings
from reconcilers.join_tokens import JoinTokenReconciler

# The fake is test code, imported on purpose (tests/ is a package; the product never
# imports it).
from tests.fakes.kube_api import FakeKubeAPI

REQUESTS = 10_000
WARMUP = 1_000
CONCURRENCY = 32
RATE_LIMIT_BURST = 1_000_000_000  # per window: never reached by this benchmark
HOST_VERSION = "v1.31.4+k3s1"
SCRIPT_TYPE = "text/x-shellscript"
TARGET_RATIO = 0.2
TARGET_RPS = 500.0


async def fake_host(stack: contextlib.AsyncExitStack) -> FakeKubeAPI:
    host = await stack.enter_async_context(FakeKubeAPI(tls=True, git_version=HOST_VERSION))
    ca = host.kubeconfig_dict()["clusters"][0]["cluster"]["certificate-authority-data"]
    host.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": "kube-system"},
            "data": {"ca.crt": base64.b64decode(ca).decode()},
        }
    )
    return host


async def create_token(base: str, cookie: str, cluster_id: str) -> tuple[str, str]:
    """(token id, join URL) from the console API."""
    async with (
        aiohttp.ClientSession(headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as session,
        session.post(f"{base}/api/console/clusters/{cluster_id}/join-token", json={}) as r,
    ):
        if r.status != 201:
            raise RuntimeError(f"join-token answered {r.status}: {await r.text()}")
        token = (await r.json())["token"]
    return token["id"], f"{base}/join?token={token['value']}"


async def check_script(url: str) -> int:
    """The script's size; fails unless the join URL answers one."""
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        body = await r.read()
        if r.status != 200 or r.content_type != SCRIPT_TYPE:
            raise RuntimeError(f"the join URL answered {r.status} {r.content_type}: {body!r}")
        return len(body)


async def run(pg: Postgres, rounds: int) -> Outcome:
    outcome = Outcome("join script rps", "join / healthz req/s")
    password = "bench-password-1"  # noqa: S105 - a throw-away account in a throw-away database
    async with contextlib.AsyncExitStack() as stack:
        host = await fake_host(stack)
        settings = Settings(host_api_url=host.url, join_rate_limit_burst=RATE_LIMIT_BURST)
        product = await start_product(stack, pg, "join", settings)
        db, base = product.db, product.url.removesuffix("/healthz")
        user_id, email = await insert_user(db, password)
        await insert_clusters(db, user_id, 1, 1, status="ready")
        cluster_id = await db.fetchval("SELECT id FROM clusters WHERE owner_user_id = $1", user_id)
        token_id, join_url = await create_token(
            base, await sign_in(base, email, password), cluster_id
        )
        kube = Kube(await host.api_client(), timeout=10)
        await JoinTokenReconciler(kube, product.secrets).reconcile(
            token_id, Context(db=db, key=token_id, attempt=0)
        )
        size = await check_script(join_url)
        await check(product.url)
        out(
            f"GET /join?token=<valid> ({size} bytes) against GET /healthz on the same server, "
            f"{REQUESTS} timed requests per run after {WARMUP} warm-up, {CONCURRENCY} "
            "concurrent, keep-alive, client in a separate process"
        )
        out(
            f"  join rate limit raised for the benchmark: {settings.join_rate_limit_burst:,} "
            f"per {settings.join_rate_limit_window_seconds:g} s per client IP (default 5 per "
            "3 s, which would answer 429); the limiter still runs on every request"
        )
        urls = {"healthz": product.url, "join": join_url}
        results: dict[str, list[float]] = {"healthz": [], "join": []}
        cpu: dict[str, list[float]] = {"healthz": [], "join": []}
        for i in range(rounds):
            for name in ("healthz", "join") if i % 2 == 0 else ("join", "healthz"):
                result = await drive(
                    name, urls[name], REQUESTS, warmup=WARMUP, concurrency=CONCURRENCY
                )
                _describe(result)
                results[name].append(result.rps)
                cpu[name].append(result.cpu_us_per_request)
    healthz, join = max(results["healthz"]), max(results["join"])
    outcome.ratio = join / healthz
    cpu_healthz, cpu_join = min(cpu["healthz"]), min(cpu["join"])
    out(
        f"  best of {rounds}: join {join:.0f} req/s, /healthz {healthz:.0f} req/s, "
        f"ratio {outcome.ratio:.2f}"
    )
    out(
        f"  server CPU per request: join {cpu_join:.0f} us, /healthz {cpu_healthz:.0f} us "
        f"(a script costs {cpu_join - cpu_healthz:.0f} us more than /healthz)"
    )
    outcome.target(
        f"join >= {TARGET_RATIO:.0%} of /healthz req/s",
        outcome.ratio >= TARGET_RATIO,
        f"{outcome.ratio:.0%}",
    )
    outcome.target(f"join >= {TARGET_RPS:.0f} req/s", join >= TARGET_RPS, f"{join:.0f} req/s")
    return outcome
