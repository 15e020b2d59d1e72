"""Job handlers for node actions: ``node_cordon``, ``node_uncordon``, ``node_drain`` and
``node_delete`` (api/routes/node_actions.py writes them; payload ``node_id``, ``force``
and the requesting ``actor``).

They act on the **host** Node (reference §7: a user's machine is a host node labelled for
its cluster):

- cordon / uncordon: ``spec.unschedulable`` on the host Node, mirrored into the snapshot.
- drain: cordon, then evict every pod on the node through the Eviction API, which honours
  PodDisruptionBudgets; DaemonSet pods (their controller would put them back) and mirror
  pods (static pods the kubelet owns) stay. Refused evictions are asked again with
  backoff; the operation's stage shows ``evicting N/M``. When the drain timeout (from the
  job's first start, so retries and restarts do not extend it) passes first, the job fails
  naming the pods still there, and the node stays cordoned.
- delete: drain (unless ``force``), delete the host Node, then mark the snapshot
  ``deleted`` with its ``deleted`` node event.

Each success is audited (``node/cordoned``, ``node/uncordoned``, ``node/drained``,
``node/deleted``) for the user who asked; a drain that times out is audited as a failure.
Host errors worth retrying retry the job; others fail it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubebyon.adapters.kube import JSON, NODES, PODS, Kube, KubeError
from kubebyon.db import audit
from kubebyon.db.database import Conn
from kubebyon.domain.ids import new_id
from kubebyon.runtime.contract import PermanentError, TemporaryError
from kubebyon.runtime.jobs import JobContext, JobHandler

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
MAX_NAMED_PODS = 20  # in a failed drain's message
NO_HOST = "no host cluster is configured (set KUBEBYON_KUBECONFIG_PATH)"
Target = Any  # an asyncpg Record of node_job_target
Action = Callable[[JobContext, Kube, Target], Awaitable[None]]


def evictable(pod: JSON) -> bool:
    """What a drain evicts: not DaemonSet pods, not mirror pods."""
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    owners = meta.get("ownerReferences") or []
    return not any(owner.get("kind") == "DaemonSet" for owner in owners)


def _pod_key(pod: JSON) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


class NodeActions:
    def __init__(self, host: Kube | None, *, drain_timeout: float, retry_seconds: float) -> None:
        self.host = host
        self.drain_timeout = drain_timeout
        self.retry_seconds = retry_seconds

    def handlers(self) -> Mapping[str, JobHandler]:
        actions: dict[str, Action] = {
            "node_cordon": self._cordon,
            "node_uncordon": self._uncordon,
            "node_drain": self._drain_node,
            "node_delete": self._delete,
        }
        return {job_type: self._on_host(action) for job_type, action in actions.items()}

    def _on_host(self, action: Action) -> JobHandler:
        async def handle(ctx: JobContext) -> None:
            if self.host is None:
                raise PermanentError(NO_HOST)
            target = await ctx.db.fetchrow(ctx.db.q.node_job_target, ctx.payload.get("node_id"))
            if target is None:
                raise PermanentError(f"node {ctx.payload.get('node_id')} does not exist")
            try:
                await action(ctx, self.host, target)
            except KubeError as exc:
                error = TemporaryError if exc.retryable else PermanentError
                raise error(f"host cluster: {exc}") from None

        return handle

    # ------------------------------------------------------------------ actions

    async def _cordon(self, ctx: JobContext, kube: Kube, node: Target) -> None:
        await self._set_unschedulable(ctx, kube, node, True)
        await self._audit(ctx, node, "cordoned", f"Node {node['name']} was cordoned")

    async def _uncordon(self, ctx: JobContext, kube: Kube, node: Target) -> None:
        await self._set_unschedulable(ctx, kube, node, False)
        await self._audit(ctx, node, "uncordoned", f"Node {node['name']} was uncordoned")

    async def _drain_node(self, ctx: JobContext, kube: Kube, node: Target) -> None:
        await self._set_unschedulable(ctx, kube, node, True)
        await self._drain(ctx, kube, node, "drained")
        await self._audit(ctx, node, "drained", f"Node {node['name']} was drained")

    async def _delete(self, ctx: JobContext, kube: Kube, node: Target) -> None:
        if node["status"] == "deleted":
            return  # deleted meanwhile (another delete, or the node left the host)
        drain = not ctx.payload.get("force") and await kube.get(NODES, node["name"]) is not None
        if drain:
            await self._set_unschedulable(ctx, kube, node, True)
            await self._drain(ctx, kube, node, "deleted")
        await ctx.set_stage("deleting")
        await kube.delete(NODES, node["name"])
        how = " after draining it" if drain else ""
        message = f"Node {node['name']} was deleted from the cluster{how}"
        async with ctx.db.transaction() as conn:
            await conn.fetchval(ctx.db.q.node_job_mark_deleted, node["id"], new_id("nevt"), message)
            await self._audit(ctx, node, "deleted", message, conn=conn)

    # ------------------------------------------------------------------ helpers

    async def _set_unschedulable(
        self, ctx: JobContext, kube: Kube, node: Target, unschedulable: bool
    ) -> None:
        if node["status"] == "deleted":
            raise PermanentError(f"node {node['name']} was deleted")
        await ctx.set_stage("cordoning" if unschedulable else "uncordoning")
        try:
            await kube.patch(NODES, node["name"], {"spec": {"unschedulable": unschedulable}})
        except KubeError as exc:
            if exc.status == 404:
                raise PermanentError(f"node {node['name']} is no longer on the host") from None
            raise
        await ctx.db.execute(ctx.db.q.node_job_set_unschedulable, node["id"], unschedulable)

    async def _drain(self, ctx: JobContext, kube: Kube, node: Target, action: str) -> None:
        """Evict the node's pods until none is left, or fail at the deadline."""
        elapsed = await ctx.db.fetchval(ctx.db.q.node_job_elapsed_seconds, ctx.job["id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout - (elapsed or 0.0)
        seen: set[str] = set()  # every evictable pod met on the node
        evicted: set[str] = set()  # evictions accepted
        stage = None
        delay = self.retry_seconds
        while True:
            pods = await kube.list(PODS, field_selector=f"spec.nodeName={node['name']}")
            present = {_pod_key(p): p for p in pods if evictable(p)}
            seen |= present.keys()
            refused: dict[str, str] = {}
            for key, pod in present.items():
                if key in evicted or pod["metadata"].get("deletionTimestamp"):
                    continue
                meta = pod["metadata"]
                reason = await kube.evict(meta["name"], meta["namespace"])
                if reason is None:
                    evicted.add(key)
                else:
                    refused[key] = reason
            done = len(evicted | (seen - present.keys()))
            if f"evicting {done}/{len(seen)}" != stage:
                stage = f"evicting {done}/{len(seen)}"
                await ctx.set_stage(stage)
            if not present:
                return
            if loop.time() >= deadline:
                await self._timed_out(ctx, node, action, present, refused)
            await asyncio.sleep(max(min(delay, deadline - loop.time()), 0.0))
            delay = min(delay * 2, self.retry_seconds * 8)

    async def _timed_out(
        self,
        ctx: JobContext,
        node: Target,
        action: str,
        present: Mapping[str, JSON],
        refused: Mapping[str, str],
    ) -> None:
        blocking = [
            f"{key} ({refused.get(key, 'still terminating')})"
            for key in sorted(present)[:MAX_NAMED_PODS]
        ]
        if len(present) > MAX_NAMED_PODS:
            blocking.append(f"and {len(present) - MAX_NAMED_PODS} more")
        message = (
            f"draining node {node['name']} timed out after {self.drain_timeout:g}s; "
            f"the node stays cordoned. Pods still on it: {', '.join(blocking)}"
        )
        verb = "drained" if action == "drained" else "deleted"
        await self._audit(
            ctx, node, action, f"Node {node['name']} could not be {verb}: {message}", ok=False
        )
        raise PermanentError(message)

    async def _audit(
        self,
        ctx: JobContext,
        node: Target,
        action: str,
        message: str,
        *,
        ok: bool = True,
        conn: Conn | None = None,
    ) -> None:
        asked = ctx.payload.get("actor") or {}  # who asked for it (the route's audit.Actor)
        actor = audit.Actor(
            asked.get("user_id"),
            asked.get("type", "system"),
            asked.get("method", "system"),
            asked.get("ip"),
        )
        event = {
            "resource_type": "node",
            "action": action,
            "message": message,
            "resource_id": node["id"],
            "result": "success" if ok else "failure",
            "cluster_id": node["cluster_id"],
            "cluster_name": node["cluster_name"],
            "node_name": node["name"],
        }
        if conn is not None:
            await audit.record(conn, actor, **event)
            return
        async with ctx.db.transaction() as own:
            await audit.record(own, actor, **event)


def node_job_handlers(
    host: Kube | None, *, drain_timeout: float, retry_seconds: float
) -> Mapping[str, JobHandler]:
    return NodeActions(host, drain_timeout=drain_timeout, retry_seconds=retry_seconds).handlers()
