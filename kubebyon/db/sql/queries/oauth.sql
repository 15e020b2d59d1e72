-- OAuth2/OIDC sign-in: single-use login state and identities linked to accounts.

-- name: insert_oauth_state
-- Expired attempts are swept on the way in, so abandoned sign-ins do not pile up.
WITH swept AS (DELETE FROM oauth_states WHERE expires_at < now())
INSERT INTO oauth_states (state_hash, provider, code_verifier, nonce, redirect_uri,
                          next_path, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7));

-- name: consume_oauth_state
-- Single use: the first callback to present a live state for its provider takes it;
-- a replayed, expired, forged or other-provider state matches nothing.
UPDATE oauth_states SET consumed_at = now()
WHERE state_hash = $1 AND provider = $2 AND consumed_at IS NULL AND expires_at > now()
RETURNING code_verifier, nonce, redirect_uri, next_path;

-- name: get_identity_user
SELECT u.* FROM user_identities i JOIN users u ON u.id = i.user_id
WHERE i.provider = $1 AND i.subject = $2 AND u.status <> 'deleted';

-- name: link_identity
-- An identity left pointing at a deleted account moves to the account it signs in to now.
INSERT INTO user_identities (provider, subject, user_id, email) VALUES ($1, $2, $3, $4)
ON CONFLICT (provider, subject) DO UPDATE SET user_id = EXCLUDED.user_id, email = EXCLUDED.email;

-- name: insert_oauth_user
-- The provider verified the address, so the account starts verified and without a password.
INSERT INTO users (id, email, role, display_name, email_verified_at)
VALUES ($1, $2, 'user', $3, now())
RETURNING *;
