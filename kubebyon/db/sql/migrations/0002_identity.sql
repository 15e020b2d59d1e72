-- Identity: profiles, sessions, API keys, e-mail codes, SSO, login history, audit,
-- notification preferences, system settings and the outbox of messages to deliver.

ALTER TABLE users
    ADD COLUMN avatar              bytea,
    ADD COLUMN avatar_content_type text,
    ADD COLUMN avatar_updated_at   timestamptz,
    ADD COLUMN email_verified_at   timestamptz,
    ADD COLUMN last_login_at       timestamptz,
    ADD COLUMN deleted_at          timestamptz,
    ADD COLUMN timezone            text NOT NULL DEFAULT 'UTC',
    ADD COLUMN locale              text NOT NULL DEFAULT 'en';

-- Session ids and API keys are stored only as SHA-256 hashes of high-entropy tokens.
CREATE TABLE sessions (
    id           text PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    user_id      text NOT NULL REFERENCES users (id),
    auth_method  text NOT NULL,                 -- password | oauth:<provider>
    groups       jsonb NOT NULL DEFAULT '[]',   -- OIDC groups/roles claim at login
    ip           text,
    user_agent   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users (id),
    name         text NOT NULL,
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC);

-- Six-digit codes for registration and password reset: hashed, single use, limited tries.
CREATE TABLE email_codes (
    id          text PRIMARY KEY,
    email       text NOT NULL,
    purpose     text NOT NULL CHECK (purpose IN ('register', 'reset_password')),
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz
);
CREATE INDEX email_codes_lookup ON email_codes (lower(email), purpose, created_at DESC);

-- OAuth2/OIDC: login state (single use) and linked identities.
CREATE TABLE oauth_states (
    state_hash    bytea PRIMARY KEY,
    provider      text NOT NULL,
    code_verifier text NOT NULL,   -- encrypted at rest
    nonce         text NOT NULL,
    redirect_uri  text NOT NULL,   -- sent again with the code exchange
    next_path     text,            -- same-origin path to land on after sign-in
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    consumed_at   timestamptz
);

CREATE TABLE user_identities (
    provider   text NOT NULL,
    subject    text NOT NULL,
    user_id    text NOT NULL REFERENCES users (id),
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);

CREATE TABLE login_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    text REFERENCES users (id),
    email      text,
    method     text NOT NULL,
    result     text NOT NULL,
    ip         text,
    user_agent text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_history_user ON login_history (user_id, at DESC);

-- Seed §3.10: the audit stream behind /activities. Written in the transaction of the
-- change it describes; never holds a secret (see kubebyon/domain/audit.py).
CREATE TABLE audit_events (
    id            text PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor_user_id text,
    actor_type    text NOT NULL,          -- user | admin | system | anonymous
    actor_method  text NOT NULL,          -- session | api_key | oauth | system | password
    resource_type text NOT NULL,
    resource_id   text,
    action        text NOT NULL,
    result        text NOT NULL CHECK (result IN ('success', 'failure')),
    message       text NOT NULL,
    cluster_id    text,
    cluster_name  text,
    node_name     text,
    ip            text,
    extra         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, occurred_at DESC, id DESC);

CREATE TABLE notification_settings (
    user_id                text PRIMARY KEY REFERENCES users (id),
    email_notifications    boolean NOT NULL DEFAULT true,
    slack_notifications    boolean NOT NULL DEFAULT false,
    slack_target           text,
    telegram_notifications boolean NOT NULL DEFAULT false,
    telegram_chat_id       text,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Admin-edited runtime settings: one JSON document; secrets inside it are encrypted.
CREATE TABLE system_settings (
    id         integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    document   jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
INSERT INTO system_settings (id) VALUES (1);

-- Messages to deliver (mail, Slack, Telegram, webhooks). The body is encrypted at rest
-- and cleared once delivered; the notifications reconciler sends them.
CREATE TABLE outbox (
    id           text PRIMARY KEY,
    channel      text NOT NULL CHECK (channel IN ('email', 'slack', 'telegram', 'webhook')),
    recipient    text NOT NULL,
    subject      text NOT NULL DEFAULT '',
    body         text,                    -- encrypted
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_pending ON outbox (created_at) WHERE status = 'pending';
