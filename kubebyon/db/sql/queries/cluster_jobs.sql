-- Cluster operations (seed §2.6) and the jobs that carry them out (§2.6/§2.7).

-- name: insert_operation
INSERT INTO cluster_operations (id, cluster_id, type, requested_by_user_id)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: insert_job
-- Written in the caller's transaction; workers wake at commit.
WITH job AS (
    INSERT INTO cluster_jobs (id, cluster_id, operation_id, type, payload)
    VALUES ($1, $2, $3, $4, $5::jsonb)
    RETURNING *
), wake AS (
    SELECT pg_notify('kubebyon_wakeup', 'jobs')
)
SELECT job.*, (SELECT 1 FROM wake) AS woke FROM job;

-- name: claim_jobs
WITH due AS (
    SELECT id FROM cluster_jobs
    WHERE status = 'pending' AND due_at <= now()
    ORDER BY due_at, created_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE cluster_jobs j
    SET status = 'running',
        worker_id = $1,
        leased_until = now() + make_interval(secs => $3),
        attempt_count = j.attempt_count + 1,
        started_at = coalesce(j.started_at, now()),
        updated_at = now()
    FROM due
    WHERE j.id = due.id
    RETURNING j.*
), op AS (
    UPDATE cluster_operations o
    SET status = 'running', started_at = coalesce(o.started_at, now()), updated_at = now()
    FROM claimed
    WHERE o.id = claimed.operation_id AND o.status = 'pending'
)
SELECT * FROM claimed;

-- name: extend_job_leases
UPDATE cluster_jobs
SET leased_until = now() + make_interval(secs => $3), updated_at = now()
WHERE worker_id = $1 AND status = 'running' AND id = ANY($2::text[])
RETURNING id;

-- name: set_operation_stage
UPDATE cluster_operations SET stage = $2, updated_at = now() WHERE id = $1;

-- name: finish_job
-- $3 is 'succeeded' or 'failed'; only the current holder may finish a job.
WITH job AS (
    UPDATE cluster_jobs
    SET status = $3, last_error = coalesce($4, last_error), leased_until = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = $1 AND worker_id = $2 AND status = 'running'
    RETURNING operation_id
)
UPDATE cluster_operations o
SET status = $3, error_message = $4, finished_at = now(), updated_at = now(),
    stage = CASE WHEN $3 = 'succeeded' THEN 'done' ELSE o.stage END
FROM job
WHERE o.id = job.operation_id
RETURNING o.id;

-- name: retry_job
UPDATE cluster_jobs
SET status = 'pending', last_error = $3, leased_until = NULL,
    due_at = now() + make_interval(secs => $4), updated_at = now()
WHERE id = $1 AND worker_id = $2 AND status = 'running'
RETURNING id;

-- name: defer_job
-- NotYet: the work goes on elsewhere (a reconciler); look again after $3 seconds. The
-- attempt counted at claim is given back, so waiting never uses up the job's attempts.
UPDATE cluster_jobs
SET status = 'pending', leased_until = NULL, due_at = now() + make_interval(secs => $3),
    attempt_count = greatest(attempt_count - 1, 0), updated_at = now()
WHERE id = $1 AND worker_id = $2 AND status = 'running'
RETURNING id;

-- name: release_jobs
-- Graceful shutdown: give unfinished jobs back without spending an attempt.
UPDATE cluster_jobs
SET status = 'pending', leased_until = NULL, due_at = now(), updated_at = now(),
    attempt_count = greatest(attempt_count - 1, 0)
WHERE worker_id = $1 AND status = 'running'
RETURNING id;

-- name: requeue_expired_jobs
-- The job-lease reconciler: a running job whose lease expired belongs to a crashed worker.
-- Its attempt has been counted (at claim); it goes back to pending, or fails once it has
-- used its attempts. last_error is kept; when there is none the expiry is recorded.
WITH expired AS (
    SELECT id FROM cluster_jobs
    WHERE status = 'running' AND leased_until < now()
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE cluster_jobs j
    SET status = CASE WHEN j.attempt_count >= $1 THEN 'failed' ELSE 'pending' END,
        last_error = CASE
            WHEN j.attempt_count >= $1 THEN
                'gave up after ' || j.attempt_count || ' attempts; last: '
                || coalesce(j.last_error, 'lease of worker ' || coalesce(j.worker_id, '?') || ' expired')
            ELSE coalesce(j.last_error, 'lease of worker ' || coalesce(j.worker_id, '?') || ' expired')
        END,
        finished_at = CASE WHEN j.attempt_count >= $1 THEN now() END,
        leased_until = NULL,
        due_at = now(),
        updated_at = now()
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.status, j.operation_id, j.last_error
), failed_ops AS (
    UPDATE cluster_operations o
    SET status = 'failed', error_message = updated.last_error, finished_at = now(), updated_at = now()
    FROM updated
    WHERE o.id = updated.operation_id AND updated.status = 'failed'
)
SELECT id, status FROM updated;

-- name: job_counts
SELECT status, count(*)::bigint AS n FROM cluster_jobs GROUP BY status;

-- name: get_job
SELECT * FROM cluster_jobs WHERE id = $1;

-- name: list_cluster_jobs
SELECT * FROM cluster_jobs
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR cluster_id = $2)
ORDER BY created_at DESC, id DESC
LIMIT $3;

-- name: list_cluster_operations
SELECT * FROM cluster_operations WHERE cluster_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2;
