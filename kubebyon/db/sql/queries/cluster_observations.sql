-- What the connection and control-plane-metrics reconcilers observe of ready clusters.

-- name: observable_cluster_ids
SELECT id FROM clusters WHERE status = 'ready' ORDER BY id;

-- name: cluster_for_observation
SELECT id, status, connection_status, namespace, vcluster_name, kubeconfig_encrypted
FROM clusters
WHERE id = $1;

-- name: record_cluster_connection
-- Observed state only: desired state (generation, updated_at) is not touched. A cluster
-- that left 'ready' meanwhile (deletion started) keeps what its new status implies.
UPDATE clusters
SET connection_status = $2,
    observed_kubernetes_version = coalesce($3, observed_kubernetes_version),
    last_observed_at = now()
WHERE id = $1 AND status = 'ready';

-- name: insert_control_plane_sample
INSERT INTO control_plane_samples (cluster_id, sampled_at, resolution_seconds, cpu_millicores,
                                   memory_bytes, api_latency_ms, available)
VALUES ($1, $2, 0, $3, $4, $5, $6)
ON CONFLICT (cluster_id, resolution_seconds, sampled_at) DO NOTHING;

-- name: rollup_control_plane_samples
-- Averages samples of resolution $2 into buckets of $3 seconds (aligned as the history
-- query aligns them) and deletes what it averaged. Only buckets that END before $1 are
-- taken, so each bucket is rolled up once, complete: samples are written at the time they
-- are taken, never into a bucket that old.
WITH moved AS (
    DELETE FROM control_plane_samples
    WHERE resolution_seconds = $2
      AND sampled_at < date_bin(make_interval(secs => $3::integer), $1::timestamptz,
                                TIMESTAMPTZ '2000-01-01 00:00:00+00')
    RETURNING cluster_id, sampled_at, cpu_millicores, memory_bytes, api_latency_ms, available
)
INSERT INTO control_plane_samples (cluster_id, sampled_at, resolution_seconds, cpu_millicores,
                                   memory_bytes, api_latency_ms, available)
SELECT cluster_id,
       date_bin(make_interval(secs => $3::integer), sampled_at,
                TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       $3::integer, avg(cpu_millicores), avg(memory_bytes), avg(api_latency_ms), avg(available)
FROM moved
GROUP BY 1, 2
ON CONFLICT (cluster_id, resolution_seconds, sampled_at) DO NOTHING;

-- name: expire_control_plane_samples
DELETE FROM control_plane_samples WHERE sampled_at < $1;
