-- Bring your own nodes: join tokens (seed §2.3 token fields), the node snapshot (§2.4) and
-- node events (§2.5).

CREATE TABLE join_tokens (
    id                    text PRIMARY KEY,                  -- tok_…
    cluster_id            text NOT NULL REFERENCES clusters (id),
    value_hash            bytea NOT NULL UNIQUE,             -- the value is shown once, never stored
    display_prefix        text NOT NULL,
    bootstrap_token_id    text NOT NULL UNIQUE,              -- the [a-z0-9]{6} half of the bootstrap token
    bootstrap_secret_name text NOT NULL,                     -- bootstrap-token-<bootstrap_token_id>
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'used', 'expired', 'revoked')),
    created_by_user_id    text REFERENCES users (id),
    used_by_node_id       text,
    expires_at            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    used_at               timestamptz,
    revoked_at            timestamptz,
    revoked_by_user_id    text REFERENCES users (id),
    secret_created_at     timestamptz,                       -- observed: the host Secret exists
    secret_removed_at     timestamptz,                       -- observed: the host Secret is gone
    -- Observed with the Secret, for the join script: the K10 hash of the host's server CA
    -- and the k3s version agents install (KUBEBYON_K3S_VERSION, else the host's own).
    host_ca_hash          text,
    k3s_version           text
);
CREATE INDEX join_tokens_cluster ON join_tokens (cluster_id, created_at DESC);
CREATE INDEX join_tokens_active ON join_tokens (expires_at) WHERE status = 'active';

CREATE TABLE nodes (
    id                                  text PRIMARY KEY,    -- node_…
    cluster_id                          text NOT NULL REFERENCES clusters (id),
    name                                text NOT NULL,
    host_uid                            text,                -- metadata.uid of the host Node
    join_token_id                       text REFERENCES join_tokens (id),
    status                              text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'ready', 'not_ready', 'unknown', 'offline', 'deleted')),
    unschedulable                       boolean NOT NULL DEFAULT false,
    internal_ip                         text,
    os_image                            text,
    kubelet_version                     text,
    container_runtime_version           text,
    cpu_allocatable_milli_cores         bigint,
    memory_allocatable_bytes            bigint,
    ephemeral_storage_allocatable_bytes bigint,
    source                              text NOT NULL DEFAULT 'host',
    last_seen_at                        timestamptz,
    ready_at                            timestamptz,
    offline_at                          timestamptz,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    deleted_at                          timestamptz
);
-- One live snapshot per host node name (host node names are unique on the host).
CREATE UNIQUE INDEX nodes_name_live ON nodes (name) WHERE status <> 'deleted';
CREATE INDEX nodes_cluster ON nodes (cluster_id, name) WHERE status <> 'deleted';

CREATE TABLE node_events (
    id          text PRIMARY KEY,                            -- nevt_…
    cluster_id  text NOT NULL REFERENCES clusters (id),
    node_id     text NOT NULL REFERENCES nodes (id),
    node_name   text NOT NULL,
    type        text NOT NULL,                               -- joined, ready, not_ready, pending, offline, deleted, …
    old_status  text,
    new_status  text,
    message     text NOT NULL DEFAULT '',
    observed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_events_time ON node_events (observed_at DESC, id DESC);
CREATE INDEX node_events_cluster ON node_events (cluster_id, observed_at DESC, id DESC);
CREATE INDEX node_events_node ON node_events (node_id, observed_at DESC, id DESC);

-- Where the node reconciler's watch of the host's Nodes stands (one row). Each observation
-- commits with the resourceVersion it came from, compare-and-set: whichever process holds
-- the watch next resumes exactly there, and a process that lost the watch cannot write.
-- NULL: list the nodes first (no position yet, or 410 Gone).
CREATE TABLE node_watch (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    resource_version text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
