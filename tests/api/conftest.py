"""An API client on the real app and a real database, plus users to act as."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from api.app import build_services, create_app
from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from kubebyon.domain.passwords import hash_password
from kubebyon.health import HealthMonitor
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings

PASSWORD = "correct-horse-battery"


@dataclass
class User:
    id: str
    email: str
    password: str
    role: str


@pytest.fixture
def settings() -> Settings:
    """Override in a test module to change process settings."""
    return Settings()


@pytest.fixture
async def services(db: Database, settings: Settings) -> Services:
    monitor = HealthMonitor(db, runtime_health=lambda: {"ok": True})
    await monitor.probe_database()
    return build_services(settings, db, monitor, SecretBox([Fernet.generate_key()]))


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(services))) as test_client:
        yield test_client


MakeUser = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(db: Database) -> MakeUser:
    async def make(
        email: str | None = None,
        *,
        role: str = "user",
        password: str = PASSWORD,
        status: str = "active",
    ) -> User:
        user_id = new_id("usr")
        email = email or f"{user_id}@example.com"
        await db.execute(
            "INSERT INTO users (id, email, password_hash, role, status) VALUES ($1,$2,$3,$4,$5)",
            user_id,
            email,
            hash_password(password),
            role,
            status,
        )
        return User(user_id, email, password, role)

    return make


async def login(client: TestClient, user: User) -> None:
    """Sign in through the real endpoint; the client's cookie jar keeps the session."""
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status == 200, await response.text()


@pytest.fixture
async def signed_in(client: TestClient, make_user: MakeUser) -> User:
    user = await make_user()
    await login(client, user)
    return user


@pytest.fixture
async def admin(client: TestClient, make_user: MakeUser) -> User:
    user = await make_user(role="admin")
    await login(client, user)
    return user
