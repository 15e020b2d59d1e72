-- Join tokens (seed §2.3, §3.6, §3.8): issued and revoked by the console API, served as
-- join scripts, converged on the host by the join_tokens reconciler. Only value_hash is
-- ever compared with what a user presents. An active token past expires_at reads as
-- expired at once, before the reconciler has marked it.

-- name: insert_join_token
-- ON CONFLICT: a bootstrap id drawn twice (1 in 2 billion); the caller draws again.
INSERT INTO join_tokens (
    id, cluster_id, value_hash, display_prefix, bootstrap_token_id, bootstrap_secret_name,
    created_by_user_id, expires_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
ON CONFLICT DO NOTHING
RETURNING *;

-- name: get_join_token
-- With the owner of its cluster, for authorization. Tokens of deleted clusters are gone.
SELECT t.id, t.cluster_id, t.display_prefix,
       CASE WHEN t.status = 'active' AND t.expires_at <= now() THEN 'expired'
            ELSE t.status END AS status,
       t.created_by_user_id, t.used_by_node_id, t.bootstrap_secret_name, t.expires_at,
       t.created_at, t.used_at, t.revoked_at, t.revoked_by_user_id,
       c.owner_user_id, c.name AS cluster_name
FROM join_tokens t
JOIN clusters c ON c.id = t.cluster_id
WHERE t.id = $1 AND c.status <> 'deleted';

-- name: revoke_join_token
-- Only a token that still works is revoked; anything else is answered as it stands.
UPDATE join_tokens
SET status = 'revoked', revoked_at = now(), revoked_by_user_id = $2
WHERE id = $1 AND status = 'active' AND expires_at > now()
RETURNING id;

-- name: join_token_for_script
-- usable: the token may join a machine now; ready: its host Secret is in place.
SELECT t.id, t.cluster_id, t.bootstrap_token_id, t.expires_at, t.host_ca_hash, t.k3s_version,
       t.status = 'active' AND t.expires_at > now()
           AND c.status NOT IN ('deleting', 'deleted') AS usable,
       t.secret_created_at IS NOT NULL AND t.secret_removed_at IS NULL
           AND t.host_ca_hash IS NOT NULL AND t.k3s_version IS NOT NULL AS ready
FROM join_tokens t
JOIN clusters c ON c.id = t.cluster_id
WHERE t.value_hash = $1;

-- name: join_token_keys
-- Tokens whose host Secret may need creating or removing.
SELECT id FROM join_tokens WHERE status = 'active' OR secret_removed_at IS NULL;

-- name: join_token_for_reconcile
SELECT t.id, t.cluster_id, t.status, t.bootstrap_token_id, t.bootstrap_secret_name,
       t.expires_at, t.secret_created_at, t.secret_removed_at, t.host_ca_hash, t.k3s_version,
       EXTRACT(EPOCH FROM t.expires_at - now())::float8 AS seconds_left,
       c.status AS cluster_status
FROM join_tokens t
JOIN clusters c ON c.id = t.cluster_id
WHERE t.id = $1;

-- name: expire_join_token
UPDATE join_tokens SET status = 'expired'
WHERE id = $1 AND status = 'active' AND expires_at <= now()
RETURNING id;

-- name: record_join_token_secret
-- The host Secret exists, made with this CA hash and for this k3s version. No write when
-- nothing changed.
UPDATE join_tokens
SET secret_created_at = coalesce(secret_created_at, now()),
    secret_removed_at = NULL,
    host_ca_hash = $2,
    k3s_version = $3
WHERE id = $1
  AND (secret_created_at IS NULL OR secret_removed_at IS NOT NULL
       OR host_ca_hash IS DISTINCT FROM $2 OR k3s_version IS DISTINCT FROM $3);

-- name: record_join_token_secret_removed
UPDATE join_tokens SET secret_removed_at = now()
WHERE id = $1 AND secret_removed_at IS NULL;
