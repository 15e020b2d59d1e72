-- The outbox: messages written by API requests, delivered by the notifications
-- reconciler. Bodies are SecretBox tokens and are cleared once the row is final.

-- name: insert_outbox
INSERT INTO outbox (id, channel, recipient, subject, body) VALUES ($1, $2, $3, $4, $5);

-- name: pending_outbox_ids
SELECT id FROM outbox WHERE status = 'pending' ORDER BY created_at;

-- name: get_outbox
SELECT * FROM outbox WHERE id = $1;

-- name: mark_outbox_sent
UPDATE outbox SET status = 'sent', sent_at = now(), body = NULL, last_error = NULL
WHERE id = $1 AND status = 'pending';

-- name: record_outbox_failure
-- One more failed attempt; after $3 attempts the message is given up (and its body dropped).
UPDATE outbox
SET attempts = attempts + 1,
    last_error = $2,
    status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE status END,
    body = CASE WHEN attempts + 1 >= $3 THEN NULL ELSE body END
WHERE id = $1 AND status = 'pending'
RETURNING status, attempts;
