-- Roles that apply to a principal, for the authorization engine.

-- name: roles_for_principal
-- $1: user subject names (account id, email); $2: groups; $3: the account id, whose
-- linked bk-bcs users' names count as its own (one person, one principal).
WITH subjects (subject_type, subject) AS (
    SELECT 'user', unnest($1::text[])
    UNION ALL
    SELECT 'group', unnest($2::text[])
    UNION ALL
    SELECT 'user', name FROM bcs_users WHERE $3::text IS NOT NULL AND user_id = $3
)
SELECT DISTINCT r.id, r.name, r.clusters, r.namespaces, r.resources, r.verbs
FROM role_assignments a
JOIN subjects s ON s.subject_type = a.subject_type AND s.subject = a.subject
JOIN roles r ON r.id = a.role_id
ORDER BY r.id;

-- name: notify_authz_changed
-- In the transaction that changed roles, assignments or grants: every replica drops its
-- cached decisions at commit.
SELECT pg_notify('kubebyon_wakeup', 'authz');
