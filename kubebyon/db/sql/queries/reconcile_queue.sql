-- The reconcile queue: one row per (reconciler, key). Every lease is measured with now().

-- name: enqueue_key
-- Desired state changed: bump the generation, make the key due now, and wake the
-- reconciler's loops on every process (NOTIFY is delivered at commit).
WITH upsert AS (
    INSERT INTO reconcile_queue AS q (reconciler, key)
    VALUES ($1, $2)
    ON CONFLICT (reconciler, key) DO UPDATE
        SET generation = q.generation + 1,
            due_at = least(q.due_at, now()),
            attempts = 0,
            enqueued_at = now()
)
SELECT pg_notify('kubebyon_wakeup', $1);

-- name: sync_keys
-- Resync safety net: make sure every key that should exist has a row (due now when new).
-- Rows are never deleted here (a listing races with writes); a reconcile that finds its
-- object gone returns Result(forget=True) and the row goes through forget_key.
INSERT INTO reconcile_queue (reconciler, key)
SELECT $1, unnest($2::text[])
ON CONFLICT (reconciler, key) DO NOTHING;

-- name: forget_key
-- Only when nothing was enqueued since the claim (the generation did not move).
DELETE FROM reconcile_queue
WHERE reconciler = $1 AND key = $2 AND lease_owner = $3 AND generation = $4
RETURNING key;

-- name: claim_keys
-- Take due keys and keys whose lease expired (a crashed holder) in one statement.
WITH due AS (
    SELECT reconciler, key
    FROM reconcile_queue
    WHERE reconciler = $1
      AND ((lease_owner IS NULL AND due_at <= now()) OR lease_expires_at < now())
      AND (stopped_generation IS NULL OR stopped_generation <> generation)
    ORDER BY due_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE reconcile_queue q
SET lease_owner = $2,
    lease_expires_at = now() + make_interval(secs => $4)
FROM due
WHERE q.reconciler = due.reconciler AND q.key = due.key
RETURNING q.key, q.generation, q.attempts,
          extract(epoch FROM now() - q.due_at)::float8 AS lag_seconds;

-- name: extend_leases
-- Heartbeat: returns the keys still held; a missing key means the lease was lost.
UPDATE reconcile_queue
SET lease_expires_at = now() + make_interval(secs => $4)
WHERE reconciler = $1 AND lease_owner = $2 AND key = ANY($3::text[])
RETURNING key;

-- name: complete_success
-- A change that arrived while we worked (generation moved) makes the key due again now.
UPDATE reconcile_queue
SET lease_owner = NULL,
    lease_expires_at = NULL,
    attempts = 0,
    last_error = NULL,
    last_status = coalesce($6::jsonb, last_status),
    last_reconciled_at = now(),
    due_at = CASE WHEN generation <> $4 THEN now() ELSE now() + make_interval(secs => $5) END
WHERE reconciler = $1 AND key = $2 AND lease_owner = $3;

-- name: complete_retry
UPDATE reconcile_queue
SET lease_owner = NULL,
    lease_expires_at = NULL,
    attempts = attempts + 1,
    last_error = $6,
    last_error_at = now(),
    due_at = CASE WHEN generation <> $4 THEN now() ELSE now() + make_interval(secs => $5) END
WHERE reconciler = $1 AND key = $2 AND lease_owner = $3;

-- name: complete_permanent
-- Stop retrying until desired state changes (enqueue bumps the generation).
UPDATE reconcile_queue
SET lease_owner = NULL,
    lease_expires_at = NULL,
    attempts = attempts + 1,
    stopped_generation = $4,
    last_error = $5,
    last_error_at = now(),
    due_at = now()
WHERE reconciler = $1 AND key = $2 AND lease_owner = $3;

-- name: release_leases
-- Graceful shutdown: hand every key this process still holds back, due now.
UPDATE reconcile_queue
SET lease_owner = NULL, lease_expires_at = NULL, due_at = least(due_at, now())
WHERE reconciler = $1 AND lease_owner = $2
RETURNING key;

-- name: next_due_seconds
SELECT extract(epoch FROM min(t) - now())::float8 AS seconds
FROM (
    SELECT min(due_at) AS t FROM reconcile_queue
    WHERE reconciler = $1 AND lease_owner IS NULL
      AND (stopped_generation IS NULL OR stopped_generation <> generation)
    UNION ALL
    SELECT min(lease_expires_at) FROM reconcile_queue
    WHERE reconciler = $1 AND lease_owner IS NOT NULL
) AS candidates;

-- name: queue_stats
SELECT reconciler,
       count(*) FILTER (WHERE due_at <= now() AND lease_owner IS NULL
                        AND (stopped_generation IS NULL OR stopped_generation <> generation))
           AS due,
       count(*) FILTER (WHERE lease_owner IS NOT NULL) AS leased,
       count(*) FILTER (WHERE stopped_generation = generation) AS stopped,
       coalesce(extract(epoch FROM now() - min(due_at) FILTER (
           WHERE due_at <= now() AND lease_owner IS NULL
             AND (stopped_generation IS NULL OR stopped_generation <> generation))), 0)::float8
           AS oldest_due_seconds
FROM reconcile_queue
GROUP BY reconciler;

-- name: get_queue_row
SELECT * FROM reconcile_queue WHERE reconciler = $1 AND key = $2;
