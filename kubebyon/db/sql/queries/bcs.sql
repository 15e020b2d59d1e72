-- The bk-bcs user-manager dialect: users and their tokens (hashed for lookups, encrypted
-- because the API returns them again), registered clusters, register tokens, credentials,
-- and permissions stored as roles of the authorization engine (origin 'bcs').

-- name: bcs_caller_by_token
-- The bk-bcs user a usertoken belongs to, with the KubeBYON account it is linked to.
SELECT b.id, b.name, b.user_type, b.expires_at, b.user_id,
       u.email AS account_email, u.role AS account_role, u.status AS account_status
FROM bcs_users b
LEFT JOIN users u ON u.id = b.user_id
WHERE b.token_hash = $1;

-- name: bcs_insert_user
-- $1 name, $2 user_type, $3 token hash, $4 encrypted token, $5 expires_at, $6 now.
-- Linked at once to the live account whose e-mail is the name (case-insensitive).
INSERT INTO bcs_users (name, user_type, user_id, token_hash, token_encrypted, expires_at,
                       created_at, updated_at)
VALUES ($1, $2,
        (SELECT id FROM users WHERE lower(email) = lower($1) AND status <> 'deleted'),
        $3, $4, $5, $6, $6)
ON CONFLICT (name, user_type) DO NOTHING
RETURNING id, name, user_type, user_id, token_encrypted, created_at, updated_at, expires_at;

-- name: bcs_get_user
SELECT id, name, user_type, user_id, token_encrypted, created_at, updated_at, expires_at
FROM bcs_users
WHERE name = $1 AND user_type = $2;

-- name: bcs_lock_user
SELECT id, expires_at FROM bcs_users WHERE name = $1 AND user_type = $2 FOR UPDATE;

-- name: bcs_refresh_user
-- $2/$3: the new token's hash and ciphertext, or NULL to keep the token.
UPDATE bcs_users
SET token_hash = coalesce($2, token_hash),
    token_encrypted = coalesce($3, token_encrypted),
    expires_at = $4,
    updated_at = $5
WHERE id = $1
RETURNING id, name, user_type, user_id, token_encrypted, created_at, updated_at, expires_at;

-- name: bcs_link_users
-- Links bk-bcs users named like an account created after them; returns the linked ids.
UPDATE bcs_users b
SET user_id = u.id
FROM users u
WHERE b.name = ANY($1::text[]) AND b.user_id IS NULL
  AND lower(u.email) = lower(b.name) AND u.status <> 'deleted'
RETURNING b.id;

-- name: bcs_existing_user_names
SELECT DISTINCT name FROM bcs_users WHERE name = ANY($1::text[]);

-- name: bcs_insert_cluster
INSERT INTO bcs_clusters (cluster_id, cluster_type, tke_cluster_id, tke_cluster_region,
                          creator_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (cluster_id) DO NOTHING
RETURNING cluster_id, cluster_type, tke_cluster_id, tke_cluster_region, creator_id, created_at;

-- name: bcs_insert_imported_cluster
-- A registered bk-bcs cluster is an imported KubeBYON cluster with the same id ($1), shown
-- in the console; it waits for the agent's credentials. $2: the registering account.
-- vcluster_name holds the id too (unique among live clusters: a clash is the caller's 409).
INSERT INTO clusters (id, owner_user_id, backend, name, namespace, vcluster_name,
                      kubernetes_version, workload_cpu_limit_milli_cores,
                      workload_memory_limit_mib, control_plane_cpu_request_milli_cores,
                      control_plane_memory_request_mib, status, connection_status)
VALUES ($1, $2, 'imported', $1, '', $1, '', 0, 0, 0, 0, 'provisioning', 'kubeconfig_pending');

-- name: bcs_cluster_exists
SELECT EXISTS (SELECT 1 FROM bcs_clusters WHERE cluster_id = $1);

-- name: bcs_insert_register_token
INSERT INTO bcs_register_tokens (cluster_id, token_hash, token_encrypted)
VALUES ($1, $2, $3)
ON CONFLICT (cluster_id) DO NOTHING
RETURNING id, cluster_id, token_encrypted, created_at;

-- name: bcs_get_register_token
SELECT id, cluster_id, token_hash, token_encrypted, created_at
FROM bcs_register_tokens
WHERE cluster_id = $1;

-- name: bcs_lock_cluster
-- Credential updates of one cluster, one at a time (the agent may report from replicas).
SELECT cluster_id FROM bcs_clusters WHERE cluster_id = $1 FOR UPDATE;

-- name: bcs_save_credentials
-- $1 cluster, $2 server addresses, $3 encrypted CA, $4 encrypted token.
INSERT INTO bcs_credentials (cluster_id, server_addresses, ca_cert_encrypted,
                             user_token_encrypted)
VALUES ($1, $2, $3, $4)
ON CONFLICT (cluster_id) DO UPDATE
SET server_addresses = EXCLUDED.server_addresses,
    ca_cert_encrypted = EXCLUDED.ca_cert_encrypted,
    user_token_encrypted = EXCLUDED.user_token_encrypted,
    updated_at = now();

-- name: bcs_get_credentials
SELECT id, cluster_id, server_addresses, ca_cert_encrypted, user_token_encrypted,
       cluster_domain, created_at, updated_at
FROM bcs_credentials
WHERE cluster_id = $1;

-- name: bcs_import_credentials
-- The imported cluster's side of new credentials: $2 the API server, $3 the encrypted
-- kubeconfig, or NULL with the reason in $4 when KubeBYON cannot use the credentials.
-- Reachability is the connection reconciler's to say (woken in the same transaction).
UPDATE clusters
SET api_endpoint = $2,
    kubeconfig_encrypted = $3::text,
    kubeconfig_available = $3::text IS NOT NULL,
    kubeconfig_available_at = CASE WHEN $3::text IS NULL THEN NULL
                                   ELSE coalesce(kubeconfig_available_at, now()) END,
    status = CASE WHEN $3::text IS NULL THEN 'error' ELSE 'ready' END,
    connection_status = CASE WHEN $3::text IS NULL THEN 'error' ELSE 'pending' END,
    observed_kubernetes_version = NULL,
    last_error_message = $4,
    updated_at = now()
WHERE id = $1 AND backend = 'imported' AND status <> 'deleted'
RETURNING id, name, status;

-- name: bcs_list_credentials
SELECT cluster_id, server_addresses, ca_cert_encrypted, user_token_encrypted, cluster_domain
FROM bcs_credentials
ORDER BY cluster_id;

-- name: bcs_upsert_grant_role
-- The role standing for one bk-bcs (role, resource_type, resource); its name says what it
-- allows, so the patterns are put back if they were edited elsewhere. NULL when a role
-- of another origin already has the name.
INSERT INTO roles (name, description, origin, clusters, namespaces, resources, verbs)
VALUES ($1, $2, 'bcs', $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE
SET clusters = EXCLUDED.clusters, namespaces = EXCLUDED.namespaces,
    resources = EXCLUDED.resources, verbs = EXCLUDED.verbs
WHERE roles.origin = 'bcs'
RETURNING id;

-- name: bcs_assign
INSERT INTO role_assignments (role_id, subject_type, subject)
VALUES ($1, 'user', $2)
ON CONFLICT (role_id, subject_type, subject) DO NOTHING
RETURNING id;

-- name: bcs_lock_grant_role
-- Grants lock the role too (the upsert above), so a revoke that empties and drops a role
-- never races a grant that assigns it.
SELECT id FROM roles WHERE name = $1 AND origin = 'bcs' FOR UPDATE;

-- name: bcs_unassign
DELETE FROM role_assignments
WHERE role_id = $1 AND subject_type = 'user' AND subject = $2
RETURNING id;

-- name: bcs_drop_unused_role
DELETE FROM roles r
WHERE r.id = $1 AND r.origin = 'bcs'
  AND NOT EXISTS (SELECT 1 FROM role_assignments a WHERE a.role_id = r.id);

-- name: bcs_user_grant_roles
-- Names of the bk-bcs roles assigned to one user name.
SELECT r.name
FROM role_assignments a
JOIN roles r ON r.id = a.role_id
WHERE a.subject_type = 'user' AND a.subject = $1 AND r.origin = 'bcs'
ORDER BY r.name;
