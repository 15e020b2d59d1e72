-- Foundation: accounts (the first admin), the reconcile queue, cluster operations and jobs.

CREATE TABLE users (
    id            text PRIMARY KEY,
    email         text NOT NULL,
    password_hash text,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'banned', 'deleted')),
    display_name  text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- One live account per address, compared case-insensitively.
CREATE UNIQUE INDEX users_email_live ON users (lower(email)) WHERE status <> 'deleted';

-- One row per (reconciler, key): when it is due, who holds it and until when.
-- Leases are compared with the database's now(), never a local clock.
CREATE TABLE reconcile_queue (
    reconciler         text NOT NULL,
    key                text NOT NULL,
    due_at             timestamptz NOT NULL DEFAULT now(),
    generation         bigint NOT NULL DEFAULT 1,      -- bumped on every desired-state change
    attempts           integer NOT NULL DEFAULT 0,     -- consecutive failures, drives backoff
    lease_owner        text,
    lease_expires_at   timestamptz,
    stopped_generation bigint,                         -- PermanentError: stop until generation moves
    last_error         text,
    last_error_at      timestamptz,
    last_status        jsonb,
    last_reconciled_at timestamptz,
    enqueued_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reconciler, key),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX reconcile_queue_due ON reconcile_queue (reconciler, due_at) WHERE lease_owner IS NULL;
CREATE INDEX reconcile_queue_leased ON reconcile_queue (reconciler, lease_expires_at)
    WHERE lease_owner IS NOT NULL;

-- Seed §2.6: cluster lifecycle operations as users see them.
CREATE TABLE cluster_operations (
    id                   text PRIMARY KEY,
    cluster_id           text NOT NULL,
    type                 text NOT NULL,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    stage                text NOT NULL DEFAULT 'queued',
    requested_by_user_id text,
    error_message        text,
    started_at           timestamptz,
    finished_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_operations_cluster ON cluster_operations (cluster_id, created_at DESC, id DESC);

-- Seed §2.6/§2.7: the asynchronous jobs behind operations. Replaces the seed's RabbitMQ:
-- workers claim rows with FOR UPDATE SKIP LOCKED and hold a lease (leased_until).
CREATE TABLE cluster_jobs (
    id            text PRIMARY KEY,
    cluster_id    text NOT NULL,
    operation_id  text REFERENCES cluster_operations (id),
    type          text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    due_at        timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    published_at  timestamptz NOT NULL DEFAULT now(),
    leased_until  timestamptz,
    worker_id     text,
    last_error    text,
    started_at    timestamptz,
    finished_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_jobs_pending ON cluster_jobs (due_at) WHERE status = 'pending';
CREATE INDEX cluster_jobs_running ON cluster_jobs (leased_until) WHERE status = 'running';
CREATE INDEX cluster_jobs_listing ON cluster_jobs (created_at DESC, id DESC);
CREATE INDEX cluster_jobs_cluster ON cluster_jobs (cluster_id, created_at DESC, id DESC);
