"""/healthz requests per second: the product app versus a bare aiohttp app.

Product: ``api.app.create_app(build_services(settings, db, health_monitor, secrets))`` wired
as ``kubebyon serve`` wires it (``build_runtime`` with the production reconcilers, a running
HealthMonitor, every middleware, JSON logs at INFO — into a file here), served by
``web.AppRunner(access_log=None)``.
Baseline: a bare app whose one handler returns ``web.json_response({"status": "ok"})``,
served the same way in the same process. The load comes from a separate process
(``bench.loadgen``: one aiohttp ClientSession, keep-alive, 32 concurrent requests), one
server at a time, in the order bare, product, product, bare (ABBA) so that drift cancels.

Besides requests per second, the server process's CPU time per request is printed: on a
two-core machine the client may be the bottleneck, and then the rps ratio understates
the server-side cost, which the CPU ratio shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.fernet import Fernet

from api.app import build_services, create_app
from bench.common import Outcome, Postgres, cpu_seconds, out
from kubebyon.daemon import build_runtime
from kubebyon.db.database import Database
from kubebyon.health import HealthMonitor
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings

CONCURRENCY = 32
WARMUP = 1_000
RUN_TIMEOUT = 120.0
TARGET_RATIO = 0.7
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunResult:
    server: str
    requests: int
    seconds: float
    server_cpu: float
    client_cpu: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu / self.requests * 1e6


async def bare_healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", bare_healthz)
    return app


async def serve(app: web.Application, path: str = "/healthz") -> tuple[web.AppRunner, str]:
    """Serve ``app`` as ``kubebyon serve`` does, on 127.0.0.1 and a free port; the URL of
    ``path`` on it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=1)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}{path}"


@dataclass
class Product:
    """The product app served as ``kubebyon serve`` serves it, on a fresh database."""

    dsn: str
    db: Database
    secrets: SecretBox
    url: str  # of /healthz


async def start_product(
    stack: contextlib.AsyncExitStack, pg: Postgres, label: str, settings: Settings | None = None
) -> Product:
    """Wired as ``kubebyon serve`` wires it (``build_runtime`` with the production
    reconcilers, a running HealthMonitor, every middleware), except the secret key: never
    the data directory's file. ``settings``: default ``Settings()``. Torn down by
    ``stack``."""
    settings = settings or Settings()
    dsn = await pg.fresh_database(label)
    stack.push_async_callback(pg.drop_database, dsn)
    db = await Database.open(
        dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
    )
    stack.push_async_callback(db.close)
    secrets = SecretBox([Fernet.generate_key()])
    runtime = build_runtime(db, settings, secrets)
    await runtime.start()
    stack.push_async_callback(runtime.stop, 5.0)
    monitor = HealthMonitor(
        db,
        runtime_health=lambda: runtime.health(max_tick_age=10.0),
        host_cluster_configured=settings.kubeconfig_path is not None,
    )
    await monitor.probe_database()
    stack.push_async_callback(_cancel, asyncio.create_task(monitor.run()))
    runner, url = await serve(create_app(build_services(settings, db, monitor, secrets)))
    stack.push_async_callback(runner.cleanup)
    return Product(dsn, db, secrets, url)


async def check(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
        if response.status != 200 or body.get("status") != "ok":
            raise RuntimeError(f"{url} answered {response.status} {body}")
        return body


async def drive(
    server: str,
    url: str,
    requests: int,
    profile: cProfile.Profile | None = None,
    *,
    warmup: int = WARMUP,
    concurrency: int = CONCURRENCY,
    headers: Mapping[str, str] | None = None,
) -> RunResult:
    """One load-generator process against ``url``; this process's CPU over the timed part."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        f"--requests={requests}",
        f"--warmup={warmup}",
        f"--concurrency={concurrency}",
        *(f"--header={name}: {value}" for name, value in (headers or {}).items()),
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            ready = await proc.stdout.readline()
            if ready.strip() != b"ready":
                raise RuntimeError(f"load generator did not start: {ready!r}")
            cpu0 = cpu_seconds()
            if profile is not None:
                profile.enable()
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
            if profile is not None:
                profile.disable()
            server_cpu = cpu_seconds() - cpu0
            if await proc.wait() != 0:
                raise RuntimeError(f"load generator exited with {proc.returncode}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    data = json.loads(line)
    if data["errors"] or data["statuses"] != {"200": requests}:
        raise RuntimeError(
            f"{server}: {data['errors']} errors, statuses {data['statuses']} (expected all 200)"
        )
    return RunResult(
        server,
        requests,
        data["seconds"],
        server_cpu,
        data["client_cpu_seconds"],
        data["p50_ms"],
        data["p99_ms"],
    )


def _describe(r: RunResult) -> None:
    out(
        f"  {r.server:<8} {r.requests} req in {r.seconds:6.3f} s = {r.rps:7.0f} req/s  "
        f"latency p50 {r.p50_ms:5.2f} ms p99 {r.p99_ms:5.2f} ms  "
        f"server CPU {r.cpu_us_per_request:5.0f} us/req ({r.server_cpu / r.seconds:4.0%} busy), "
        f"client CPU {r.client_cpu / r.seconds:4.0%} busy"
    )


def print_profile(profile: cProfile.Profile, requests: int, limit: int = 35) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(limit)
    out(
        f"  cProfile of the product server over {requests} requests, by cumulative time "
        "(wall clock: socket send times include preemption by the client on 2 cores):"
    )
    started = False
    for text in stream.getvalue().splitlines():
        if text.lstrip().startswith("ncalls"):
            started = True
        if started and text.strip():
            out(f"    {text.rstrip()}")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def run(pg: Postgres, rounds: int, requests: int, profile: bool) -> Outcome:
    outcome = Outcome("/healthz rps", "product / bare req/s")
    results: list[RunResult] = []
    async with contextlib.AsyncExitStack() as stack:
        product_url = (await start_product(stack, pg, "healthz")).url
        bare_runner, bare_url = await serve(bare_app())
        stack.push_async_callback(bare_runner.cleanup)
        body = await check(product_url)
        await check(bare_url)
        out(
            f"GET /healthz, {requests} timed requests per run after {WARMUP} warm-up, "
            f"{CONCURRENCY} concurrent, keep-alive, client in a separate process"
        )
        out(f"  product answers {json.dumps(body)}")
        urls = {"bare": bare_url, "product": product_url}
        for i in range(rounds):
            order = ("bare", "product") if i % 2 == 0 else ("product", "bare")
            for server in order:
                results.append(await drive(server, urls[server], requests))
                _describe(results[-1])
        if profile:
            prof = cProfile.Profile()
            await drive("product", product_url, requests, prof)
            print_profile(prof, requests)
    bare = [r for r in results if r.server == "bare"]
    product = [r for r in results if r.server == "product"]
    best_bare = max(r.rps for r in bare)
    best_product = max(r.rps for r in product)
    ratio = best_product / best_bare
    cpu_bare = min(r.cpu_us_per_request for r in bare)
    cpu_product = min(r.cpu_us_per_request for r in product)
    outcome.ratio = ratio
    out(
        f"  best of {rounds}: product {best_product:.0f} req/s, bare {best_bare:.0f} req/s, "
        f"ratio {ratio:.2f}"
    )
    out(
        f"  server CPU per request: product {cpu_product:.0f} us, bare {cpu_bare:.0f} us; "
        f"bare/product = {cpu_bare / cpu_product:.2f} (the req/s ratio a CPU-bound server "
        "would show if the client cost nothing)"
    )
    outcome.target(
        f"product >= {TARGET_RATIO:.0%} of bare req/s", ratio >= TARGET_RATIO, f"{ratio:.0%}"
    )
    return outcome
