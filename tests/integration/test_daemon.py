"""``kubebyon`` as an operator runs it: real processes, real signals, real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {
    "KUBEBYON_BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
    "KUBEBYON_BOOTSTRAP_ADMIN_PASSWORD": "first-admin-pass",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBYON_")}
    base.update({"KUBEBYON_LOG_FORMAT": "json", "KUBEBYON_SHUTDOWN_GRACE_SECONDS": "5"})
    base.update(extra)
    return base


def kubebyon(*args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubebyon", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(**extra),
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@asynccontextmanager
async def daemon(*args: str, **extra: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubebyon",
        "serve",
        *args,
        cwd=ROOT,
        env=env(KUBEBYON_HTTP_ADDR=f"127.0.0.1:{port}", **extra),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def healthy(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    return proc.returncode or 0, err.decode()


async def test_serve_bootstraps_admin_once_and_stops_cleanly_on_sigterm(dsn: str) -> None:
    for _ in range(2):  # a restart must not create a second admin
        async with daemon(KUBEBYON_DATABASE_URL=dsn, **ADMIN) as (proc, base):
            await wait_until(lambda base=base: healthy(base), what="daemon healthy", timeout=60)
            code, log = await stop(proc)
        assert code == 0, log
        assert "Traceback" not in log
        assert "kubebyon stopped" in log
        assert "first-admin-pass" not in log
        assert dsn not in log
    conn = await asyncpg.connect(dsn)
    try:
        admins = await conn.fetch("SELECT email, role FROM users")
    finally:
        await conn.close()
    assert [(r["email"], r["role"]) for r in admins] == [("admin@example.com", "admin")]


async def test_replicas_starting_together_create_one_admin(dsn: str) -> None:
    async with (
        daemon(KUBEBYON_DATABASE_URL=dsn, **ADMIN) as (a, base_a),
        daemon("--no-api", KUBEBYON_DATABASE_URL=dsn, **ADMIN) as (b, _),
    ):
        await wait_until(lambda: healthy(base_a), what="replica healthy", timeout=60)
        conn = await asyncpg.connect(dsn)
        try:
            await wait_until(
                lambda: _owners(conn), what="both processes running reconcilers", timeout=30
            )
            count = await conn.fetchval("SELECT count(*) FROM users")
        finally:
            await conn.close()
        assert count == 1
        assert (await stop(a))[0] == 0
        assert (await stop(b))[0] == 0


async def _owners(conn: asyncpg.Connection) -> bool:
    """Each process holds one LISTEN connection for its wake-ups."""
    listeners = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    return bool(listeners >= 2)


async def test_serve_on_the_embedded_database_needs_no_setup() -> None:
    data = Path(tempfile.mkdtemp(prefix="kbe", dir="/tmp"))
    async with daemon(KUBEBYON_DATA_DIR=str(data)) as (proc, base):
        await wait_until(lambda: healthy(base), what="embedded daemon healthy", timeout=90)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
            assert "kubebyon_reconcile_total" in await response.text()
        code, log = await stop(proc)
    assert code == 0, log
    assert (data / "secret.key").stat().st_mode & 0o777 == 0o600
    leftover = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, check=False)
    assert leftover.stdout == b"", "the embedded PostgreSQL must stop with the daemon"


def test_bad_configuration_exits_2_with_one_line_per_problem() -> None:
    result = kubebyon(
        "serve", KUBEBYON_HTTP_ADDR=":notaport", KUBEBYON_JOIN_RATE_LIMIT_BURST="zero"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("kubebyon: invalid configuration: KUBEBYON_HTTP_ADDR")
    assert "KUBEBYON_JOIN_RATE_LIMIT_BURST" in lines[1]
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    result = kubebyon("migrate", KUBEBYON_DATABASE_URL="postgresql://kb:pw@127.0.0.1:1/none")
    assert result.returncode == 1
    assert result.stderr.startswith("kubebyon: cannot connect to the database")
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr


def test_config_prints_every_setting_with_secrets_masked(dsn: str) -> None:
    result = kubebyon("config", KUBEBYON_DATABASE_URL=dsn, KUBEBYON_SECRET_KEY="abc")
    assert result.returncode == 0
    out = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert out["KUBEBYON_DATABASE_URL"] == "(set, hidden)"
    assert out["KUBEBYON_SECRET_KEY"] == "(set, hidden)"
    assert out["KUBEBYON_JOIN_RATE_LIMIT_WINDOW_SECONDS"] == "3.0"
    assert dsn not in result.stdout


def test_migrate_applies_the_schema(empty_dsn: str) -> None:
    result = kubebyon("migrate", KUBEBYON_DATABASE_URL=empty_dsn)
    assert result.returncode == 0, result.stderr
    assert "migrations are up to date" in result.stdout


async def test_create_admin_creates_then_resets(dsn: str) -> None:
    first = kubebyon(
        "create-admin",
        "--email",
        "Ops@Example.COM",
        stdin="a-long-password\n",
        KUBEBYON_DATABASE_URL=dsn,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created admin Ops@example.com (usr_")
    again = kubebyon(
        "create-admin",
        "--email",
        "ops@example.com",
        KUBEBYON_DATABASE_URL=dsn,
        KUBEBYON_ADMIN_PASSWORD="another-long-one",
    )
    assert again.stdout.startswith("updated admin")
    weak = kubebyon(
        "create-admin", "--email", "x@example.com", stdin="short\n", KUBEBYON_DATABASE_URL=dsn
    )
    assert weak.returncode == 2
    assert "at least 10 characters" in weak.stderr
    bad = kubebyon(
        "create-admin",
        "--email",
        "not-an-email",
        stdin="long-enough-pass\n",
        KUBEBYON_DATABASE_URL=dsn,
    )
    assert bad.returncode == 2
    assert "not a valid email" in bad.stderr


@pytest.mark.parametrize("flag", ["--version"])
def test_version(flag: str) -> None:
    result = kubebyon(flag)
    assert result.returncode == 0
    assert result.stdout.startswith("kubebyon ")
