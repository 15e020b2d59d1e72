-- The signed-in user's own profile, avatar, account deletion and notification settings.

-- name: update_profile
-- NULL leaves a field as it is.
UPDATE users
SET display_name = coalesce($2, display_name),
    timezone = coalesce($3, timezone),
    locale = coalesce($4, locale),
    updated_at = now()
WHERE id = $1 AND status = 'active'
RETURNING *;

-- name: set_avatar
UPDATE users
SET avatar = $2, avatar_content_type = $3, avatar_updated_at = now(), updated_at = now()
WHERE id = $1 AND status = 'active'
RETURNING *;

-- name: get_avatar
SELECT avatar, avatar_content_type FROM users
WHERE id = $1 AND status = 'active' AND avatar IS NOT NULL;

-- name: soft_delete_user
-- The row (and its email) stays for history; the partial unique index on live
-- accounts frees the address for a new registration.
UPDATE users
SET status = 'deleted', deleted_at = now(), updated_at = now(), password_hash = NULL,
    avatar = NULL, avatar_content_type = NULL, avatar_updated_at = NULL
WHERE id = $1 AND status = 'active'
RETURNING id;

-- name: get_notification_settings
SELECT * FROM notification_settings WHERE user_id = $1;

-- name: put_notification_settings
INSERT INTO notification_settings (user_id, email_notifications, slack_notifications,
                                   slack_target, telegram_notifications, telegram_chat_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id) DO UPDATE
SET email_notifications = excluded.email_notifications,
    slack_notifications = excluded.slack_notifications,
    slack_target = excluded.slack_target,
    telegram_notifications = excluded.telegram_notifications,
    telegram_chat_id = excluded.telegram_chat_id,
    updated_at = now()
RETURNING *;
