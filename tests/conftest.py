"""One embedded PostgreSQL per test session; a fresh database per test, cloned from a
template that already has every migration applied (fast, isolated, real)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import structlog

from kubebyon.db.database import Database, connect
from kubebyon.db.migrate import migrate

TEMPLATE = "kb_template"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that call kubebyon.logs.configure must not leak handlers bound to a captured
    stream (or a DEBUG level) into the tests after them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**structlog_config)


class PgServer:
    def __init__(self, server: Any) -> None:
        self.server = server

    def dsn(self, database: str = "postgres") -> str:
        uri: str = self.server.get_uri(database)
        return uri


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import postgres_server

        # Short path: unix socket paths longer than 107 bytes fail.
        tmp = tempfile.mkdtemp(prefix="kbt", dir="/tmp")
        server = postgres_server.get_server(tmp, cleanup_mode="delete")
    yield PgServer(server)
    server.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
async def template(pg: PgServer) -> str:
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    conn = await connect(pg.dsn(TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE


@pytest.fixture
async def dsn(pg: PgServer, template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        yield pg.dsn(name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def empty_dsn(pg: PgServer) -> AsyncIterator[str]:
    """A database with no schema at all (migration tests)."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield pg.dsn(name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = await Database.open(dsn, min_size=1, max_size=8)
    yield database
    await database.close()
