-- The admin web and HTTP API: administrators, their browser sessions, API
-- bearer tokens and failed logins (for throttling). Session ids and tokens
-- are stored as SHA-256 digests only, so a copy of the database does not
-- let anyone in.

CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL CHECK (length(trim(username)) > 0),
    password_hash  text NOT NULL,               -- Argon2id (argon2-cffi)
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    disabled_at    timestamptz
);
CREATE UNIQUE INDEX users_username ON users (lower(username));

CREATE TABLE web_sessions (
    id_hash       text PRIMARY KEY,              -- sha256 of the cookie's value
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,                 -- synchroniser token of this session
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,          -- sha256 of the bearer token
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- One row per failed login; throttling counts the recent ones per user name
-- and per client address. Old rows are pruned on each failure.
CREATE TABLE login_failures (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL,
    client      text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_username ON login_failures (lower(username), failed_at);
CREATE INDEX login_failures_client ON login_failures (client, failed_at);
