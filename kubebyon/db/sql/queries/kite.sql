-- The Kite RBAC dialect (seed 003): roles and their assignments. Writes also send
-- NOTIFY 'authz' (authz.sql) in the same transaction.

-- name: kite_roles
-- $1: one role id, or NULL for every role.
SELECT id, name, description, is_system, clusters, namespaces, resources, verbs,
       created_at, updated_at
FROM roles
WHERE $1::integer IS NULL OR id = $1
ORDER BY id;

-- name: kite_assignments
-- $1: one role id, or NULL for the assignments of every role.
SELECT id, role_id, subject_type, subject, created_at
FROM role_assignments
WHERE $1::integer IS NULL OR role_id = $1
ORDER BY role_id, id;

-- name: kite_lock_role
SELECT id, name, is_system FROM roles WHERE id = $1 FOR UPDATE;

-- name: kite_insert_role
INSERT INTO roles (name, description, clusters, namespaces, resources, verbs)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: kite_update_role
UPDATE roles
SET name = $2, description = $3, clusters = $4, namespaces = $5, resources = $6, verbs = $7,
    updated_at = now()
WHERE id = $1;

-- name: kite_delete_role
DELETE FROM roles WHERE id = $1;

-- name: kite_insert_assignment
-- NULL when the subject already holds the role (kite_find_assignment then returns it).
INSERT INTO role_assignments (role_id, subject_type, subject)
VALUES ($1, $2, $3)
ON CONFLICT (role_id, subject_type, subject) DO NOTHING
RETURNING id, role_id, subject_type, subject, created_at;

-- name: kite_find_assignment
SELECT id, role_id, subject_type, subject, created_at
FROM role_assignments
WHERE role_id = $1 AND subject_type = $2 AND subject = $3;

-- name: kite_delete_assignment
DELETE FROM role_assignments
WHERE role_id = $1 AND subject_type = $2 AND subject = $3
RETURNING id;
