-- Admin user management (seed: Admin Users). Admins see every account, deleted ones too.

-- name: admin_count_users
-- $1: email substring (case-insensitive) or NULL; $2: status or NULL.
SELECT count(*) FROM users
WHERE ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0)
  AND ($2::text IS NULL OR status = $2);

-- name: admin_list_users
-- Newest first; id breaks ties so pages never overlap.
SELECT id, email, display_name, role, status, created_at, last_login_at FROM users
WHERE ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0)
  AND ($2::text IS NULL OR status = $2)
ORDER BY created_at DESC, id DESC
LIMIT $3 OFFSET $4;

-- name: admin_get_user
SELECT id, email, display_name, role, status, created_at, last_login_at FROM users
WHERE id = $1;

-- name: admin_lock_user
SELECT id, email, display_name, role, status, created_at, last_login_at FROM users
WHERE id = $1 FOR UPDATE;

-- name: admin_set_user_status
UPDATE users SET status = $2, updated_at = now() WHERE id = $1
RETURNING id, email, display_name, role, status, created_at, last_login_at;

-- name: admin_login_history
SELECT at, ip, user_agent, method, result FROM login_history
WHERE user_id = $1
ORDER BY at DESC, id DESC
LIMIT $2;
