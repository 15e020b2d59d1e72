"""The asyncpg pool, the named queries and the connection string, in one handle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from kubebyon.db.queries import QUERIES, Queries

WAKEUP_CHANNEL = "kubebyon_wakeup"
# What repository functions accept: a plain connection or one borrowed from the pool.
Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """On release to the pool. Pooled connections keep no session state (LISTEN and the
    migration lock use connections of their own; advisory locks are transaction-scoped),
    so asyncpg's default reset (UNLISTEN *, RESET ALL, ...) is a round trip per query
    for nothing. Only a transaction a cancelled task left open is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool (LISTEN, migrations)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


class Database:
    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.pool = pool
        self.q: Queries = QUERIES

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 10) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_reset_connection,
            command_timeout=60,
            server_settings={"application_name": "kubebyon"},
        )
        return cls(dsn, pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self.pool.execute(sql, *args)
        return status

    def pool_stats(self) -> tuple[int, int]:
        """(open connections, connections in use)."""
        size = self.pool.get_size()
        return size, size - self.pool.get_idle_size()
