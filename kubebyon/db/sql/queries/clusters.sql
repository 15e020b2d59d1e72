-- Clusters as the console API reads and writes them (seed §2.1, §3.1-§3.5). Listings
-- name their columns so that kubeconfig_encrypted never travels with a list.

-- name: insert_cluster
INSERT INTO clusters (
    id, owner_user_id, name, namespace, vcluster_name, control_plane_host, kubernetes_version,
    workload_cpu_limit_milli_cores, workload_memory_limit_mib,
    control_plane_cpu_request_milli_cores, control_plane_memory_request_mib,
    public_access_enabled, public_access_mode, managed_workload_ingress_enabled,
    managed_workload_ingress_status
)
VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
    CASE WHEN $14 THEN 'provisioning' ELSE 'disabled' END
)
RETURNING *;

-- name: get_live_cluster
SELECT * FROM clusters WHERE id = $1 AND status <> 'deleted';

-- name: lock_live_cluster
SELECT * FROM clusters WHERE id = $1 AND status <> 'deleted' FOR UPDATE;

-- name: update_cluster_spec
-- Seed §3.2: written to the snapshot at once; the reconcilers converge the host later.
-- Enabling managed ingress shows 'provisioning' until its reconciler reports.
UPDATE clusters
SET workload_cpu_limit_milli_cores = $2,
    workload_memory_limit_mib = $3,
    control_plane_cpu_request_milli_cores = $4,
    control_plane_memory_request_mib = $5,
    public_access_enabled = $6,
    public_access_mode = $7,
    control_plane_host = $8,
    managed_workload_ingress_enabled = $9,
    managed_workload_ingress_status = CASE
        WHEN NOT $9 THEN 'disabled'
        WHEN NOT managed_workload_ingress_enabled THEN 'provisioning'
        ELSE managed_workload_ingress_status
    END,
    managed_workload_ingress_last_error = CASE
        WHEN $9 THEN managed_workload_ingress_last_error
    END,
    generation = generation + 1,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: mark_cluster_deleting
UPDATE clusters
SET status = 'deleting', generation = generation + 1, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: lock_clusters_to_delete_of_owner
-- Account deletion: the owner's clusters not yet on their way out. Imported clusters stay:
-- they are the bk-bcs registry's, and nothing of KubeBYON's would ever finish deleting them.
SELECT * FROM clusters
WHERE owner_user_id = $1 AND backend = 'vcluster' AND status NOT IN ('deleting', 'deleted')
ORDER BY created_at, id
FOR UPDATE;

-- name: list_live_clusters
-- Platform admins: every cluster not deleted, newest first.
SELECT id, owner_user_id, backend, name, namespace, vcluster_name, control_plane_host,
       kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib,
       control_plane_cpu_request_milli_cores, control_plane_memory_request_mib,
       public_access_enabled, public_access_mode, public_access_port,
       managed_workload_ingress_enabled, managed_workload_ingress_status,
       managed_workload_ingress_class, managed_workload_ingress_last_error,
       managed_workload_ingress_dns_status, managed_workload_ingress_dns_message,
       managed_workload_ingress_dns_last_synced_at, managed_workload_ingress_dns_last_error,
       managed_workload_ingress_dns_last_error_at, api_endpoint, status, connection_status,
       kubeconfig_available, kubeconfig_available_at, last_observed_at, last_error_message,
       created_at, updated_at, deleted_at
FROM clusters
WHERE status <> 'deleted'
ORDER BY created_at DESC, id DESC;

-- name: list_live_clusters_of
-- Clusters owned by $1, plus the ids in $2 (named by the caller's authorization roles).
SELECT id, owner_user_id, backend, name, namespace, vcluster_name, control_plane_host,
       kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib,
       control_plane_cpu_request_milli_cores, control_plane_memory_request_mib,
       public_access_enabled, public_access_mode, public_access_port,
       managed_workload_ingress_enabled, managed_workload_ingress_status,
       managed_workload_ingress_class, managed_workload_ingress_last_error,
       managed_workload_ingress_dns_status, managed_workload_ingress_dns_message,
       managed_workload_ingress_dns_last_synced_at, managed_workload_ingress_dns_last_error,
       managed_workload_ingress_dns_last_error_at, api_endpoint, status, connection_status,
       kubeconfig_available, kubeconfig_available_at, last_observed_at, last_error_message,
       created_at, updated_at, deleted_at
FROM clusters
WHERE status <> 'deleted' AND (owner_user_id = $1 OR id = ANY($2::text[]))
ORDER BY created_at DESC, id DESC;

-- name: control_plane_history_raw
-- Raw samples (resolution 0) of the last $2 seconds, oldest first.
SELECT sampled_at AS at, cpu_millicores, memory_bytes, api_latency_ms, available AS availability
FROM control_plane_samples
WHERE cluster_id = $1 AND resolution_seconds = 0
  AND sampled_at >= now() - make_interval(secs => $2)
ORDER BY sampled_at;

-- name: control_plane_history_binned
-- Buckets of $3 seconds over the last $2 seconds, oldest first, aligned as the metrics
-- reconciler's rollups align them. A bucket averages the rows in it: rows rolled up to $3
-- seconds, and finer rows where the rollup has not reached yet (it deletes what it rolls
-- up, so rows never cover the same time twice).
SELECT date_bin(make_interval(secs => $3), sampled_at,
                TIMESTAMPTZ '2000-01-01 00:00:00+00') AS at,
       avg(cpu_millicores) AS cpu_millicores,
       avg(memory_bytes) AS memory_bytes,
       avg(api_latency_ms) AS api_latency_ms,
       avg(available) AS availability
FROM control_plane_samples
WHERE cluster_id = $1 AND resolution_seconds <= $3
  AND sampled_at >= now() - make_interval(secs => $2)
GROUP BY 1
ORDER BY 1;
