-- Clusters (seed §2.1): desired state written by the console API, observed state by the
-- vcluster, connection and control-plane-metrics reconcilers.

CREATE TABLE clusters (
    id                                     text PRIMARY KEY,
    owner_user_id                          text REFERENCES users (id),
    backend                                text NOT NULL DEFAULT 'vcluster'
                                           CHECK (backend IN ('vcluster', 'imported')),
    name                                   text NOT NULL,
    namespace                              text NOT NULL,
    vcluster_name                          text NOT NULL,
    control_plane_host                     text,
    kubernetes_version                     text NOT NULL,
    workload_cpu_limit_milli_cores         integer NOT NULL,
    workload_memory_limit_mib              integer NOT NULL,
    control_plane_cpu_request_milli_cores  integer NOT NULL,
    control_plane_memory_request_mib       integer NOT NULL,
    public_access_enabled                  boolean NOT NULL DEFAULT false,
    public_access_mode                     text NOT NULL DEFAULT 'nodeport'
                                           CHECK (public_access_mode IN ('nodeport', 'loadbalancer')),
    public_access_port                     integer,
    managed_workload_ingress_enabled       boolean NOT NULL DEFAULT false,
    managed_workload_ingress_status        text NOT NULL DEFAULT 'disabled'
        CHECK (managed_workload_ingress_status IN ('disabled', 'provisioning', 'ready', 'error')),
    managed_workload_ingress_class         text,
    managed_workload_ingress_last_error    text,
    managed_workload_ingress_dns_status    text NOT NULL DEFAULT 'not_managed'
        CHECK (managed_workload_ingress_dns_status IN ('not_managed', 'pending', 'synced', 'error')),
    managed_workload_ingress_dns_message   text,
    managed_workload_ingress_dns_last_synced_at timestamptz,
    managed_workload_ingress_dns_last_error     text,
    managed_workload_ingress_dns_last_error_at  timestamptz,
    api_endpoint                           text,
    status                                 text NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'ready', 'error', 'deleting', 'deleted')),
    connection_status                      text NOT NULL DEFAULT 'pending'
        CHECK (connection_status IN ('pending', 'kubeconfig_pending', 'reachable', 'unreachable', 'error')),
    kubeconfig_available                   boolean NOT NULL DEFAULT false,
    kubeconfig_available_at                timestamptz,
    kubeconfig_encrypted                   text,      -- the vCluster's own kubeconfig, re-addressed
    observed_kubernetes_version            text,
    last_observed_at                       timestamptz,
    last_error_message                     text,
    generation                             bigint NOT NULL DEFAULT 1,   -- bumped by every desired change
    observed_generation                    bigint NOT NULL DEFAULT 0,   -- what the host reflects
    created_at                             timestamptz NOT NULL DEFAULT now(),
    updated_at                             timestamptz NOT NULL DEFAULT now(),
    deleted_at                             timestamptz
);
-- vcluster_name (and so the host namespace) is unique among clusters not yet deleted.
CREATE UNIQUE INDEX clusters_vcluster_name_live ON clusters (vcluster_name) WHERE status <> 'deleted';
CREATE INDEX clusters_owner ON clusters (owner_user_id, created_at DESC, id DESC) WHERE status <> 'deleted';
CREATE INDEX clusters_live ON clusters (created_at DESC, id DESC) WHERE status <> 'deleted';

-- Control-plane samples (seed §3.x history endpoint): raw samples, downsampled with age.
CREATE TABLE control_plane_samples (
    cluster_id          text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    sampled_at          timestamptz NOT NULL,
    resolution_seconds  integer NOT NULL DEFAULT 0,  -- 0 raw; 300 / 3600 after downsampling
    cpu_millicores      double precision,
    memory_bytes        double precision,
    api_latency_ms      double precision,
    available           double precision,           -- 1.0 reachable, 0.0 not; averaged when downsampled
    PRIMARY KEY (cluster_id, resolution_seconds, sampled_at)
);
-- Downsampling and retention sweep every cluster's samples by age.
CREATE INDEX control_plane_samples_age ON control_plane_samples (sampled_at);
