-- The admin system settings editor.

-- name: lock_system_settings
-- A PUT merges into the stored document: lock it so concurrent edits do not lose writes.
SELECT document, updated_at FROM system_settings WHERE id = 1 FOR UPDATE;
