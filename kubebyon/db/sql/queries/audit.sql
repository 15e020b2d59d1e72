-- The audit stream (seed §3.10) and login history.

-- name: insert_audit_event
INSERT INTO audit_events (id, actor_user_id, actor_type, actor_method, resource_type,
                          resource_id, action, result, message, cluster_id, cluster_name,
                          node_name, ip, extra)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- name: insert_login_history
INSERT INTO login_history (user_id, email, method, result, ip, user_agent)
VALUES ($1, $2, $3, $4, $5, $6);
