"""Reads of the admin-edited settings document, cached briefly per process.

Hot paths (CSRF checks, cookies) read it on every unsafe request; a two-second cache
keeps that off the database while an admin's change still shows up everywhere quickly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kubebyon.db.database import Conn, Database
from kubebyon.domain.system_settings import SystemSettings


class SystemSettingsStore:
    def __init__(
        self, db: Database, *, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._cached: SystemSettings | None = None
        self._at = 0.0

    async def get(self) -> SystemSettings:
        if self._cached is not None and self.clock() - self._at < self.ttl:
            return self._cached
        row = await self.db.fetchrow(self.db.q.get_system_settings)
        settings = SystemSettings.model_validate(row["document"] if row else {})
        self._cached, self._at = settings, self.clock()
        return settings

    async def put(self, conn: Conn, settings: SystemSettings, updated_by: str | None) -> None:
        """Write inside the caller's transaction (which also writes the audit event);
        call ``invalidate`` again once it has committed, so that no read made meanwhile
        keeps the old document cached."""
        await conn.execute(
            self.db.q.put_system_settings, settings.model_dump(mode="json"), updated_by
        )
        self.invalidate()

    def invalidate(self) -> None:
        """Other replicas see the change when their cache expires (``ttl`` seconds)."""
        self._cached = None
