"""The join_tokens reconciler against the fake Kubernetes API (the host) and PostgreSQL:
the bootstrap Secret while a token can join a machine, none once it cannot."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kubebyon.adapters.kube import Kube
from kubebyon.db.database import Database
from kubebyon.db.desired_state import wake
from kubebyon.domain.ids import new_id
from kubebyon.domain.join_tokens import (
    DERIVATION_PURPOSE,
    BootstrapToken,
    derive_bootstrap_token,
    new_bootstrap_id,
)
from kubebyon.domain.tokens import token_hash
from kubebyon.runtime.contract import Context, PermanentError, Result, TemporaryError
from kubebyon.runtime.driver import Runtime
from kubebyon.secretbox import SecretBox
from reconcilers.join_tokens import NAME, JoinTokenReconciler
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import queue_row, wait_until

HOST_VERSION = "v1.31.4+k3s1"
SECRET_TYPE = "bootstrap.kubernetes.io/token"


def _self_signed_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k3s-server-ca@1700000000")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.PEM).decode()


# What a k3s server publishes in kube-root-ca.crt: its server CA file, byte for byte.
HOST_CA = _self_signed_ca()


@dataclass
class Env:
    db: Database
    host: FakeKubeAPI
    kube: Kube
    secrets: SecretBox
    owner: str
    cluster_id: str

    def reconciler(self, **options: Any) -> JoinTokenReconciler:
        return JoinTokenReconciler(self.kube, self.secrets, **options)

    async def reconcile(self, key: str, **options: Any) -> Result:
        return await self.reconciler(**options).reconcile(key, Context(self.db, key, 0))

    async def issue(self, ttl_seconds: float = 3600) -> tuple[str, BootstrapToken]:
        """A token as the console API issues it: (row id, the bootstrap token)."""
        token_id = new_id("tok")
        key = self.secrets.derive_key(DERIVATION_PURPOSE)
        token = derive_bootstrap_token(key, token_id, new_bootstrap_id())
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                self.db.q.insert_join_token,
                token_id,
                self.cluster_id,
                token_hash(token.value),
                token.display_prefix,
                token.id,
                token.secret_name,
                self.owner,
                float(ttl_seconds),
            )
            assert row is not None
            await wake(conn, NAME, token_id)
        return token_id, token

    async def token(self, token_id: str) -> Any:
        return await self.db.fetchrow("SELECT * FROM join_tokens WHERE id = $1", token_id)

    def secret(self, token: BootstrapToken) -> dict[str, Any] | None:
        return self.host.get("secrets", token.secret_name, "kube-system")

    @asynccontextmanager
    async def running(self, **options: Any) -> AsyncIterator[Runtime]:
        runtime = Runtime(
            self.db,
            [self.reconciler(**options)],
            lease_seconds=10,
            idle_poll_seconds=0.2,
            backoff_base=0.05,
            backoff_cap=0.2,
            rng=random.Random(7),
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop(grace=5)


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    owner = new_id("usr")
    await db.execute("INSERT INTO users (id, email) VALUES ($1, $2)", owner, f"{owner}@e.test")
    cluster_id = new_id("cl")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, status, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, 'demo', 'demo', 'demo', 'ready', 'v1.31.2', 2000, 2048, 500, 512)",
        cluster_id,
        owner,
    )
    async with FakeKubeAPI(git_version=HOST_VERSION) as host:
        host.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": "kube-system"},
                "data": {"ca.crt": HOST_CA},
            }
        )
        kube = Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)
        yield Env(db, host, kube, SecretBox([Fernet.generate_key()]), owner, cluster_id)


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# --------------------------------------------------------------------- active tokens


async def test_an_active_token_gets_its_bootstrap_secret_on_the_host(env: Env) -> None:
    token_id, token = await env.issue(ttl_seconds=3600)
    result = await env.reconcile(token_id)

    secret = env.secret(token)
    assert secret is not None
    assert secret["type"] == SECRET_TYPE
    assert secret["metadata"]["name"] == f"bootstrap-token-{token.id}"
    assert secret["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kubebyon",
        "kubebyon.io/cluster-id": env.cluster_id,
        "kubebyon.io/join-token-id": token_id,
    }
    row = await env.token(token_id)
    data = decoded(secret)
    assert data.pop("description")
    assert data == {
        "token-id": token.id,
        "token-secret": token.secret,  # the user's value carries exactly this token
        "expiration": row["expires_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:k3s:default-node-token",
    }
    assert bytes(row["value_hash"]) == token_hash(f"kbt_{token.id}.{token.secret}")
    # What the join script needs from the host, observed with the Secret.
    assert row["secret_created_at"] is not None and row["secret_removed_at"] is None
    assert row["host_ca_hash"] == hashlib.sha256(HOST_CA.encode()).hexdigest()
    assert row["k3s_version"] == HOST_VERSION
    assert result.requeue_after is not None and result.requeue_after <= 300


async def test_an_unchanged_token_costs_no_write(env: Env) -> None:
    token_id, _ = await env.issue()
    await env.reconcile(token_id)
    env.host.reset_request_counts()
    before = await env.token(token_id)
    await env.reconcile(token_id)
    assert not [k for k in env.host.request_count if k[0] != "GET"]
    assert await env.token(token_id) == before


async def test_the_k3s_version_setting_wins_over_the_hosts(env: Env) -> None:
    token_id, _ = await env.issue()
    await env.reconcile(token_id, k3s_version="v1.30.9+k3s2")
    assert (await env.token(token_id))["k3s_version"] == "v1.30.9+k3s2"


async def test_a_host_that_is_not_k3s_needs_the_version_setting(env: Env) -> None:
    env.host.git_version = "v1.31.0"
    token_id, token = await env.issue()
    with pytest.raises(TemporaryError, match="set KUBEBYON_K3S_VERSION"):
        await env.reconcile(token_id)
    assert env.secret(token) is None


async def test_a_secret_lost_on_the_host_is_made_again(env: Env) -> None:
    token_id, token = await env.issue()
    await env.reconcile(token_id)
    first = env.secret(token)
    assert first is not None
    env.host.delete_object("secrets", token.secret_name, "kube-system")
    await env.reconcile(token_id)
    again = env.secret(token)
    assert again is not None and again["data"] == first["data"]


async def test_a_secret_that_kubebyon_did_not_make_is_left_alone(env: Env) -> None:
    token_id, token = await env.issue()
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {"name": token.secret_name, "namespace": "kube-system"},
        "data": {"token-id": base64.b64encode(token.id.encode()).decode()},
    }
    env.host.put_object(foreign)
    with pytest.raises(PermanentError, match="did not create"):
        await env.reconcile(token_id)
    left = env.secret(token)
    assert left is not None and left["data"] == foreign["data"]
    assert "labels" not in left["metadata"]
    assert (await env.token(token_id))["secret_created_at"] is None


async def test_without_the_host_ca_no_secret_is_made(env: Env) -> None:
    env.host.delete_object("configmaps", "kube-root-ca.crt", "kube-system")
    token_id, token = await env.issue()
    with pytest.raises(TemporaryError, match=r"kube-system/kube-root-ca\.crt"):
        await env.reconcile(token_id)
    assert env.secret(token) is None
    assert (await env.token(token_id))["secret_created_at"] is None


async def test_host_errors_are_retried(env: Env) -> None:
    token_id, token = await env.issue()
    env.host.fail_next(2, status=503)  # both attempts of one call
    with pytest.raises(TemporaryError, match="host cluster"):
        await env.reconcile(token_id)
    await env.reconcile(token_id)
    assert env.secret(token) is not None


async def test_without_a_host_the_token_waits(db: Database) -> None:
    reconciler = JoinTokenReconciler(None, SecretBox([Fernet.generate_key()]))
    owner = new_id("usr")
    await db.execute("INSERT INTO users (id, email) VALUES ($1, $2)", owner, f"{owner}@e.test")
    cluster_id, token_id = new_id("cl"), new_id("tok")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, status, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, 'demo', 'demo', 'demo', 'ready', 'v1.31.2', 2000, 2048, 500, 512)",
        cluster_id,
        owner,
    )
    await db.execute(
        db.q.insert_join_token, token_id, cluster_id, b"h", "kbt_abcdef", "abcdef",
        "bootstrap-token-abcdef", owner, 3600.0,
    )  # fmt: skip
    result = await reconciler.reconcile(token_id, Context(db, token_id, 0))
    assert result.status == {"stage": "no_host"} and result.requeue_after == 60.0


# ------------------------------------------------------------ tokens that cannot join


async def test_expiry_marks_the_token_expired_and_removes_its_secret(env: Env) -> None:
    token_id, token = await env.issue(ttl_seconds=1.5)
    async with env.running():
        await wait_until(lambda: env.secret(token) is not None, what="the Secret")
        row = await wait_until(
            lambda: env.db.fetchrow(
                "SELECT * FROM join_tokens WHERE id = $1 AND status = 'expired'", token_id
            ),
            what="the token expired",
        )
        assert row["expires_at"] <= datetime.now(UTC)
        await wait_until(lambda: env.secret(token) is None, what="the Secret removed")
        await wait_until(lambda: _forgotten(env.db, token_id), what="the key forgotten")
    assert (await env.token(token_id))["secret_removed_at"] is not None


async def _forgotten(db: Database, token_id: str) -> bool:
    return await queue_row(db, NAME, token_id) is None


@pytest.mark.parametrize("status", ["revoked", "used"])
async def test_revoked_and_used_tokens_lose_their_secret(env: Env, status: str) -> None:
    token_id, token = await env.issue()
    await env.reconcile(token_id)
    assert env.secret(token) is not None
    await env.db.execute("UPDATE join_tokens SET status = $2 WHERE id = $1", token_id, status)
    result = await env.reconcile(token_id)
    assert env.secret(token) is None
    assert result.forget
    assert (await env.token(token_id))["secret_removed_at"] is not None
    # Nothing more to do for it: resync no longer lists it.
    assert token_id not in [k async for k in env.reconciler().keys(env.db)]


async def test_a_deleting_clusters_tokens_lose_their_secret_until_they_expire(env: Env) -> None:
    token_id, token = await env.issue()
    await env.reconcile(token_id)
    await env.db.execute("UPDATE clusters SET status = 'deleting' WHERE id = $1", env.cluster_id)
    result = await env.reconcile(token_id)
    assert env.secret(token) is None
    assert not result.forget  # still active: it is marked expired at expires_at
    await env.db.execute(
        "UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", token_id
    )
    assert (await env.reconcile(token_id)).forget
    assert (await env.token(token_id))["status"] == "expired"
