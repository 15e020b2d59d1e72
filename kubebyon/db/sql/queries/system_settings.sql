-- name: get_system_settings
SELECT document, updated_at, updated_by FROM system_settings WHERE id = 1;

-- name: put_system_settings
UPDATE system_settings SET document = $1, updated_at = now(), updated_by = $2 WHERE id = 1
RETURNING document, updated_at;
