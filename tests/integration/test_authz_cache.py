"""The authorization cache on real PostgreSQL: roles loaded once per principal, dropped
on NOTIFY by every process within a second, after a TTL, and when the listener
reconnects; groups from the session and bk-bcs names linked to an account count."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from api.sessions import start_session
from kubebyon.db.authz import Authorizer, authz_changed
from kubebyon.db.database import Database
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.authz import AUTHZ_CHANNEL_PAYLOAD, Access, Role, Subjects, subjects_of
from kubebyon.domain.ids import new_id
from kubebyon.domain.tokens import token_hash
from kubebyon.runtime.driver import Runtime
from tests.support import wait_until
from tests.unit.test_authz_engine import ADMIN, VIEWER

READ_PODS = Access("cl_demo", "dev", "pods", "get")


class CountingDatabase(Database):
    """The same pool; counts the role queries the authorizer runs and can hold one
    back after it ran (``gate``) to stage a race with an invalidation."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.dsn, db.pool)
        self.role_queries = 0
        self.gate: asyncio.Event | None = None
        self.queried = asyncio.Event()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows = await super().fetch(sql, *args)
        if sql == Q.roles_for_principal:
            self.role_queries += 1
            self.queried.set()
            if self.gate is not None:
                await self.gate.wait()
        return rows


async def make_user(db: Database, email: str | None = None) -> tuple[str, str]:
    user_id = new_id("usr")
    email = email or f"{user_id}@example.com"
    await db.execute(
        "INSERT INTO users (id, email, password_hash, role, status) "
        "VALUES ($1, $2, 'x', 'user', 'active')",
        user_id,
        email,
    )
    return user_id, email


async def create_role(db: Database, name: str, **patterns: list[str]) -> int:
    dims = {"clusters": ["cl_demo"], "namespaces": ["dev"], "resources": ["pods"]}
    dims |= {"verbs": ["get"]} | patterns
    role_id: int = await db.fetchval(
        "INSERT INTO roles (name, clusters, namespaces, resources, verbs) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        name,
        dims["clusters"],
        dims["namespaces"],
        dims["resources"],
        dims["verbs"],
    )
    return role_id


async def assign(db: Database, role_id: int, subject: str, subject_type: str = "user") -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, $2, $3)",
            role_id,
            subject_type,
            subject,
        )
        await authz_changed(conn)


async def unassign(db: Database, role_id: int, subject: str, *, notify: bool = True) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "DELETE FROM role_assignments WHERE role_id = $1 AND subject = $2", role_id, subject
        )
        if notify:
            await authz_changed(conn)


@asynccontextmanager
async def listening(db: Database, authorizer: Authorizer) -> AsyncIterator[Runtime]:
    """A runtime (no reconcilers: only its LISTEN connection) feeding ``authorizer``, as
    kubebyon/daemon.py wires it."""
    runtime = Runtime(db, [], idle_poll_seconds=3600, rng=random.Random(5))
    runtime.subscribe(AUTHZ_CHANNEL_PAYLOAD, authorizer.invalidate)
    await runtime.start()
    try:
        assert runtime.listener.connected.is_set()
        yield runtime
    finally:
        await runtime.stop(grace=5.0)


async def test_decisions_are_cached_per_principal(db: Database) -> None:
    counting = CountingDatabase(db)
    authorizer = Authorizer(counting)
    alice, alice_email = await make_user(db)
    bob, bob_email = await make_user(db)
    await assign(db, await create_role(db, "pod-reader"), alice)
    alice_subjects = subjects_of(alice, alice_email)

    for _ in range(3):
        assert await authorizer.allowed(alice_subjects, alice, READ_PODS)
        assert not await authorizer.allowed(
            alice_subjects, alice, Access("cl_demo", "dev", "pods", "delete")
        )
    assert [r.name for r in await authorizer.roles(alice_subjects, alice)] == ["pod-reader"]
    assert await authorizer.has_role(alice_subjects, alice, "pod-reader")
    assert counting.role_queries == 1

    # Another principal has its own entry: alice's roles are not bob's.
    assert not await authorizer.allowed(subjects_of(bob, bob_email), bob, READ_PODS)
    assert counting.role_queries == 2

    authorizer.invalidate()
    assert await authorizer.allowed(alice_subjects, alice, READ_PODS)
    assert counting.role_queries == 3


async def test_the_seeded_system_roles_are_admin_and_viewer(db: Database) -> None:
    rows = await db.fetch(
        "SELECT id, name, clusters, namespaces, resources, verbs, is_system FROM roles ORDER BY id"
    )
    seeded = [
        Role(
            r["id"],
            r["name"],
            *(tuple(r[k]) for k in ("clusters", "namespaces", "resources", "verbs")),
        )
        for r in rows
    ]
    assert seeded == [ADMIN, VIEWER]
    assert all(r["is_system"] for r in rows)

    authorizer = Authorizer(db)
    user, email = await make_user(db)
    await assign(db, VIEWER.id, user)
    subjects = subjects_of(user, email)
    assert await authorizer.allowed(subjects, user, Access("any", "kube-system", "secrets", "get"))
    assert await authorizer.allowed(subjects, user, Access("any", "dev", "pods", "log"))
    assert not await authorizer.allowed(subjects, user, Access("any", "dev", "pods", "delete"))
    assert not await authorizer.allowed(subjects, user, Access("any", "dev", "pods", "exec"))


async def test_a_revoked_assignment_takes_effect_in_another_process_within_a_second(
    db: Database,
) -> None:
    user, email = await make_user(db)
    subjects = subjects_of(user, email)
    role_id = await create_role(db, "pod-reader")
    await assign(db, role_id, user)
    async with AsyncExitStack() as stack:
        # Two processes: each its own pool, LISTEN connection and cache.
        other_db = await Database.open(db.dsn, min_size=1, max_size=2)
        stack.push_async_callback(other_db.close)
        here, there = CountingDatabase(db), CountingDatabase(other_db)
        authorizers = [Authorizer(here), Authorizer(there)]
        for each_db, authorizer in zip((db, other_db), authorizers, strict=True):
            await stack.enter_async_context(listening(each_db, authorizer))
        for authorizer in authorizers:
            assert await authorizer.allowed(subjects, user, READ_PODS)
            assert await authorizer.allowed(subjects, user, READ_PODS)  # now from the cache
        assert (here.role_queries, there.role_queries) == (1, 1)

        await unassign(db, role_id, user)  # through the first process
        for authorizer in authorizers:
            await wait_until(
                lambda: _denied(authorizer, subjects, user),  # noqa: B023 - awaited at once
                timeout=1.0,
                what="both processes to drop the revoked assignment",
            )
        assert (here.role_queries, there.role_queries) == (2, 2)


async def _denied(authorizer: Authorizer, subjects: Subjects, user: str) -> bool:
    return not await authorizer.allowed(subjects, user, READ_PODS)


async def test_without_a_notification_the_ttl_bounds_a_stale_decision(db: Database) -> None:
    now = [1000.0]
    authorizer = Authorizer(db, ttl=30.0, clock=lambda: now[0])
    user, email = await make_user(db)
    subjects = subjects_of(user, email)
    role_id = await create_role(db, "pod-reader")
    await assign(db, role_id, user)
    assert await authorizer.allowed(subjects, user, READ_PODS)

    await unassign(db, role_id, user, notify=False)  # a notification that never arrives
    now[0] += 29.0
    assert await authorizer.allowed(subjects, user, READ_PODS)  # still the cached answer
    now[0] += 1.0
    assert not await authorizer.allowed(subjects, user, READ_PODS)


async def test_a_listener_reconnect_clears_the_cache(db: Database) -> None:
    authorizer = Authorizer(db)
    user, email = await make_user(db)
    subjects = subjects_of(user, email)
    role_id = await create_role(db, "pod-reader")
    await assign(db, role_id, user)
    async with listening(db, authorizer):
        assert await authorizer.allowed(subjects, user, READ_PODS)
        await unassign(db, role_id, user, notify=False)
        assert await authorizer.allowed(subjects, user, READ_PODS)  # cached, not told
        # Notifications sent while the listener was away are lost: the reconnect itself
        # must drop what the cache holds.
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert killed == 1
        await wait_until(
            lambda: _denied(authorizer, subjects, user), what="the cache to be dropped"
        )


async def test_an_invalidation_during_a_role_query_is_not_lost(db: Database) -> None:
    counting = CountingDatabase(db)
    authorizer = Authorizer(counting)
    user, email = await make_user(db)
    subjects = subjects_of(user, email)
    role_id = await create_role(db, "pod-reader")
    await assign(db, role_id, user)

    counting.gate = asyncio.Event()
    first = asyncio.create_task(authorizer.allowed(subjects, user, READ_PODS))
    await asyncio.wait_for(counting.queried.wait(), 5)  # it read the assignment...
    await unassign(db, role_id, user)  # ...which is revoked before its answer arrives
    authorizer.invalidate()
    counting.gate.set()
    assert await first  # answered as of when it asked
    assert not await authorizer.allowed(subjects, user, READ_PODS)  # but not kept


async def test_an_assignment_to_a_group_applies_to_sessions_carrying_that_group(
    db: Database,
) -> None:
    authorizer = Authorizer(db)
    user, _ = await make_user(db)
    await assign(db, await create_role(db, "team-reader"), "platform-team", "group")

    async def session_subjects(groups: list[str]) -> Subjects:
        async with db.transaction() as conn:
            _, token, _ = await start_session(
                conn,
                user_id=user,
                auth_method="oauth:corp",
                ip=None,
                user_agent=None,
                idle_seconds=3600,
                groups=groups,
            )
        row = await db.fetchrow(Q.session_principal, token_hash(token), 3600, 86400)
        assert row is not None
        return subjects_of(row["user_id"], row["email"], row["groups"])

    assert await authorizer.allowed(await session_subjects(["platform-team", "x"]), user, READ_PODS)
    assert not await authorizer.allowed(await session_subjects(["other-team"]), user, READ_PODS)
    # A user named like the group is not in it.
    assert not await authorizer.allowed(Subjects(frozenset({"platform-team"})), None, READ_PODS)


async def test_roles_of_a_linked_bcs_user_are_the_accounts_own(db: Database) -> None:
    authorizer = Authorizer(db)
    alice, alice_email = await make_user(db)
    stranger, stranger_email = await make_user(db)
    await db.execute(
        "INSERT INTO bcs_users (name, user_type, user_id, token_hash, token_encrypted, expires_at) "
        "VALUES ('alice-bcs', 3, $1, $2, 'sealed', now() + interval '1 day')",
        alice,
        random.randbytes(32),
    )
    await assign(db, await create_role(db, "bcs-viewer"), "alice-bcs")

    assert await authorizer.allowed(subjects_of(alice, alice_email), alice, READ_PODS)
    assert not await authorizer.allowed(subjects_of(stranger, stranger_email), stranger, READ_PODS)
    # The bk-bcs user itself (as the bk-bcs dialect sees it) holds the role too.
    assert await authorizer.allowed(Subjects(frozenset({"alice-bcs"})), None, READ_PODS)
