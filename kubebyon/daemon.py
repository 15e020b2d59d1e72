"""Start-up and shutdown of ``kubebyon serve``, in a fixed and visible order.

Start:    settings -> secret key -> database (embedded or URL) -> migrations ->
          bootstrap admin -> host cluster -> runtime (reconcilers, job workers) -> API
          -> READY.
SIGTERM:  stop accepting HTTP -> stop claiming -> in-flight work finishes within the
          grace period (then is cancelled) -> leases released -> host cluster client
          closed -> pool closed -> embedded PostgreSQL stopped.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog
from aiohttp import web

from api.app import build_services, create_app
from kubebyon.adapters.hcaptcha import HCaptchaVerifier
from kubebyon.adapters.kube import HostConfigError, Kube, connect_host
from kubebyon.adapters.kubectl import Kubectl
from kubebyon.adapters.oauth import OAuthAdapter
from kubebyon.db.database import Database, connect
from kubebyon.db.embedded import EmbeddedPostgres
from kubebyon.db.migrate import migrate
from kubebyon.db.users import create_first_admin
from kubebyon.domain.authz import AUTHZ_CHANNEL_PAYLOAD
from kubebyon.domain.passwords import hash_password
from kubebyon.health import HealthMonitor
from kubebyon.runtime.driver import Runtime, new_owner_id
from kubebyon.runtime.jobs import JobLoop
from kubebyon.secretbox import SecretBox, load_or_create_keys
from kubebyon.settings import Settings
from kubebyon.systemd import notify
from reconcilers import build_job_handlers, build_reconcilers

log = structlog.get_logger("kubebyon.daemon")


class StartupError(Exception):
    """A condition an operator must fix; printed as one line, no traceback."""


@dataclass
class Resources:
    db: Database
    secrets: SecretBox


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    """Open the database named by settings (or the embedded one) and apply migrations."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        log.info("starting embedded PostgreSQL", pgdata=str(embedded.pgdata))
        try:
            dsn = await asyncio.to_thread(embedded.start)
        except Exception as exc:
            raise StartupError(f"embedded PostgreSQL did not start: {exc}") from exc
    try:
        try:
            conn = await connect(dsn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StartupError(
                f"cannot connect to the database: {type(exc).__name__}: {exc}"
            ) from None
        try:
            version = conn.get_server_version()
            if version.major < 14:
                raise StartupError(f"PostgreSQL 14 or newer is required, found {version.major}")
            applied = await migrate(conn)
            if applied:
                log.info("migrations applied", applied=applied)
        finally:
            await conn.close()
        db = await Database.open(
            dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        try:
            yield db
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            log.info("embedded PostgreSQL stopped")


async def bootstrap_admin(db: Database, settings: Settings) -> None:
    email, password = settings.bootstrap_admin_email, settings.bootstrap_admin_password
    if not email or password is None:
        return
    user_id = await create_first_admin(db, email, hash_password(password.get_secret_value()))
    if user_id:
        log.info("bootstrap admin created", user_id=user_id, email=email)


async def open_host_cluster(settings: Settings) -> Kube | None:
    """The host cluster's API: the kubeconfig file, else the in-cluster service account."""
    try:
        host = await connect_host(settings.kubeconfig_path)
    except HostConfigError as exc:
        raise StartupError(str(exc)) from None
    if host is None:
        log.warning("no host cluster configured; clusters wait for one (KUBEBYON_KUBECONFIG_PATH)")
    return host


def build_runtime(
    db: Database, settings: Settings, secrets: SecretBox, host: Kube | None = None
) -> Runtime:
    owner = new_owner_id(settings.worker_id)
    jobs = JobLoop(
        db,
        build_job_handlers(settings, host),
        worker_id=owner,
        lease_seconds=settings.lease_seconds,
        idle_poll_seconds=settings.idle_poll_seconds,
        max_attempts=settings.job_max_attempts,
        max_concurrency=settings.job_concurrency,
    )
    return Runtime(
        db,
        build_reconcilers(settings, secrets, host),
        extra_loops=[jobs],
        owner=owner,
        lease_seconds=settings.lease_seconds,
        idle_poll_seconds=settings.idle_poll_seconds,
    )


async def serve(settings: Settings, *, api: bool = True) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    keys = load_or_create_keys(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.data_dir
    )
    secrets = SecretBox(keys)
    async with database(settings) as db:
        await bootstrap_admin(db, settings)
        host_cluster = await open_host_cluster(settings)
        runtime = build_runtime(db, settings, secrets, host_cluster)
        await runtime.start()
        monitor = HealthMonitor(
            db,
            runtime_health=lambda: runtime.health(max_tick_age=10.0),
            host_cluster_configured=host_cluster is not None,
            host_probe=host_cluster.version if host_cluster is not None else None,
        )
        monitor_task = asyncio.create_task(monitor.run(), name="health-monitor")
        runner: web.AppRunner | None = None
        captcha = HCaptchaVerifier()
        oauth = OAuthAdapter()
        try:
            if api:
                kubectl = Kubectl(
                    path=settings.kubectl_path,
                    timeout=settings.kubectl_timeout_seconds,
                    max_output_bytes=settings.kubectl_max_output_bytes,
                )
                services = build_services(
                    settings, db, monitor, secrets, captcha=captcha, oauth=oauth, kubectl=kubectl
                )
                # Cached authorization decisions die with a NOTIFY from any replica.
                runtime.subscribe(AUTHZ_CHANNEL_PAYLOAD, services.authorizer.invalidate)
                runner = web.AppRunner(
                    create_app(services),
                    access_log=None,
                    handle_signals=False,
                )
                await runner.setup()
                host, port = settings.listen
                try:
                    await web.TCPSite(
                        runner, host, port, shutdown_timeout=settings.http_shutdown_seconds
                    ).start()
                except OSError as exc:
                    raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
                log.info("api listening", address=f"{host}:{port}")
            notify("READY=1")
            log.info("kubebyon ready", owner=runtime.owner, api=api)
            await stop.wait()
            notify("STOPPING=1")
            log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
        finally:
            if runner is not None:
                await runner.cleanup()
            await captcha.close()
            await oauth.close()
            await runtime.stop(settings.shutdown_grace_seconds)
            monitor_task.cancel()
            await asyncio.gather(monitor_task, return_exceptions=True)
            if host_cluster is not None:
                await host_cluster.close()
    log.info("kubebyon stopped")
