"""Account writes used outside the HTTP API (start-up bootstrap, the CLI)."""

from __future__ import annotations

from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id


async def create_first_admin(db: Database, email: str, password_hash: str) -> str | None:
    """Create an admin when no account exists; None when one already does.

    Idempotent across restarts and safe when replicas start together.
    """
    async with db.transaction() as conn:
        await conn.execute(db.q.lock_bootstrap)
        user_id: str | None = await conn.fetchval(
            db.q.insert_first_admin, new_id("usr"), email, password_hash
        )
        return user_id


async def create_or_promote_admin(db: Database, email: str, password_hash: str) -> tuple[str, bool]:
    """(user id, created). An existing account gets the new password and the admin role."""
    async with db.transaction() as conn:
        existing = await conn.fetchrow(db.q.get_user_by_email, email)
        if existing is not None:
            await conn.execute(db.q.set_user_admin_password, existing["id"], password_hash)
            return existing["id"], False
        row = await conn.fetchrow(db.q.insert_user, new_id("usr"), email, password_hash, "admin")
        assert row is not None
        return row["id"], True
