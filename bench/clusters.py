"""Clusters at scale: the console list of a user with 1,000 clusters, and the vcluster
reconciler's resync of 1,000 unchanged clusters.

1. ``GET /api/console/clusters``. The product app exactly as ``bench.healthz_rps``
   serves it (``start_product``: production runtime, running HealthMonitor, every
   middleware, JSON logs at INFO into a file); one user owns 10 clusters, another 1,000
   (inserted with one ``generate_series``), each signed in through ``POST
   /api/auth/login`` and sending the session cookie it got. The load comes from a separate
   process (``bench.loadgen``), ``LIST_CONCURRENCY`` requests in flight; the runs of
   ``/healthz`` (the baseline), the 10-cluster list and the 1,000-cluster list rotate
   within each round. The SQL statements per list request are counted on a second app
   over a counting Database (nothing else uses that pool): they must not grow with N.
   The clusters look as they do on a process without a host cluster (``provisioning``,
   with the vcluster reconciler's "no host cluster" message), so no reconciler writes to
   them while the load runs.

2. vcluster resync. 1,000 clusters (public access on a node port) are brought to
   ``ready`` by the real ``VClusterReconciler`` against ``FakeKubeAPI`` (the host) and the
   fake k3s helm-controller (stepped by hand between passes: its own loop re-reads every
   HelmChart after each change, which is quadratic at this size), and a second
   ``FakeKubeAPI`` standing for the vClusters. Then full resync passes (``RESYNC_ROUNDS``,
   alternated with the baseline): ``keys()``, then ``reconcile`` for each key,
   ``max_concurrency`` at a time, as the runtime would run them (without the runtime's own
   queue bookkeeping, one claim per batch and one completion UPDATE per key, which the
   throughput benchmark measures). Counted in every pass: host API calls per
   cluster (the fake's request log, attributed by namespace), the Database statements by
   query name, and whether any ``clusters`` row was rewritten (its ``xmin``) or an audit
   event added. Baseline: one GET of each cluster's namespace through the same client
   against the same fake, with the same concurrency. The fake runs in this process, so
   both sides include its CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.fernet import Fernet

from api.app import build_services, create_app
from bench.common import CountingDatabase, Outcome, Postgres, cpu_seconds, out
from bench.healthz_rps import RunResult, drive, serve, start_product
from kubebyon.adapters.kube import NAMESPACES, Kube
from kubebyon.db.database import Database
from kubebyon.db.queries import QUERIES
from kubebyon.domain.ids import new_id
from kubebyon.domain.passwords import hash_password
from kubebyon.domain.tokens import SESSION_COOKIE
from kubebyon.health import HealthMonitor
from kubebyon.runtime.contract import Context
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings
from reconcilers.vcluster import NO_HOST, VClusterReconciler

# The fakes are test code, imported on purpose: the benchmark needs the same host the
# lifecycle tests converge against (tests/ is a package; nothing in the product imports it).
from tests.fakes.helm_controller import FakeHelmController
from tests.fakes.kube_api import FakeKubeAPI

CLUSTERS_PATH = "/api/console/clusters"
FEW, MANY = 10, 1_000
LIST_CONCURRENCY = 8  # a console's worth of users at once; /healthz gets the same
LIST_REQUESTS = {"healthz": 3_000, FEW: 1_000, MANY: 150}
LIST_WARMUP = {"healthz": 300, FEW: 100, MANY: 10}
COUNTED_REQUESTS = 5
TARGET_LIST_P99_MS = 500.0

RESYNC_CLUSTERS = 1_000
RESYNC_ROUNDS = 2  # a pass takes ~7 s: resync, GET, GET, resync keeps the whole under a minute
MAX_CONVERGE_PASSES = 5
# tests/integration/test_vcluster_lifecycle.py asserts exactly this many reads per
# unchanged cluster: namespace, ResourceQuota, LimitRange, HelmChart, kubeconfig Secret.
TARGET_CALLS_PER_CLUSTER = 5
CHART_REPO, CHART_VERSION = "https://charts.example.test", "0.36.1"
WRITE_SQL = re.compile(r"^(?!\s*--).*\b(INSERT|UPDATE|DELETE)\b", re.MULTILINE)


async def insert_user(db: Database, password: str) -> tuple[str, str]:
    user_id = new_id("usr")
    email = f"{user_id.lower()}@example.com"
    await db.execute(db.q.insert_user, user_id, email, hash_password(password), "user")
    return user_id, email


async def insert_clusters(
    db: Database, owner: str, first: int, count: int, **constants: Any
) -> None:
    """Clusters ``c<first>`` .. for ``owner`` (newest last) in one statement, public access
    on node port 30000 + their number; ``constants``: more columns, the same for all."""
    columns = "".join(f", {name}" for name in constants)
    values = "".join(f", ${i}" for i in range(4, 4 + len(constants)))
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name,"
        " control_plane_host, kubernetes_version, workload_cpu_limit_milli_cores,"
        " workload_memory_limit_mib, control_plane_cpu_request_milli_cores,"
        " control_plane_memory_request_mib, public_access_enabled, public_access_port,"
        f" created_at{columns})"
        " SELECT 'cl_' || lpad(i::text, 26, '0'), $1, 'c' || lpad(i::text, 4, '0'),"
        " 'c' || lpad(i::text, 4, '0'), 'c' || lpad(i::text, 4, '0'), '127.0.0.1', 'v1.31.2',"
        " 2000, 4096, 100, 512, true, 30000 + i,"
        f" now() - interval '1 day' + make_interval(secs => i){values}"
        " FROM generate_series($2::int, $3::int) AS i",
        owner,
        first,
        first + count - 1,
        *constants.values(),
    )


# ------------------------------------------------------------------ 1. the list


async def sign_in(url: str, email: str, password: str) -> str:
    """A session cookie from the real login endpoint."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/auth/login", json={"email": email, "password": password}) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"login answered {r.status}: {await r.text()}")
        return r.cookies[SESSION_COOKIE].value


async def get_clusters(url: str, cookie: str) -> list[Any]:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as r:
        if r.status != 200:
            raise RuntimeError(f"{url} answered {r.status}: {await r.text()}")
        clusters: list[Any] = (await r.json())["clusters"]
        return clusters


async def body_size(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as r:
        return len(await r.read())


async def count_statements(
    pg_dsn: str, secrets: SecretBox, cookies: dict[int, str]
) -> dict[int, list[Counter[str]]]:
    """Statements per list request, by query name, for each cluster count: a second app
    on a counting Database that nothing else uses."""
    settings = Settings()
    db = await CountingDatabase.open(pg_dsn, min_size=1, max_size=2)
    assert isinstance(db, CountingDatabase)
    counted: dict[int, list[Counter[str]]] = {}
    try:
        app = create_app(build_services(settings, db, HealthMonitor(db), secrets))
        runner, url = await serve(app, CLUSTERS_PATH)
        try:
            for n, cookie in cookies.items():
                await get_clusters(url, cookie)  # fills the role and system-settings caches
                counted[n] = []
                for _ in range(COUNTED_REQUESTS):
                    db.statements.clear()
                    if len(await get_clusters(url, cookie)) != n:
                        raise RuntimeError(f"the list did not return {n} clusters")
                    counted[n].append(Counter(db.statements))
        finally:
            await runner.cleanup()
    finally:
        await db.close()
    return counted


def _describe(label: str, r: RunResult, size: int) -> None:
    out(
        f"  {label:<14} {r.requests:>5} req in {r.seconds:6.2f} s = {r.rps:7.0f} req/s  "
        f"p50 {r.p50_ms:6.2f} ms p99 {r.p99_ms:6.2f} ms  "
        f"server CPU {r.cpu_us_per_request:6.0f} us/req  {size / 1024:7.1f} KiB/response"
    )


async def list_benchmark(pg: Postgres, rounds: int) -> Outcome:
    outcome = Outcome("clusters list", f"list of {MANY:,} clusters / healthz req/s")
    password = "bench-password-1"  # noqa: S105 - a throw-away account in a throw-away database
    results: dict[Any, list[RunResult]] = {"healthz": [], FEW: [], MANY: []}
    async with contextlib.AsyncExitStack() as stack:
        product = await start_product(stack, pg, "clusters")
        db, base = product.db, product.url.removesuffix("/healthz")
        owners = {n: await insert_user(db, password) for n in (FEW, MANY)}
        first = 1
        for n, (user_id, _) in owners.items():
            # As on a process without a host cluster: the vcluster reconciler finds nothing
            # to write, and the connection and metrics reconcilers only look at ready ones.
            await insert_clusters(
                db,
                user_id,
                first,
                n,
                status="provisioning",
                connection_status="kubeconfig_pending",
                last_error_message=NO_HOST,
            )
            first += n
        await db.execute("ANALYZE clusters")
        cookies = {n: await sign_in(base, email, password) for n, (_, email) in owners.items()}
        for n, cookie in cookies.items():
            if len(await get_clusters(base + CLUSTERS_PATH, cookie)) != n:
                raise RuntimeError(f"the list of the user with {n} clusters is not complete")
        counted = await count_statements(product.dsn, product.secrets, cookies)
        targets: dict[Any, tuple[str, dict[str, str]]] = {"healthz": (product.url, {})}
        for n, cookie in cookies.items():
            targets[n] = (base + CLUSTERS_PATH, {"Cookie": f"{SESSION_COOKIE}={cookie}"})
        sizes = {name: await body_size(*target) for name, target in targets.items()}
        out(
            f"one user with {FEW} clusters, one with {MANY:,} ({FEW + MANY:,} rows); "
            f"session cookies from POST /api/auth/login; {LIST_CONCURRENCY} concurrent, "
            "keep-alive, client in a separate process"
        )
        order: list[Any] = ["healthz", FEW, MANY]
        for i in range(rounds):
            out(f" round {i + 1}/{rounds}")
            for name in order[i % 3 :] + order[: i % 3]:
                url, headers = targets[name]
                result = await drive(
                    str(name),
                    url,
                    LIST_REQUESTS[name],
                    warmup=LIST_WARMUP[name],
                    concurrency=LIST_CONCURRENCY,
                    headers=headers,
                )
                results[name].append(result)
                label = "/healthz" if name == "healthz" else f"list of {name:,}"
                _describe(label, result, sizes[name])
    best = {name: max(rs, key=lambda r: r.rps) for name, rs in results.items()}
    healthz, few, many = best["healthz"], best[FEW], best[MANY]
    outcome.ratio = many.rps / healthz.rps
    per_cluster_us = (
        (min(r.cpu_us_per_request for r in results[MANY]))
        - min(r.cpu_us_per_request for r in results[FEW])
    ) / (MANY - FEW)
    out(
        f"  best of {rounds}: /healthz {healthz.rps:.0f} req/s, list of {FEW} {few.rps:.0f} "
        f"req/s ({few.rps / healthz.rps:.3f}), list of {MANY:,} {many.rps:.1f} req/s "
        f"({outcome.ratio:.4f}); p99 {many.p99_ms:.1f} ms"
    )
    out(
        f"  server CPU per cluster in a list: {per_cluster_us:.0f} us "
        f"((list of {MANY:,} - list of {FEW}) / {MANY - FEW})"
    )
    steady: dict[int, int] = {}
    for n, per_request in counted.items():
        totals = [sum(c.values()) for c in per_request]
        steady[n] = min(totals)
        names = ", ".join(
            f"{k} {v}" for k, v in sorted(per_request[totals.index(steady[n])].items())
        )
        out(f"  SQL statements per list request, {n:,} clusters: {totals} ({names})")
    out(
        "  (one more when the 2-second system-settings cache or the 30-second role cache "
        "expires during a request; never one per cluster)"
    )
    outcome.target(
        f"statements per list request do not grow from {FEW} to {MANY:,} clusters",
        steady[MANY] <= steady[FEW],
        f"{steady[FEW]} vs {steady[MANY]}",
    )
    outcome.target(
        f"list of {MANY:,} p99 < {TARGET_LIST_P99_MS:.0f} ms at {LIST_CONCURRENCY} concurrent",
        many.p99_ms < TARGET_LIST_P99_MS,
        f"{many.p99_ms:.1f} ms",
    )
    return outcome


# ------------------------------------------------------------- 2. the resync


@dataclass
class Pass:
    seconds: float
    cpu: float

    def us_per_cluster(self, n: int) -> float:
        return self.seconds / n * 1e6


async def bounded(
    keys: Iterable[str], concurrency: int, work: Callable[[str], Awaitable[Any]]
) -> tuple[Pass, list[Any]]:
    """``work`` for every key, ``concurrency`` at a time, timed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> Any:
        async with gate:
            return await work(key)

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    results = await asyncio.gather(*(one(key) for key in keys))
    return Pass(time.perf_counter() - t0, cpu_seconds() - cpu0), list(results)


async def converge(db: Database, reconciler: VClusterReconciler, helm: FakeHelmController) -> int:
    """Reconcile every cluster not yet ready, then let helm-controller act, until all are
    ready; the number of passes."""
    for passes in range(1, MAX_CONVERGE_PASSES + 1):
        waiting = [
            row["id"] for row in await db.fetch("SELECT id FROM clusters WHERE status <> 'ready'")
        ]
        if not waiting:
            return passes - 1
        await bounded(
            waiting,
            reconciler.max_concurrency,
            lambda key: reconciler.reconcile(key, Context(db=db, key=key, attempt=0)),
        )
        helm.step()
    raise RuntimeError(f"clusters not ready after {MAX_CONVERGE_PASSES} passes")


@dataclass
class Resync:
    """What one resync pass did, besides its timing."""

    calls: Counter[str]  # host API calls per cluster namespace
    routes: Counter[tuple[str, str]]  # host API calls per (method, route)
    unattributed: int  # host API calls that name no namespace (lists, ...)
    statements: Counter[str]  # Database statements by query name

    @classmethod
    def observe(cls, host: FakeKubeAPI, db: CountingDatabase) -> Resync:
        calls: Counter[str] = Counter()
        unattributed = 0
        for _method, path in host.requests:
            parts = path.split("?")[0].split("/")
            if "namespaces" in parts[:-1]:
                calls[parts[parts.index("namespaces") + 1]] += 1
            else:
                unattributed += 1
        return cls(calls, Counter(host.request_count), unattributed, Counter(db.statements))

    @property
    def methods(self) -> set[str]:
        return {method for method, _ in self.routes}

    @property
    def writes(self) -> dict[str, int]:
        """Transactions, SQL that is not a named query, and named queries that insert,
        update or delete (the project writes SQL keywords in capitals)."""
        return {
            name: n
            for name, n in self.statements.items()
            if name in ("transaction", "other") or WRITE_SQL.search(getattr(QUERIES, name))
        }


async def resync_benchmark(pg: Postgres, rounds: int = RESYNC_ROUNDS) -> Outcome:
    outcome = Outcome("vcluster resync", "resync / one GET per cluster")
    n = RESYNC_CLUSTERS
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("resync")
        stack.push_async_callback(pg.drop_database, dsn)
        db = await CountingDatabase.open(dsn)
        assert isinstance(db, CountingDatabase)
        stack.push_async_callback(db.close)
        owner, _ = await insert_user(db, "unused-password")
        await insert_clusters(db, owner, 1, n)
        host = await stack.enter_async_context(FakeKubeAPI())
        vcluster = await stack.enter_async_context(FakeKubeAPI(tls=True))
        helm = FakeHelmController(host, vcluster)  # not started: stepped by converge()
        kube = Kube(await host.api_client())  # the production client's defaults
        reconciler = VClusterReconciler(
            kube,
            SecretBox([Fernet.generate_key()]),
            chart_repo=CHART_REPO,
            chart_version=CHART_VERSION,
        )
        t0 = time.perf_counter()
        passes = await converge(db, reconciler, helm)
        ready = await db.fetchval(
            "SELECT count(*) FROM clusters WHERE status = 'ready' AND kubeconfig_available"
            " AND observed_generation = generation"
        )
        if ready != n:
            raise RuntimeError(f"only {ready} of {n} clusters converged")
        out(
            f"{n:,} clusters (public access on a node port) brought to ready by the vcluster "
            f"reconciler and the fake helm-controller: {passes} passes, "
            f"{time.perf_counter() - t0:.1f} s, {len(host.objects('helmcharts')):,} HelmCharts"
        )
        out(
            f"a resync pass: keys(), then reconcile() of every key, {reconciler.max_concurrency} "
            "at a time (the reconciler's max_concurrency); baseline: one GET of each cluster's "
            "namespace, same client, same fake, same concurrency"
        )
        audits = await db.fetchval("SELECT count(*) FROM audit_events")
        xmins = await db.fetch("SELECT id, xmin::text FROM clusters ORDER BY id")
        rows = await db.fetch("SELECT id, namespace FROM clusters")
        namespaces = {row["id"]: row["namespace"] for row in rows}

        async def resync_one(key: str) -> Any:
            return (await reconciler.reconcile(key, Context(db=db, key=key, attempt=0))).status

        timings: dict[str, list[Pass]] = {"resync": [], "get": []}
        resyncs: list[Resync] = []
        for i in range(rounds):
            for phase in ("resync", "get") if i % 2 == 0 else ("get", "resync"):
                host.reset_request_counts()
                db.statements.clear()
                if phase == "resync":
                    listed = [key async for key in reconciler.keys(db)]
                    timing, stages = await bounded(listed, reconciler.max_concurrency, resync_one)
                    if any(stage != {"stage": "ready"} for stage in stages):
                        raise RuntimeError("a resync did not find its cluster ready")
                    resyncs.append(Resync.observe(host, db))
                else:
                    timing, found = await bounded(
                        namespaces,
                        reconciler.max_concurrency,
                        lambda key: kube.get(NAMESPACES, namespaces[key]),
                    )
                    if any(obj is None for obj in found):
                        raise RuntimeError("a cluster's namespace is missing")
                timings[phase].append(timing)
                out(
                    f"  {phase:<6} {n:,} clusters in {timing.seconds:5.2f} s = "
                    f"{timing.us_per_cluster(n):5.0f} us/cluster, bench-process CPU "
                    f"{timing.cpu / n * 1e6:5.0f} us/cluster"
                )
        rewritten = xmins != await db.fetch("SELECT id, xmin::text FROM clusters ORDER BY id")
        new_audits = await db.fetchval("SELECT count(*) FROM audit_events") - audits
    resync = min(t.seconds for t in timings["resync"]) / n * 1e6
    get = min(t.seconds for t in timings["get"]) / n * 1e6
    outcome.ratio = resync / get
    out(
        f"  best of {rounds}: resync {resync:.0f} us/cluster, one GET {get:.0f} us/cluster, "
        f"ratio {outcome.ratio:.2f}"
    )
    last = resyncs[-1]
    routes = ", ".join(f"{m} {route} {k:,}" for (m, route), k in sorted(last.routes.items()))
    out(f"  host API calls of a pass: {routes}")
    per_cluster = sorted({k for r in resyncs for k in r.calls.values()})
    clusters_seen = min(len(r.calls) for r in resyncs)
    unattributed = max(r.unattributed for r in resyncs)
    out(
        f"  per cluster: {per_cluster} calls ({clusters_seen:,} clusters seen in every pass); "
        f"calls naming no cluster: {unattributed}"
    )
    out(f"  SQL of a pass: {', '.join(f'{k} {v:,}' for k, v in last.statements.most_common())}")
    writes = Counter[str]()
    for r in resyncs:
        writes.update(r.writes)
    out(
        f"  over {rounds} passes: write statements {dict(writes)}, clusters rows rewritten "
        f"(xmin changed): {'yes' if rewritten else 'none'}, audit events added {new_audits}"
    )
    outcome.target(
        f"host API calls per unchanged cluster <= {TARGET_CALLS_PER_CLUSTER}, reads only",
        max(per_cluster) <= TARGET_CALLS_PER_CLUSTER
        and clusters_seen == n
        and unattributed == 0
        and all(r.methods == {"GET"} for r in resyncs),
        f"at most {max(per_cluster)} per cluster, "
        f"methods {sorted(set().union(*(r.methods for r in resyncs)))}",
    )
    outcome.target(
        "no database writes",
        not writes and not rewritten and new_audits == 0,
        f"{sum(writes.values())} write statements, "
        f"clusters rows rewritten: {'yes' if rewritten else 'none'}, {new_audits} audit events",
    )
    return outcome


async def run(pg: Postgres, rounds: int) -> list[Outcome]:
    outcomes = [await list_benchmark(pg, rounds)]
    out()
    outcomes.append(await resync_benchmark(pg))
    return outcomes
