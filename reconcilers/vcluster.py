"""vcluster: one key per cluster; makes the host match the cluster's desired state.

Converge (any status but ``deleting``/``deleted``): the host namespace (labelled as
KubeBYON's, for this cluster), its ResourceQuota and LimitRange, the cluster's admission
webhooks (kubebyon/domain/admission.py; registered once ``public_base_url`` is an https
URL, as the API server calls webhooks over https only), and the vCluster install
(an ``Installer``; by default a k3s HelmChart). Once the install is done the vCluster's
own kubeconfig is read, re-addressed to the cluster's ``api_endpoint`` and stored
encrypted; the cluster becomes ``ready`` at the generation it was built from.

Delete (``deleting``): remove the webhooks, uninstall, then remove the namespace, wait
until both are gone, then ``deleted`` and the key is forgotten.

Every write is compared first: an unchanged cluster costs a handful of GETs and no
write. Host errors become ``last_error_message`` and a retry with backoff; desired state
that cannot be installed becomes ``error`` with a message naming what to change. The
operation's job (reconcilers/cluster_jobs.py) only watches for the outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from kubebyon.adapters.kube import (
    LIMIT_RANGES,
    MUTATING_WEBHOOKS,
    NAMESPACES,
    RESOURCE_QUOTAS,
    VALIDATING_WEBHOOKS,
    Kube,
    KubeError,
    contains,
    is_deleting,
)
from kubebyon.adapters.vcluster import (
    HelmChartInstaller,
    Installer,
    InstallStatus,
    Release,
    https_node_port,
)
from kubebyon.db import audit
from kubebyon.db.database import Database
from kubebyon.db.desired_state import wake
from kubebyon.db.system_settings import SystemSettingsStore
from kubebyon.domain import admission
from kubebyon.domain.labels import CLUSTER_LABEL
from kubebyon.domain.vcluster_values import (
    LIMIT_RANGE_NAME,
    QUOTA_NAME,
    ClusterSpec,
    InvalidClusterSpec,
    api_endpoint,
    check,
    limit_range_spec,
    namespace_labels,
    parse_values_file,
    quota_spec,
    readdress_kubeconfig,
    vcluster_values,
)
from kubebyon.runtime.contract import Context, PermanentError, Result, TemporaryError
from kubebyon.secretbox import SecretBox

NAME = "vcluster"
NO_HOST = "no host cluster is configured (set KUBEBYON_KUBECONFIG_PATH)"
CONNECTION_RECONCILER = "connection"
MAX_MESSAGE = 1000
KEEP: Any = object()  # _observe: leave the column as it is
Row = Any  # an asyncpg Record of ``clusters``


def load_values_file(path: Path | None) -> dict[str, Any]:
    """The operator's base values (``KUBEBYON_VCLUSTER_VALUES_FILE``), or none."""
    return parse_values_file(path.read_text()) if path is not None else {}


class VClusterReconciler:
    name = NAME
    max_concurrency = 8
    timeout = 120.0

    def __init__(
        self,
        host: Kube | None,
        secrets: SecretBox,
        *,
        chart_repo: str,
        chart_version: str,
        base_values: Mapping[str, Any] | None = None,
        installer: Installer | None = None,
        resync_interval: float = 300.0,
        poll_seconds: float = 5.0,
        no_host_retry_seconds: float = 60.0,
    ) -> None:
        self.host = host
        self.secrets = secrets
        self.base_values = dict(base_values or {})
        self.installer = installer
        if installer is None and host is not None:
            self.installer = HelmChartInstaller(host, repo=chart_repo, version=chart_version)
        self.resync_interval = resync_interval
        self.poll_seconds = poll_seconds  # how often an install in progress is looked at
        self.no_host_retry_seconds = no_host_retry_seconds
        self._system_settings: SystemSettingsStore | None = None

    async def keys(self, db: Database) -> AsyncIterator[str]:
        for row in await db.fetch(db.q.vcluster_cluster_ids):
            yield row["id"]

    async def reconcile(self, key: str, ctx: Context) -> Result:
        row = await ctx.db.fetchrow(ctx.db.q.vcluster_cluster, key)
        if row is None or row["status"] == "deleted" or row["backend"] != "vcluster":
            return Result(forget=True)
        if self.host is None or self.installer is None:
            # Not an error storm: the message says what to do, and we look again slowly.
            await self._set_message(ctx, row, NO_HOST)
            return self._stage("waiting_for_host_cluster", self.no_host_retry_seconds)
        try:
            if row["status"] == "deleting":
                return await self._delete(ctx, row, self.host, self.installer)
            return await self._converge(ctx, row, self.host, self.installer)
        except KubeError as exc:
            message = f"host cluster: {exc}"
            await self._set_message(ctx, row, message)
            raise TemporaryError(message) from None

    @staticmethod
    def _stage(stage: str, requeue_after: float | None = None) -> Result:
        return Result(requeue_after=requeue_after, status={"stage": stage})

    # ----------------------------------------------------------------- converge

    async def _converge(self, ctx: Context, row: Row, kube: Kube, installer: Installer) -> Result:
        spec = ClusterSpec.from_mapping(row)
        try:
            check(spec)
            values = vcluster_values(spec, self.base_values)
            await self._namespace(kube, spec)
        except InvalidClusterSpec as exc:
            await self._failed(ctx, row, str(exc))
            raise PermanentError(str(exc)) from None
        labels = namespace_labels(spec)
        quota = {"metadata": {"name": QUOTA_NAME, "namespace": spec.namespace, "labels": labels}}
        limits = {
            "metadata": {"name": LIMIT_RANGE_NAME, "namespace": spec.namespace, "labels": labels}
        }
        await kube.ensure(RESOURCE_QUOTAS, {**quota, "spec": quota_spec(spec, values)})
        await kube.ensure(LIMIT_RANGES, {**limits, "spec": limit_range_spec()})
        await self._admission_webhooks(ctx, kube, spec)
        release = Release(spec.vcluster_name, spec.namespace, values, labels)
        # A change after a failure means "try again", even if the chart is unchanged.
        retry = row["status"] == "error" and row["observed_generation"] < row["generation"]
        started = await installer.ensure(release, retry=retry)
        endpoint = api_endpoint(spec)
        steady = row["status"] == "ready" and row["observed_generation"] >= row["generation"]
        if not (steady and not started and endpoint is not None):
            state = await installer.status(release)
            if state.failed:
                assert state.message is not None
                await self._failed(ctx, row, state.message)
                raise PermanentError(state.message)
            if not state.ready:
                await self._progress(ctx, row, state)
                return self._stage(state.stage, self.poll_seconds)
        if endpoint is None:
            port = await https_node_port(kube, release)
            if port is None:
                await self._progress(ctx, row, InstallStatus("waiting_for_control_plane"))
                return self._stage("waiting_for_control_plane", self.poll_seconds)
            # Pinned in the values from now on: the next pass upgrades with it.
            await ctx.db.execute(
                ctx.db.q.vcluster_learn_node_port, spec.id, row["generation"], port
            )
            return self._stage("installing", 0)
        kubeconfig = await installer.read_kubeconfig(release)
        if kubeconfig is None:
            await self._progress(ctx, row, InstallStatus("reading_kubeconfig"))
            return self._stage("reading_kubeconfig", self.poll_seconds)
        try:
            kubeconfig = readdress_kubeconfig(kubeconfig, endpoint)
        except ValueError as exc:
            message = f"host cluster: {exc}"
            await self._set_message(ctx, row, message)
            raise TemporaryError(message) from None
        await self._ready(ctx, row, endpoint, kubeconfig)
        return self._stage("ready")

    async def _namespace(self, kube: Kube, spec: ClusterSpec) -> None:
        """Create the cluster's namespace, or check that an existing one is ours."""
        desired = {"metadata": {"name": spec.namespace, "labels": namespace_labels(spec)}}
        current = await kube.get(NAMESPACES, spec.namespace)
        if current is None:
            await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", **desired})
            return
        owner = (current["metadata"].get("labels") or {}).get(CLUSTER_LABEL)
        if owner != spec.id:
            if is_deleting(current):
                raise KubeError(f"namespace {spec.namespace} is still being deleted")
            raise InvalidClusterSpec(
                f"the host already has a namespace {spec.namespace!r} that KubeBYON does not "
                "manage for this cluster; choose another vcluster_name"
            )
        if not contains(current, desired):
            await kube.patch(NAMESPACES, spec.namespace, desired)

    async def _admission_webhooks(self, ctx: Context, kube: Kube, spec: ClusterSpec) -> None:
        if self._system_settings is None:  # cached: a resync must not read it per cluster
            self._system_settings = SystemSettingsStore(ctx.db)
        base_url = (await self._system_settings.get()).public_base_url or ""
        if not base_url.startswith("https://"):
            return
        key = self.secrets.derive_key(admission.KEY_PURPOSE)
        mutating, validating = admission.webhook_configurations(spec.id, base_url, key)
        await kube.ensure(MUTATING_WEBHOOKS, mutating)
        await kube.ensure(VALIDATING_WEBHOOKS, validating)

    # ------------------------------------------------------------------- delete

    async def _delete(self, ctx: Context, row: Row, kube: Kube, installer: Installer) -> Result:
        spec = ClusterSpec.from_mapping(row)
        for webhooks in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS):
            await kube.delete(webhooks, admission.webhook_name(spec.id))
        namespace = await kube.get(NAMESPACES, spec.namespace)
        ours = namespace is not None and (
            (namespace["metadata"].get("labels") or {}).get(CLUSTER_LABEL) == spec.id
        )
        if namespace is not None and ours:
            if not await installer.remove(Release(spec.vcluster_name, spec.namespace)):
                await self._set_message(ctx, row, None)
                return self._stage("uninstalling", self.poll_seconds)
            if not is_deleting(namespace):
                await kube.delete(NAMESPACES, spec.namespace)
            await self._set_message(ctx, row, None)
            return self._stage("removing_namespace", self.poll_seconds)
        # Gone (or never ours: a namespace someone else owns is left alone).
        await self._observe(
            ctx,
            row,
            status="deleted",
            kubeconfig_encrypted=None,
            last_error_message=None,
            audit_action="delete_succeeded",
            audit_message=f"Cluster {row['name']} was deleted",
        )
        return Result(forget=True)

    # ------------------------------------------------------------ observed state

    async def _set_message(self, ctx: Context, row: Row, message: str | None) -> None:
        message = message[:MAX_MESSAGE] if message else None
        if row["last_error_message"] != message:
            await ctx.db.execute(ctx.db.q.vcluster_set_message, row["id"], message)

    async def _progress(self, ctx: Context, row: Row, state: InstallStatus) -> None:
        """Installing: the kubeconfig is pending; a cluster that failed before is being
        tried again (it returns to what it was before the failure)."""
        status = row["status"]
        if status == "error":
            status = "ready" if row["kubeconfig_available"] else "provisioning"
        connection = row["connection_status"]
        if not row["kubeconfig_available"] and connection == "pending":
            connection = "kubeconfig_pending"
        await self._observe(
            ctx,
            row,
            status=status,
            connection_status=connection,
            observed_generation=row["observed_generation"],
            last_error_message=state.message,
        )

    async def _ready(self, ctx: Context, row: Row, endpoint: str, kubeconfig: str) -> None:
        stored = row["kubeconfig_encrypted"]
        changed = stored is None or self.secrets.decrypt(stored) != kubeconfig
        connection = row["connection_status"]
        if changed or connection == "kubeconfig_pending":
            connection = "pending"  # the connection reconciler checks the new kubeconfig
        first = not row["kubeconfig_available"]
        updated = row["observed_generation"] < row["generation"]
        action, message = None, None
        if first:
            action, message = "create_succeeded", f"Cluster {row['name']} is ready"
        elif updated:
            action = "settings_update_succeeded"
            message = f"Settings update of cluster {row['name']} applied"
        await self._observe(
            ctx,
            row,
            status="ready",
            connection_status=connection,
            endpoint=endpoint,
            kubeconfig_encrypted=self.secrets.encrypt(kubeconfig) if changed else stored,
            last_error_message=None,
            audit_action=action,
            audit_message=message,
            wake_connection=changed,
        )

    async def _failed(self, ctx: Context, row: Row, message: str) -> None:
        message = message[:MAX_MESSAGE]
        created = row["kubeconfig_available"]
        await self._observe(
            ctx,
            row,
            status="error",
            last_error_message=message,
            audit_action="settings_update_failed" if created else "create_failed",
            audit_message=(
                f"Cluster {row['name']} could not be "
                f"{'updated' if created else 'created'}: {message}"
            ),
            audit_result="failure",
        )

    async def _observe(
        self,
        ctx: Context,
        row: Row,
        *,
        status: str,
        connection_status: str = KEEP,
        endpoint: str = KEEP,
        kubeconfig_encrypted: str | None = KEEP,
        observed_generation: int | None = None,
        last_error_message: str | None,
        audit_action: str | None = None,
        audit_message: str | None = None,
        audit_result: str = "success",
        wake_connection: bool = False,
    ) -> None:
        """Write the observed state (only if it differs) with its audit event, in one
        transaction; nothing when an API write changed the desired state meanwhile.
        ``observed_generation`` None: the generation this pass worked from."""
        given = {
            "status": status,
            "connection_status": connection_status,
            "api_endpoint": endpoint,
            "kubeconfig_encrypted": kubeconfig_encrypted,
            "observed_generation": row["generation"]
            if observed_generation is None
            else observed_generation,
            "last_error_message": last_error_message,
        }
        new = {k: row[k] if v is KEEP else v for k, v in given.items()}
        if all(row[k] == v for k, v in new.items()):
            return
        async with ctx.db.transaction() as conn:
            written = await conn.fetchrow(
                ctx.db.q.vcluster_observe,
                row["id"],
                row["generation"],
                row["status"],
                *new.values(),
            )
            if not written or not written["updated"]:
                ctx.log.info("desired state changed meanwhile; looking again", cluster_id=row["id"])
                return
            if audit_action is not None:
                assert audit_message is not None
                user_id = await conn.fetchval(ctx.db.q.vcluster_requester, row["id"])
                await audit.record(
                    conn,
                    audit.Actor(user_id, "system", "system"),
                    resource_type="cluster",
                    action=audit_action,
                    message=audit_message,
                    resource_id=row["id"],
                    result=audit_result,
                    cluster_id=row["id"],
                    cluster_name=row["name"],
                )
            if wake_connection:
                await wake(conn, CONNECTION_RECONCILER, row["id"])
