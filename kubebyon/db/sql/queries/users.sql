-- Accounts.

-- name: count_users
SELECT count(*) FROM users WHERE status <> 'deleted';

-- name: lock_bootstrap
-- Serialises replicas that start together; held until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('kubebyon.bootstrap_admin'));

-- name: insert_first_admin
-- Run after lock_bootstrap in the same transaction, so the NOT EXISTS check is fresh.
INSERT INTO users (id, email, password_hash, role)
SELECT $1, $2, $3, 'admin'
WHERE NOT EXISTS (SELECT 1 FROM users WHERE status <> 'deleted')
RETURNING id;

-- name: insert_user
INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: get_user_by_email
SELECT * FROM users WHERE lower(email) = lower($1) AND status <> 'deleted';

-- name: set_user_admin_password
UPDATE users SET password_hash = $2, role = 'admin', updated_at = now()
WHERE id = $1 RETURNING *;

-- name: get_user
SELECT * FROM users WHERE id = $1 AND status <> 'deleted';

-- name: record_login
UPDATE users SET last_login_at = now() WHERE id = $1;
