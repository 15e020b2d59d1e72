-- A user's API keys. Only the SHA-256 of a key is stored; lookups by key are in
-- sessions.sql (api_key_principal).

-- name: insert_api_key
INSERT INTO api_keys (id, user_id, name, prefix, key_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, prefix, created_at, expires_at, last_used_at;

-- name: list_api_keys
SELECT id, name, prefix, created_at, expires_at, last_used_at
FROM api_keys
WHERE user_id = $1 AND revoked_at IS NULL
ORDER BY created_at DESC, id DESC;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now()
WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
RETURNING id, name, prefix;
