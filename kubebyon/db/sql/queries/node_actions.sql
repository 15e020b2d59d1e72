-- Node actions (seed "Nodes": cordon, uncordon, drain, delete): the console routes
-- (api/routes/node_actions.py) write an operation and its job; the job handlers
-- (reconcilers/node_jobs.py) act on the host Node and mark the snapshot.

-- name: node_action_target
-- A node not deleted, with what authorization needs of its cluster.
SELECT n.id, n.name, n.cluster_id, c.owner_user_id, c.status AS cluster_status
FROM nodes n JOIN clusters c ON c.id = n.cluster_id
WHERE n.id = $1 AND n.status <> 'deleted' AND c.status <> 'deleted';

-- name: node_action_lock
SELECT id FROM nodes WHERE id = $1 AND status <> 'deleted' FOR UPDATE;

-- name: node_action_in_progress
-- An earlier action on the node whose job has not finished.
SELECT type FROM cluster_jobs
WHERE cluster_id = $1 AND status IN ('pending', 'running') AND type LIKE 'node\_%'
  AND payload ->> 'node_id' = $2
LIMIT 1;

-- name: node_job_target
SELECT n.id, n.name, n.status, n.cluster_id, c.name AS cluster_name
FROM nodes n JOIN clusters c ON c.id = n.cluster_id
WHERE n.id = $1;

-- name: node_job_elapsed_seconds
-- Since the job's first attempt started (a drain's deadline survives retries and restarts).
SELECT extract(epoch FROM now() - started_at)::float8 FROM cluster_jobs WHERE id = $1;

-- name: node_job_set_unschedulable
UPDATE nodes SET unschedulable = $2, updated_at = now()
WHERE id = $1 AND status <> 'deleted' AND unschedulable <> $2;

-- name: node_job_mark_deleted
-- The snapshot of a node removed from the host, and its 'deleted' event ($2 its id, $3 the
-- message); nothing when the snapshot was marked already.
WITH old AS (
    SELECT id, status FROM nodes WHERE id = $1 AND status <> 'deleted' FOR UPDATE
), marked AS (
    UPDATE nodes n SET status = 'deleted', deleted_at = now(), updated_at = now()
    FROM old
    WHERE n.id = old.id
    RETURNING n.id, n.cluster_id, n.name, old.status AS old_status
)
INSERT INTO node_events (id, cluster_id, node_id, node_name, type, old_status, new_status, message)
SELECT $2, cluster_id, id, name, 'deleted', old_status, 'deleted', $3 FROM marked
RETURNING id;
