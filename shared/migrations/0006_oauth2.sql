-- OAuth2 sign-in for mailboxes and custom SMTP settings (shared/oauth2).
--
-- One oauth_grants row per mailbox or SMTP setting that signs in with OAuth2:
-- the provider settings the administrator chose, the tokens, and the state of
-- an authorization started from the admin web or the CLI. The client secret
-- and every token are Fernet-encrypted (invariant 8), like passwords.
--
-- The access token, its expiry and the refresh token change together, in one
-- UPDATE: a refresh that rotated the refresh token can never leave the new
-- access token stored without the new refresh token (or the other way round).
--
-- needs_reconnect: the provider refused the refresh token (invalid_grant) or
-- there is none yet; an administrator must sign in again ("Connect").
CREATE TABLE oauth_grants (
    id                 bigserial PRIMARY KEY,
    provider           text NOT NULL CHECK (provider IN ('microsoft', 'google', 'generic')),
    flow               text NOT NULL DEFAULT 'authorization_code'
                       CHECK (flow IN ('authorization_code', 'client_credentials', 'refresh_token')),
    tenant             text,            -- Microsoft: directory id or domain; NULL: 'organizations'
    authorize_url      text,            -- NULL: the provider's preset
    token_url          text,            -- NULL: the provider's preset
    scopes             text,            -- space-separated; NULL: the provider's preset
    client_id          text NOT NULL,
    client_secret_enc  bytea,
    mechanism          text NOT NULL DEFAULT 'auto' CHECK (mechanism IN ('auto', 'xoauth2', 'oauthbearer')),
    access_token_enc   bytea,
    access_expires_at  timestamptz,
    refresh_token_enc  bytea,
    tokens_updated_at  timestamptz,
    needs_reconnect    boolean NOT NULL DEFAULT false,
    reconnect_reason   text,
    -- A pending authorization-code flow: state names it in the callback; the
    -- PKCE verifier is encrypted like a token.
    auth_state         text UNIQUE,
    auth_verifier_enc  bytea,
    auth_redirect_uri  text,
    auth_started_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE mailboxes
    ADD COLUMN auth_method text NOT NULL DEFAULT 'password' CHECK (auth_method IN ('password', 'oauth2')),
    ADD COLUMN oauth_grant_id bigint REFERENCES oauth_grants (id);

ALTER TABLE smtp_settings
    ADD COLUMN auth_method text NOT NULL DEFAULT 'password' CHECK (auth_method IN ('password', 'oauth2')),
    ADD COLUMN oauth_grant_id bigint REFERENCES oauth_grants (id);
