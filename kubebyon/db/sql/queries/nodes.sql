-- Node health: the snapshot (seed §2.4) and events (§2.5) the node reconciler writes,
-- and what the console reads of them. Nodes and events of deleted clusters are never
-- shown; deleted nodes only through their events.

-- name: node_watch_position
SELECT resource_version FROM node_watch;

-- name: move_node_watch
-- Compare-and-set the watch position from $1 to $2 (either NULL: list first). No row back:
-- another process moved it, and this one no longer holds the watch. The row lock it takes
-- orders concurrent writers.
INSERT INTO node_watch (id, resource_version) VALUES (true, $2)
ON CONFLICT (id) DO UPDATE SET resource_version = $2, updated_at = now()
WHERE node_watch.resource_version IS NOT DISTINCT FROM $1::text
RETURNING id;

-- name: node_cluster
SELECT id, name, owner_user_id, status FROM clusters WHERE id = $1;

-- name: lock_live_node
SELECT * FROM nodes WHERE name = $1 AND status <> 'deleted' FOR UPDATE;

-- name: live_node_names
SELECT name FROM nodes WHERE status <> 'deleted';

-- name: stale_node_names
-- Nodes still counted as reporting whose last heartbeat is older than $1.
SELECT name FROM nodes
WHERE status NOT IN ('offline', 'deleted') AND last_seen_at < $1
ORDER BY last_seen_at;

-- name: insert_node
INSERT INTO nodes (
    id, cluster_id, name, join_token_id, status, host_uid, unschedulable, internal_ip,
    os_image, kubelet_version, container_runtime_version, cpu_allocatable_milli_cores,
    memory_allocatable_bytes, ephemeral_storage_allocatable_bytes, last_seen_at, ready_at,
    offline_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17);

-- name: update_node_snapshot
UPDATE nodes
SET status = $2, host_uid = $3, unschedulable = $4, internal_ip = $5, os_image = $6,
    kubelet_version = $7, container_runtime_version = $8, cpu_allocatable_milli_cores = $9,
    memory_allocatable_bytes = $10, ephemeral_storage_allocatable_bytes = $11,
    last_seen_at = $12, ready_at = $13, offline_at = $14, updated_at = now()
WHERE id = $1;

-- name: mark_node_deleted
UPDATE nodes SET status = 'deleted', deleted_at = $2, updated_at = now() WHERE id = $1;

-- name: insert_node_event
INSERT INTO node_events (
    id, cluster_id, node_id, node_name, type, old_status, new_status, message, observed_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: lock_join_token
SELECT id, cluster_id, status, created_by_user_id FROM join_tokens WHERE id = $1 FOR UPDATE;

-- name: mark_join_token_used
UPDATE join_tokens SET status = 'used', used_by_node_id = $2, used_at = $3
WHERE id = $1 AND status = 'active';

-- name: readable_cluster_candidates
-- Live clusters a caller may be able to read: owned by $1 or named in $2 (NULL: every
-- cluster, when a role names clusters by pattern). The authorization engine decides.
SELECT id, owner_user_id FROM clusters
WHERE status <> 'deleted'
  AND ($2::text[] IS NULL OR owner_user_id = $1 OR id = ANY ($2));

-- name: list_live_nodes
-- $1: the clusters the caller may read (NULL: every cluster); $2: only this cluster.
SELECT n.* FROM nodes n JOIN clusters c ON c.id = n.cluster_id
WHERE n.status <> 'deleted' AND c.status <> 'deleted'
  AND ($1::text[] IS NULL OR n.cluster_id = ANY ($1))
  AND ($2::text IS NULL OR n.cluster_id = $2)
ORDER BY n.cluster_id, n.name;

-- name: get_live_node
SELECT n.*, c.owner_user_id FROM nodes n JOIN clusters c ON c.id = n.cluster_id
WHERE n.id = $1 AND n.status <> 'deleted' AND c.status <> 'deleted';

-- name: list_node_events
-- $1: the clusters the caller may read (NULL: every cluster); filters $2-$4; limit $5.
SELECT e.* FROM node_events e JOIN clusters c ON c.id = e.cluster_id
WHERE c.status <> 'deleted'
  AND ($1::text[] IS NULL OR e.cluster_id = ANY ($1))
  AND ($2::text IS NULL OR e.cluster_id = $2)
  AND ($3::text IS NULL OR e.node_id = $3)
  AND ($4::text IS NULL OR e.type = $4)
ORDER BY e.observed_at DESC, e.id DESC
LIMIT $5;

-- name: overview_counts
-- Console overview, one statement whatever the size: (kind, status, count) of the live
-- clusters in $1, the nodes of the clusters in $2 and the active join tokens of the
-- clusters in $3 (each NULL: every cluster).
WITH live AS (SELECT id, status FROM clusters WHERE status <> 'deleted')
SELECT 'cluster' AS kind, status, count(*) AS count FROM live
WHERE $1::text[] IS NULL OR id = ANY ($1)
GROUP BY status
UNION ALL
SELECT 'node', n.status, count(*) FROM nodes n JOIN live ON live.id = n.cluster_id
WHERE n.status <> 'deleted' AND ($2::text[] IS NULL OR n.cluster_id = ANY ($2))
GROUP BY n.status
UNION ALL
SELECT 'token', 'active', count(*) FROM join_tokens t JOIN live ON live.id = t.cluster_id
WHERE t.status = 'active' AND t.expires_at > now()
  AND ($3::text[] IS NULL OR t.cluster_id = ANY ($3));
