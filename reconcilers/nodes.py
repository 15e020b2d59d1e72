"""nodes: node health from ONE watch of the host's Nodes, for every cluster at once
(seed §2.4, §2.5, §3.9).

One key, ``watch``, held under the runtime's lease: however many replicas run, one of
them watches. A reconcile is one watch session: list the Nodes labelled
``kubebyon.io/cluster-id`` when there is no position to resume from (first run, after
410 Gone), then watch from the position with bookmarks until the server ends the stream
(``watch_seconds``, so shutdown never waits long), then mark nodes offline whose last
heartbeat is older than the grace — only after a healthy session, so an unreachable host
never makes nodes look offline. The key is due again at once; host errors are retried by
the runtime with backoff.

The position (resourceVersion) lives in the database (``node_watch``), moved by
compare-and-set in the transaction of each observation: whichever replica holds the key
next resumes exactly where the last one stopped — an old event replayed onto newer state
would record transitions that did not happen — and a replica that lost its lease cannot
write. Each observation is level-based: the node's row is locked, the new snapshot
computed from it (``kubebyon/domain/nodes.py``) and written only if it differs, with the
§2.5 event of a status change in the same transaction, so a re-list never records a
transition twice.

A node's first sight is ``joined`` (audited ``node/joined``); its join-token label marks
that token ``used`` (audited ``token/used``) when the token is active and of the same
cluster, and wakes the ``join_tokens`` reconciler to remove the token's Secret. A node
whose label names a deleted or unknown cluster is logged and counted, never attached; a
row it had is closed as deleted. Audit events of the system name the user it acted for
(the token's creator, else the cluster's owner), as the vcluster reconciler does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubebyon import metrics
from kubebyon.adapters.kube import NODES, Kube, KubeError, WatchExpired
from kubebyon.db import audit
from kubebyon.db.database import Conn, Database
from kubebyon.db.desired_state import wake
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id
from kubebyon.domain.labels import CLUSTER_LABEL
from kubebyon.domain.nodes import (
    HostNode,
    NodeEvent,
    Snapshot,
    host_node,
    is_stale,
    next_snapshot,
    status_event,
)
from kubebyon.runtime.contract import Context, Result, TemporaryError

NAME = "nodes"
KEY = "watch"
JOIN_TOKENS = "join_tokens"
Row = Any  # an asyncpg Record


def _now() -> datetime:
    return datetime.now(UTC)


async def notify_node_offline(conn: Conn, *, cluster: Row, node_id: str, node_name: str) -> None:
    """Hook for the notifications issue, called in the transaction that marks a node
    offline: a notification written here (to the outbox) commits with the event. Nothing
    is sent yet."""


class NodesReconciler:
    name = NAME
    max_concurrency = 1

    def __init__(
        self,
        host: Kube | None,
        *,
        offline_grace: float,
        watch_seconds: int = 10,
        no_host_retry_seconds: float = 60.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.host = host
        self.grace = offline_grace
        self.watch_seconds = watch_seconds
        self.resync_interval = no_host_retry_seconds
        # A session ends when the server closes the stream; a re-list of many nodes
        # before it takes its time too.
        self.timeout = watch_seconds + 120.0
        self.clock = clock

    async def keys(self, db: Database) -> AsyncIterator[str]:
        yield KEY

    async def reconcile(self, key: str, ctx: Context) -> Result:
        if key != KEY:
            return Result(forget=True)
        if self.host is None:
            return Result(status={"host": "not configured"})
        position = await ctx.db.fetchval(Q.node_watch_position)
        try:
            if position is None:
                position = await self._list(ctx, self.host)
            position = await self._watch(ctx, self.host, position)
            await self._sweep(ctx)
        except KubeError as exc:
            raise TemporaryError(f"host cluster: {exc}") from None
        return Result(requeue_after=0, status={"resource_version": position})

    @asynccontextmanager
    async def _step(self, db: Database, old: str | None, new: str | None) -> AsyncIterator[Conn]:
        """A transaction that first moves the watch position from ``old`` to ``new``."""
        async with db.transaction() as conn:
            if await conn.fetchval(Q.move_node_watch, old, new) is None:
                raise TemporaryError("another process moved the node watch; not writing")
            yield conn

    async def _list(self, ctx: Context, host: Kube) -> str:
        """Absorb the current nodes; the position to watch from."""
        items, version = await host.list_at(NODES, label_selector=CLUSTER_LABEL)
        listed = set()
        for obj in items:
            node = host_node(obj)
            listed.add(node.name)
            async with self._step(ctx.db, None, None) as conn:
                await self._observe(ctx, conn, node)
        for row in await ctx.db.fetch(Q.live_node_names):
            if row["name"] not in listed:  # deleted while nobody watched
                async with self._step(ctx.db, None, None) as conn:
                    await self._gone(conn, row["name"], None)
        async with self._step(ctx.db, None, version):
            return version

    async def _watch(self, ctx: Context, host: Kube, position: str) -> str | None:
        """One session from ``position``; where it ended (None: expired, list again)."""
        stream = host.watch(
            NODES,
            resource_version=position,
            timeout_seconds=self.watch_seconds,
            label_selector=CLUSTER_LABEL,
        )
        try:
            async with aclosing(stream) as events:
                async for kind, obj in events:
                    # Bookmarks carry only this: how far the watch has come.
                    version = obj["metadata"].get("resourceVersion") or position
                    async with self._step(ctx.db, position, version) as conn:
                        if kind in ("ADDED", "MODIFIED"):
                            await self._observe(ctx, conn, host_node(obj))
                        elif kind == "DELETED":
                            node = host_node(obj)
                            await self._gone(conn, node.name, node.uid)
                    position = version
        except WatchExpired:
            ctx.log.info("node watch expired; listing the nodes again")
            async with self._step(ctx.db, position, None):
                return None
        return position

    async def _observe(self, ctx: Context, conn: Conn, node: HostNode) -> None:
        now = self.clock()
        current = await conn.fetchrow(Q.lock_live_node, node.name)
        cluster = None
        if node.cluster_id is not None:
            cluster = await conn.fetchrow(Q.node_cluster, node.cluster_id)
        attachable = cluster is not None and cluster["status"] != "deleted"
        if current is not None and (
            not attachable
            or current["cluster_id"] != node.cluster_id
            or current["host_uid"] not in (None, node.uid)
        ):
            # Relabelled, re-created under the same name, or its cluster is gone: the
            # machine this row described has left that cluster.
            await self._close(conn, current, now, "Node left the cluster")
            current = None
        if not attachable:
            reason = "unknown_cluster" if cluster is None else "deleted_cluster"
            metrics.NODES_UNATTACHED.labels(reason).inc()
            ctx.log.warning(
                "host node names a cluster that is not there; not attached",
                node=node.name,
                cluster_id=node.cluster_id,
                reason=reason,
            )
            return
        if current is None:
            await self._join(ctx, conn, node, cluster, now)
            return
        previous = Snapshot.of(current)
        snapshot = next_snapshot(previous, node, now, self.grace)
        if snapshot != previous:
            await self._write(conn, current["id"], previous, snapshot, cluster, node.name, now)

    async def _join(
        self, ctx: Context, conn: Conn, node: HostNode, cluster: Row, now: datetime
    ) -> None:
        node_id = new_id("node")
        token = None
        if node.join_token_id is not None:
            token = await conn.fetchrow(Q.lock_join_token, node.join_token_id)
            if token is None or token["cluster_id"] != cluster["id"]:
                ctx.log.warning(
                    "host node names a join token that is not its cluster's; ignored",
                    node=node.name,
                    cluster_id=cluster["id"],
                )
                token = None
        snapshot = next_snapshot(None, node, now, self.grace)
        await conn.execute(
            Q.insert_node,
            node_id,
            cluster["id"],
            node.name,
            token["id"] if token is not None else None,
            *astuple(snapshot),
        )
        joined = status_event(None, snapshot.status)
        assert joined is not None
        await self._event(conn, node_id, cluster["id"], node.name, joined, now)
        user_id = token["created_by_user_id"] if token is not None else None
        actor = audit.Actor(user_id or cluster["owner_user_id"], "system", "system")
        await audit.record(
            conn,
            actor,
            resource_type="node",
            action="joined",
            message=f"Node {node.name} joined cluster {cluster['name']}",
            resource_id=node_id,
            cluster_id=cluster["id"],
            cluster_name=cluster["name"],
            node_name=node.name,
        )
        if token is not None and token["status"] == "active":
            await conn.execute(Q.mark_join_token_used, token["id"], node_id, now)
            await audit.record(
                conn,
                actor,
                resource_type="token",
                action="used",
                message=f"Join token {token['id']} used by node {node.name}",
                resource_id=token["id"],
                cluster_id=cluster["id"],
                cluster_name=cluster["name"],
                node_name=node.name,
            )
            await wake(conn, JOIN_TOKENS, token["id"])  # its bootstrap Secret goes

    async def _write(
        self,
        conn: Conn,
        node_id: str,
        previous: Snapshot,
        snapshot: Snapshot,
        cluster: Row,
        name: str,
        now: datetime,
    ) -> None:
        """Write a changed snapshot, with the event (and audit) of a status change."""
        await conn.execute(Q.update_node_snapshot, node_id, *astuple(snapshot))
        event = status_event(
            previous.status, snapshot.status, last_seen_at=snapshot.last_seen_at, grace=self.grace
        )
        if event is None:
            return
        await self._event(conn, node_id, cluster["id"], name, event, now)
        if snapshot.status == "offline":
            await audit.record(
                conn,
                audit.Actor(cluster["owner_user_id"], "system", "system"),
                resource_type="node",
                action="offline",
                message=f"Node {name} of cluster {cluster['name']} went offline: {event.message}",
                resource_id=node_id,
                cluster_id=cluster["id"],
                cluster_name=cluster["name"],
                node_name=name,
            )
            await notify_node_offline(conn, cluster=cluster, node_id=node_id, node_name=name)

    async def _sweep(self, ctx: Context) -> None:
        """Nodes whose heartbeats stopped: no watch event says so, the clock does."""
        now = self.clock()
        for row in await ctx.db.fetch(Q.stale_node_names, now - timedelta(seconds=self.grace)):
            async with ctx.db.transaction() as conn:
                current = await conn.fetchrow(Q.lock_live_node, row["name"])
                if current is None or current["status"] == "offline":
                    continue
                previous = Snapshot.of(current)
                if not is_stale(previous.last_seen_at, now, self.grace):
                    continue  # a heartbeat came in meanwhile
                cluster = await conn.fetchrow(Q.node_cluster, current["cluster_id"])
                snapshot = replace(previous, status="offline", offline_at=now)
                await self._write(
                    conn, current["id"], previous, snapshot, cluster, current["name"], now
                )

    async def _gone(self, conn: Conn, name: str, uid: str | None) -> None:
        current = await conn.fetchrow(Q.lock_live_node, name)
        if current is None or (uid is not None and current["host_uid"] not in (None, uid)):
            return  # unknown, or a newer node of that name
        await self._close(conn, current, self.clock(), None)

    async def _close(self, conn: Conn, current: Row, now: datetime, message: str | None) -> None:
        """The row's node is gone: status deleted, with its event."""
        await conn.execute(Q.mark_node_deleted, current["id"], now)
        event = status_event(current["status"], "deleted")
        assert event is not None
        if message is not None:
            event = replace(event, message=message)
        await self._event(conn, current["id"], current["cluster_id"], current["name"], event, now)

    @staticmethod
    async def _event(
        conn: Conn, node_id: str, cluster_id: str, name: str, event: NodeEvent, now: datetime
    ) -> None:
        await conn.execute(
            Q.insert_node_event,
            new_id("nevt"),
            cluster_id,
            node_id,
            name,
            event.type,
            event.old_status,
            event.new_status,
            event.message,
            now,
        )
