-- The audit stream as console activities (seed §3.10). Filters apply before the limit.
-- $2: "resource_type/action" pairs of a category, or NULL for every event.

-- name: list_own_activities
SELECT * FROM audit_events
WHERE actor_user_id = $1
  AND ($2::text[] IS NULL OR resource_type || '/' || action = ANY ($2))
  AND ($3::text IS NULL OR resource_type = $3)
  AND ($4::text IS NULL OR action = $4)
ORDER BY occurred_at DESC, id DESC
LIMIT $5;

-- name: list_all_activities
SELECT * FROM audit_events
WHERE ($1::text[] IS NULL OR resource_type || '/' || action = ANY ($1))
  AND ($2::text IS NULL OR resource_type = $2)
  AND ($3::text IS NULL OR action = $3)
ORDER BY occurred_at DESC, id DESC
LIMIT $4;
