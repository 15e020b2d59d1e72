"""join_tokens: one key per join token; the host holds its bootstrap Secret exactly while
the token can join a machine.

- Active, unexpired, cluster not being deleted: the Secret the join mechanism describes
  (``bootstrap-token-<id>`` in the host's kube-system) exists. Created when missing, never
  rewritten: a Secret of ours is left as it is, one that KubeBYON did not make is refused.
  With it the token row records what its join script needs from the host: the K10 hash
  of the host's server CA (ConfigMap ``kube-system/kube-root-ca.crt``, which a k3s server
  publishes from its server CA file, the bytes agents download from ``/cacerts``) and the
  k3s version agents install (``KUBEBYON_K3S_VERSION``, else the host's ``GET /version``).
  Looked at again at ``expires_at``.
- Past ``expires_at``: marked ``expired``. Expired, revoked or used (the node reconciler
  marks that), or its cluster being deleted: the Secret is deleted (k3s's tokencleaner
  would delete expired ones too; joined agents keep working through node authorization).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kubebyon.adapters.kube import SECRETS, Kube, KubeError, Resource
from kubebyon.db.database import Database
from kubebyon.domain.join_script import (
    BOOTSTRAP_NAMESPACE,
    HostAgentJoin,
    JoinMechanism,
    k3s_version_problem,
)
from kubebyon.domain.join_tokens import DERIVATION_PURPOSE, derive_bootstrap_token, k3s_ca_hash
from kubebyon.domain.labels import JOIN_TOKEN_LABEL
from kubebyon.runtime.contract import Context, PermanentError, Result, TemporaryError
from kubebyon.secretbox import SecretBox

NAME = "join_tokens"
CONFIG_MAPS = Resource("v1", "configmaps")
HOST_CA_CONFIG_MAP = "kube-root-ca.crt"
NO_HOST = "no host cluster is configured (set KUBEBYON_KUBECONFIG_PATH)"
GONE_CLUSTER = ("deleting", "deleted")
Row = Any  # an asyncpg Record of join_token_for_reconcile


class JoinTokenReconciler:
    name = NAME
    max_concurrency = 4
    timeout = 60.0

    def __init__(
        self,
        host: Kube | None,
        secrets: SecretBox,
        *,
        k3s_version: str | None = None,
        mechanism: JoinMechanism | None = None,
        resync_interval: float = 300.0,
        no_host_retry_seconds: float = 60.0,
    ) -> None:
        self.host = host
        self.secrets = secrets
        self.k3s_version = k3s_version
        self.mechanism = mechanism or HostAgentJoin()
        self.resync_interval = resync_interval
        self.no_host_retry_seconds = no_host_retry_seconds

    async def keys(self, db: Database) -> AsyncIterator[str]:
        for row in await db.fetch(db.q.join_token_keys):
            yield row["id"]

    async def reconcile(self, key: str, ctx: Context) -> Result:
        db = ctx.db
        row = await db.fetchrow(db.q.join_token_for_reconcile, key)
        if row is None:
            return Result(forget=True)
        if row["status"] == "active" and row["seconds_left"] <= 0:
            if await db.fetchval(db.q.expire_join_token, key):
                ctx.log.info("join token expired", join_token_id=key)
            row = await db.fetchrow(db.q.join_token_for_reconcile, key)
            assert row is not None
        active = row["status"] == "active"
        wanted = active and row["cluster_status"] not in GONE_CLUSTER
        if not wanted and row["secret_removed_at"] is not None:
            return Result(forget=not active, requeue_after=self._until_expiry(row))
        if self.host is None:
            ctx.log.warning(NO_HOST, join_token_id=key)
            return Result(requeue_after=self.no_host_retry_seconds, status={"stage": "no_host"})
        try:
            if wanted:
                await self._ensure_secret(ctx, row, self.host)
                return Result(requeue_after=self._until_expiry(row), status={"stage": "active"})
            await self.host.delete(SECRETS, row["bootstrap_secret_name"], BOOTSTRAP_NAMESPACE)
        except KubeError as exc:
            raise TemporaryError(f"host cluster: {exc}") from None
        await db.execute(db.q.record_join_token_secret_removed, key)
        return Result(forget=not active, requeue_after=self._until_expiry(row))

    def _until_expiry(self, row: Row) -> float:
        return max(min(float(row["seconds_left"]), self.resync_interval), 0.0)

    async def _ensure_secret(self, ctx: Context, row: Row, host: Kube) -> None:
        ca_hash = await self._host_ca_hash(host)
        version = self.k3s_version or str((await host.version()).get("gitVersion", ""))
        if problem := k3s_version_problem(version):
            raise TemporaryError(
                f"the host reports version {version!r}, which {problem}: "
                "set KUBEBYON_K3S_VERSION to the k3s release joining machines should install"
            )
        name = row["bootstrap_secret_name"]
        current = await host.get(SECRETS, name, BOOTSTRAP_NAMESPACE)
        if current is None:
            key = self.secrets.derive_key(DERIVATION_PURPOSE)
            desired = self.mechanism.credential(
                cluster_id=row["cluster_id"],
                join_token_id=row["id"],
                token=derive_bootstrap_token(key, row["id"], row["bootstrap_token_id"]),
                expires_at=row["expires_at"],
            )
            try:
                await host.create(SECRETS, desired)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                raise TemporaryError(f"Secret {name} was created meanwhile") from None
            ctx.log.info("join token Secret created", join_token_id=row["id"], secret=name)
        elif (current["metadata"].get("labels") or {}).get(JOIN_TOKEN_LABEL) != row["id"]:
            raise PermanentError(
                f"the host already has a Secret {BOOTSTRAP_NAMESPACE}/{name} that KubeBYON "
                "did not create for this token; create another join token"
            )
        await ctx.db.execute(ctx.db.q.record_join_token_secret, row["id"], ca_hash, version)

    @staticmethod
    async def _host_ca_hash(host: Kube) -> str:
        config_map = await host.get(CONFIG_MAPS, HOST_CA_CONFIG_MAP, BOOTSTRAP_NAMESPACE)
        bundle = ((config_map or {}).get("data") or {}).get("ca.crt")
        if not bundle:
            raise TemporaryError(
                f"the host has no {BOOTSTRAP_NAMESPACE}/{HOST_CA_CONFIG_MAP} with a ca.crt yet"
            )
        try:
            return k3s_ca_hash(bundle.encode())
        except ValueError:
            raise TemporaryError(
                f"{BOOTSTRAP_NAMESPACE}/{HOST_CA_CONFIG_MAP} holds no PEM certificate"
            ) from None
