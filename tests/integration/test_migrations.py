"""Forward-only migrations: applied once under a lock, refused when history changed."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kubebyon.db.database import connect
from kubebyon.db.migrate import MigrationError, load_migrations, migrate


async def test_all_migrations_apply_once_and_then_nothing(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        first = await migrate(conn)
        again = await migrate(conn)
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert first == [m.version for m in load_migrations()]
    assert again == []
    assert {"users", "reconcile_queue", "cluster_operations", "cluster_jobs"} <= tables


async def test_processes_starting_together_apply_migrations_once(empty_dsn: str) -> None:
    conns = [await connect(empty_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        recorded = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for conn in conns:
            await conn.close()
    applied = [r for r in results if r]
    assert len(applied) == 1
    assert recorded == len(load_migrations())


async def test_changed_applied_migration_is_refused(empty_dsn: str) -> None:
    migrations = load_migrations()
    conn = await connect(empty_dsn)
    try:
        await migrate(conn, migrations)
        edited = [dataclasses.replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n")]
        with pytest.raises(MigrationError, match=r"0001_foundation\.sql has changed"):
            await migrate(conn, edited + migrations[1:])
    finally:
        await conn.close()


async def test_newer_schema_than_the_code_is_refused(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
        )
        with pytest.raises(MigrationError, match="does not know"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_half_applied(empty_dsn: str) -> None:
    migrations = load_migrations()
    broken = dataclasses.replace(
        migrations[-1],
        version=len(migrations) + 1,
        name="broken",
        sql="CREATE TABLE half_done (id int); SELECT no_such_function();",
    )
    conn = await connect(empty_dsn)
    try:
        with pytest.raises(Exception, match="no_such_function"):
            await migrate(conn, [*migrations, broken])
        exists = await conn.fetchval("SELECT to_regclass('half_done') IS NOT NULL")
        recorded = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    finally:
        await conn.close()
    assert not exists
    assert recorded == len(migrations)
