"""Authorization decisions with a per-principal cache.

Roles of a principal are loaded once and kept with the decisions made for it. Any write
to roles, assignments or grants sends NOTIFY 'authz' in its transaction; every process
drops its cache when that arrives (the runtime's LISTEN connection delivers it), so a
revoked assignment takes effect everywhere within about a second. A TTL bounds the damage
of a lost notification; a reconnect of the listener clears the cache too.

Memory is bounded: at most ``max_principals`` principals (least recently used evicted)
with at most ``max_decisions`` cached decisions each; past that, decisions are computed
from the cached roles without being stored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from kubebyon.db.database import Conn, Database
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.authz import Access, Role, Subjects, allowed

CacheKey = tuple[frozenset[str], frozenset[str], str | None]


async def authz_changed(conn: Conn) -> None:
    """Call in the transaction of any change to roles, assignments or grants."""
    await conn.execute(Q.notify_authz_changed)


@dataclass
class _Entry:
    roles: tuple[Role, ...]
    at: float
    decisions: dict[Access, bool] = field(default_factory=dict)


class Authorizer:
    def __init__(
        self,
        db: Database,
        *,
        ttl: float = 30.0,
        max_principals: int = 2_048,
        max_decisions: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.max_principals = max_principals
        self.max_decisions = max_decisions
        self.clock = clock
        self._cache: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._generation = 0  # bumped by invalidate()

    def invalidate(self) -> None:
        self._cache.clear()
        self._generation += 1

    async def _entry(self, subjects: Subjects, user_id: str | None) -> _Entry:
        key = (*subjects.cache_key, user_id)
        entry = self._cache.get(key)
        now = self.clock()
        if entry is not None and now - entry.at < self.ttl:
            self._cache.move_to_end(key)
            return entry
        generation = self._generation
        rows = await self.db.fetch(
            Q.roles_for_principal, sorted(subjects.users), sorted(subjects.groups), user_id
        )
        roles = tuple(
            Role(
                r["id"],
                r["name"],
                tuple(r["clusters"]),
                tuple(r["namespaces"]),
                tuple(r["resources"]),
                tuple(r["verbs"]),
            )
            for r in rows
        )
        entry = _Entry(roles, now)
        # An invalidation while the query ran may be for a change it did not see: answer
        # this request with it, but do not keep it.
        if generation == self._generation:
            self._cache[key] = entry
            while len(self._cache) > self.max_principals:
                self._cache.popitem(last=False)
        return entry

    async def roles(self, subjects: Subjects, user_id: str | None) -> tuple[Role, ...]:
        return (await self._entry(subjects, user_id)).roles

    async def allowed(self, subjects: Subjects, user_id: str | None, access: Access) -> bool:
        entry = await self._entry(subjects, user_id)
        decision = entry.decisions.get(access)
        if decision is None:
            decision = allowed(entry.roles, access)
            if len(entry.decisions) < self.max_decisions:
                entry.decisions[access] = decision
        return decision

    async def has_role(self, subjects: Subjects, user_id: str | None, name: str) -> bool:
        return any(role.name == name for role in await self.roles(subjects, user_id))
