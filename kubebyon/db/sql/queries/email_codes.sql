-- Six-digit e-mail codes (registration, password reset) and the account writes that
-- consume them. Codes are stored as keyed hashes; comparison happens in Python in
-- constant time.

-- name: insert_email_code
-- A new code supersedes every earlier code for the same address and purpose; codes that
-- expired over an hour ago are swept on the way, which keeps the table small.
WITH superseded AS (
    DELETE FROM email_codes
    WHERE (lower(email) = lower($2) AND purpose = $3) OR expires_at < now() - interval '1 hour'
)
INSERT INTO email_codes (id, email, purpose, code_hash, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING id, expires_at;

-- name: lock_live_email_code
-- The newest usable code for (email, purpose): not consumed, not expired, tries left ($3).
SELECT id, code_hash FROM email_codes
WHERE lower(email) = lower($1) AND purpose = $2
  AND consumed_at IS NULL AND expires_at > now() AND attempts < $3
ORDER BY created_at DESC
LIMIT 1
FOR UPDATE;

-- name: count_email_code_attempt
UPDATE email_codes SET attempts = attempts + 1 WHERE id = $1;

-- name: consume_email_code
UPDATE email_codes SET consumed_at = now() WHERE id = $1 AND consumed_at IS NULL RETURNING id;

-- name: insert_registered_user
INSERT INTO users (id, email, password_hash, role, display_name, email_verified_at)
VALUES ($1, $2, $3, 'user', $4, now())
RETURNING *;

-- name: reset_user_password
-- Using a code sent to the address also proves the address.
UPDATE users
SET password_hash = $2, email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
WHERE id = $1 AND status <> 'deleted'
RETURNING id;
