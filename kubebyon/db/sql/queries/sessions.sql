-- Sessions and API keys: looked up by the hash of the presented token.

-- name: insert_session
INSERT INTO sessions (id, token_hash, user_id, auth_method, groups, ip, user_agent, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
RETURNING id, expires_at;

-- name: session_principal
-- Sliding expiry: at most one write a minute per session, never past the absolute cap.
WITH found AS (
    SELECT s.id AS session_id, s.groups, s.auth_method, s.created_at AS session_created_at,
           u.id AS user_id, u.email, u.role, u.status, u.display_name
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
      AND u.status = 'active'
), touched AS (
    UPDATE sessions s
    SET last_seen_at = now(),
        expires_at = least(s.created_at + make_interval(secs => $3),
                           now() + make_interval(secs => $2))
    FROM found
    WHERE s.id = found.session_id AND s.last_seen_at < now() - interval '60 seconds'
    RETURNING s.expires_at
)
SELECT found.*, (SELECT expires_at FROM touched) AS extended_until FROM found;

-- name: revoke_session
UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id;

-- name: revoke_user_sessions
-- $2: a session to keep (the caller's own), or NULL for all.
UPDATE sessions SET revoked_at = now()
WHERE user_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR id <> $2)
RETURNING id;

-- name: api_key_principal
WITH found AS (
    SELECT k.id AS key_id, u.id AS user_id, u.email, u.role, u.status, u.display_name
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = $1 AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.status = 'active'
), used AS (
    UPDATE api_keys k SET last_used_at = now()
    FROM found
    WHERE k.id = found.key_id
      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds')
)
SELECT * FROM found;

-- name: revoke_user_api_keys
UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING id;
