"""What every benchmark shares: one embedded PostgreSQL, fresh databases, statistics,
and a uniform way of printing figures, ratios and targets."""

from __future__ import annotations

import collections
import itertools
import logging
import math
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from kubebyon.db.database import Conn, Database, connect
from kubebyon.db.migrate import migrate
from kubebyon.db.queries import QUERIES
from kubebyon.logs import configure

# pgserver puts its unix socket inside the data directory, and a socket path longer than
# 107 bytes fails, so the data directory must be short: /tmp, whatever TMPDIR says.
SHORT_TMP = "/tmp"  # noqa: S108 - a private mkdtemp directory, see above


def out(line: str = "") -> None:
    print(line, flush=True)


@dataclass
class Target:
    label: str
    met: bool
    detail: str = ""


@dataclass
class Outcome:
    """What one benchmark reports to the summary."""

    name: str
    ratio_label: str = ""
    ratio: float | None = None
    targets: list[Target] = field(default_factory=list)
    error: str | None = None

    def target(self, label: str, met: bool, detail: str = "") -> None:
        self.targets.append(Target(label, met, detail))
        verdict = "met" if met else "MISSED"
        out(f"  target {label}: {verdict}{f' ({detail})' if detail else ''}")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    return time.process_time()


class Postgres:
    """One embedded PostgreSQL for the whole run; a fresh, migrated database per phase."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="kbb", dir=SHORT_TMP)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from pgserver import postgres_server

            self._server: Any = postgres_server.get_server(self.directory, cleanup_mode="delete")
        self.admin_dsn: str = self._server.get_uri()
        self._names = itertools.count(1)

    def dsn_for(self, dbname: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{dbname}"))

    async def server_version(self) -> str:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            version: str = await conn.fetchval("SHOW server_version")
            fsync: str = await conn.fetchval("SHOW fsync")
            sync: str = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()
        return f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync})"

    async def fresh_database(self, label: str) -> str:
        """Create an empty database, apply the product's migrations, return its DSN."""
        name = f"bench_{label}_{next(self._names)}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.dsn_for(name)
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return dsn

    async def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def close(self) -> None:
        self._server.cleanup()


QUERY_NAMES = {getattr(QUERIES, name): name for name in QUERIES.names()}


class CountingDatabase(Database):
    """The product's Database, counting the statements it runs by query name (``other``
    for SQL that is not a named query) and its transactions as ``transaction`` (the
    statements inside one go through the connection and are not counted)."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        super().__init__(dsn, pool)
        self.statements: collections.Counter[str] = collections.Counter()

    def _count(self, sql: str) -> None:
        self.statements[QUERY_NAMES.get(sql, "other")] += 1

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        self.statements["transaction"] += 1
        async with super().transaction() as conn:
            yield conn

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self._count(sql)
        return await super().fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self._count(sql)
        return await super().fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._count(sql)
        return await super().fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self._count(sql)
        return await super().execute(sql, *args)


class LogSink:
    """Production logging (``kubebyon.logs.configure('json', 'info')``) into a file.

    The handler, formatter and processors are exactly those of ``kubebyon serve``; only
    the stream differs (a file instead of stderr), so the bench pays the real cost of
    rendering every log line without flooding the terminal.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "kubebyon-bench.log"
        configure("json", "info")
        self._stream: IO[str] = self.path.open("a", encoding="utf-8")
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(self._stream)

    def lines(self) -> int:
        self._stream.flush()
        with self.path.open("rb") as f:
            return sum(1 for _ in f)

    def close(self) -> None:
        self._stream.flush()
        self._stream.close()
