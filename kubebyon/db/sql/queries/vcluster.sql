-- The vcluster reconciler and the cluster job handlers (reconcilers/vcluster.py,
-- reconcilers/cluster_jobs.py).

-- name: vcluster_cluster_ids
SELECT id FROM clusters WHERE backend = 'vcluster' AND status <> 'deleted';

-- name: vcluster_cluster
SELECT * FROM clusters WHERE id = $1;

-- name: vcluster_observe
-- Observed state, guarded by the desired state it was derived from (generation and
-- status): when an API write came in meanwhile nothing is written and the key runs again.
-- The cluster's pending jobs become due at once so that their operations finish promptly.
WITH updated AS (
    UPDATE clusters
    SET status = $4,
        connection_status = $5,
        api_endpoint = $6,
        kubeconfig_encrypted = $7::text,
        kubeconfig_available = $7::text IS NOT NULL,
        kubeconfig_available_at = CASE WHEN $7::text IS NULL THEN NULL
                                       ELSE coalesce(kubeconfig_available_at, now()) END,
        observed_generation = $8,
        last_error_message = $9,
        deleted_at = CASE WHEN $4 = 'deleted' THEN now() ELSE deleted_at END,
        updated_at = now()
    WHERE id = $1 AND generation = $2 AND status = $3
    RETURNING id
), nudged AS (
    UPDATE cluster_jobs
    SET due_at = now(), updated_at = now()
    WHERE cluster_id = $1 AND status = 'pending' AND due_at > now()
      AND EXISTS (SELECT 1 FROM updated)
    RETURNING id
)
SELECT (SELECT count(*) FROM updated) AS updated,
       (SELECT pg_notify('kubebyon_wakeup', 'jobs') FROM nudged LIMIT 1) IS NOT NULL AS nudged;

-- name: vcluster_set_message
-- Progress and host errors that change nothing else.
UPDATE clusters SET last_error_message = $2, updated_at = now()
WHERE id = $1 AND last_error_message IS DISTINCT FROM $2;

-- name: vcluster_learn_node_port
-- Public access over a NodePort that Kubernetes picked: remember it, so that the values
-- pin it and the API endpoint is known.
UPDATE clusters SET public_access_port = $3, updated_at = now()
WHERE id = $1 AND generation = $2 AND public_access_port IS NULL;

-- name: vcluster_requester
-- Whose activity feed an outcome belongs to: the user behind the newest open operation,
-- else the owner.
SELECT coalesce(
    (SELECT requested_by_user_id FROM cluster_operations
     WHERE cluster_id = $1 AND status IN ('pending', 'running') AND requested_by_user_id IS NOT NULL
     ORDER BY created_at DESC, id DESC LIMIT 1),
    (SELECT owner_user_id FROM clusters WHERE id = $1)
) AS user_id;

-- name: cluster_job_progress
-- What a cluster job handler needs in one read: the cluster, its operation's stage and the
-- vcluster reconciler's last reported stage.
SELECT c.status, c.generation, c.observed_generation, c.last_error_message,
       o.stage AS operation_stage, q.last_status
FROM clusters c
LEFT JOIN cluster_operations o ON o.id = $2
LEFT JOIN reconcile_queue q ON q.reconciler = 'vcluster' AND q.key = c.id
WHERE c.id = $1;
