-- Deskmail's schema: mailboxes and their settings, the mail pipeline's state,
-- requests and their history, outgoing mail. Unique keys here are what make
-- every stage idempotent (invariant 2); see the comments on each.

CREATE TABLE categories (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- SMTP settings: one system default (is_system) and any number of custom
-- ones that mailboxes point at.
CREATE TABLE smtp_settings (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    is_system     boolean NOT NULL DEFAULT false,
    host          text NOT NULL,
    port          integer CHECK (port BETWEEN 1 AND 65535),
    security      text NOT NULL DEFAULT 'starttls' CHECK (security IN ('none', 'starttls', 'tls')),
    username      text,
    password_enc  bytea,          -- Fernet token (invariant 8)
    allow_self_signed boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX smtp_settings_one_system ON smtp_settings (is_system) WHERE is_system;

-- One row per field of the seed's "Email Mailboxes" page, plus the
-- fetcher's status and lease.
CREATE TABLE mailboxes (
    id               bigserial PRIMARY KEY,
    from_name        text NOT NULL,            -- "Account Name": shown as sender, may hold placeholders
    address          text NOT NULL,            -- "Account Name": the address, e.g. support@example.com
    folder           text NOT NULL DEFAULT 'INBOX',
    archive          boolean NOT NULL DEFAULT true,
    archive_folder   text NOT NULL DEFAULT 'deskmail_archive',
    host             text NOT NULL,
    username         text NOT NULL,
    password_enc     bytea,
    account_type     text NOT NULL CHECK (account_type IN ('imap', 'pop3', 'maildir')),
    port             integer CHECK (port BETWEEN 1 AND 65535),   -- NULL: the usual port
    security         text NOT NULL DEFAULT 'tls' CHECK (security IN ('none', 'starttls', 'tls')),
    allow_self_signed boolean NOT NULL DEFAULT false,
    category_id      bigint REFERENCES categories (id),
    auto_reply       boolean NOT NULL DEFAULT false,
    smtp_id          bigint REFERENCES smtp_settings (id),      -- NULL: the system default
    enabled          boolean NOT NULL DEFAULT true,
    poll_interval    integer NOT NULL DEFAULT 60 CHECK (poll_interval > 0),
    max_per_poll     integer NOT NULL DEFAULT 500 CHECK (max_per_poll > 0),
    max_message_bytes bigint NOT NULL DEFAULT 26214400 CHECK (max_message_bytes > 0),
    -- status, for operators
    last_poll_at     timestamptz,
    last_success_at  timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    failures_in_row  integer NOT NULL DEFAULT 0,
    -- invariant 5: one fetcher at a time
    lease_owner      text,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    removed_at       timestamptz,     -- removed mailboxes keep their mail and requests
    CHECK (NOT (archive AND account_type = 'pop3'))
);
CREATE UNIQUE INDEX mailboxes_address ON mailboxes (lower(address)) WHERE removed_at IS NULL;

-- System templates have mailbox_id NULL; a mailbox's override has its id.
CREATE TABLE templates (
    id          bigserial PRIMARY KEY,
    mailbox_id  bigint REFERENCES mailboxes (id) ON DELETE CASCADE,
    name        text NOT NULL,
    subject     text NOT NULL,
    body_text   text NOT NULL,
    body_html   text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (mailbox_id, name)
);

-- Invariant 1: the bytes are here before anything about them is published.
CREATE TABLE raw_messages (
    id          bigserial PRIMARY KEY,
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id),
    data        bytea NOT NULL,
    size        integer NOT NULL,
    sha256      text NOT NULL,                    -- recognises a message after a UIDVALIDITY change
    truncated   boolean NOT NULL DEFAULT false,   -- over max_message_bytes: headers only
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_messages_sha256 ON raw_messages (mailbox_id, sha256);

-- The fetcher's memory of the remote mailbox. The primary key is the
-- idempotency key of an import (invariant 2): IMAP (folder, UIDVALIDITY, UID),
-- POP3 ('', 0, UIDL), Maildir ('', 0, file key).
--   state: stored    -> raw row committed, event not yet confirmed by the broker
--          published -> event confirmed
--          committed -> the request or update exists; safe to archive/delete
--          archived  -> gone from the remote mailbox
CREATE TABLE remote_messages (
    mailbox_id   bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    folder       text NOT NULL,
    uidvalidity  bigint NOT NULL,
    remote_id    text NOT NULL,
    raw_id       bigint NOT NULL UNIQUE REFERENCES raw_messages (id),
    state        text NOT NULL DEFAULT 'stored'
                 CHECK (state IN ('stored', 'published', 'committed', 'archived')),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, folder, uidvalidity, remote_id)
);
CREATE INDEX remote_messages_todo ON remote_messages (mailbox_id, state) WHERE state <> 'archived';

-- Content-addressed attachment bytes: stored once per content.
CREATE TABLE blobs (
    sha256  text PRIMARY KEY,
    size    integer NOT NULL,
    data    bytea NOT NULL
);

-- The parser's result, one per raw message (idempotent by primary key).
CREATE TABLE parsed_messages (
    raw_id      bigint PRIMARY KEY REFERENCES raw_messages (id),
    parsed      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id          bigserial PRIMARY KEY,
    address     text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_address ON customers (lower(address));

CREATE TABLE requests (
    id           bigserial PRIMARY KEY,
    mailbox_id   bigint REFERENCES mailboxes (id),
    category_id  bigint REFERENCES categories (id),
    customer_id  bigint REFERENCES customers (id),
    subject      text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    unparsed     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requests_mailbox ON requests (mailbox_id, id);

-- Everyone who has been on a request's conversation (for the subject-tag rule).
CREATE TABLE request_people (
    request_id  bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    address     text NOT NULL,
    PRIMARY KEY (request_id, address)
);

-- A request's history: each incoming mail and each outgoing mail is an entry.
-- raw_id is unique: one history entry per raw message (invariant 2).
CREATE TABLE history (
    id           bigserial PRIMARY KEY,
    request_id   bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('incoming', 'outgoing', 'note')),
    raw_id       bigint UNIQUE REFERENCES raw_messages (id),
    outcome      text CHECK (outcome IN ('created', 'updated')),  -- what an incoming mail did
    message_id   text,
    from_address text,
    from_name    text,
    subject      text,
    body_text    text NOT NULL DEFAULT '',
    body_html    text,
    automatic    text,
    author       text,            -- agent's name for staff replies
    -- In-Reply-To and References of an incoming mail: lets a mail find the
    -- request of a reply to it that arrived first.
    thread_ids   text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_request ON history (request_id, id);
CREATE INDEX history_thread_ids ON history USING gin (thread_ids);
CREATE INDEX history_message_id ON history (message_id) WHERE message_id IS NOT NULL;

CREATE TABLE attachments (
    id           bigserial PRIMARY KEY,
    history_id   bigint NOT NULL REFERENCES history (id) ON DELETE CASCADE,
    sha256       text NOT NULL REFERENCES blobs (sha256),
    filename     text NOT NULL,
    content_type text NOT NULL,
    size         integer NOT NULL,
    content_id   text,
    inline       boolean NOT NULL DEFAULT false
);
CREATE INDEX attachments_history ON attachments (history_id);

-- Mail Deskmail sends. One auto-reply per request at most (invariant 2 and 7).
--   state: pending -> sending -> sent | failed ; an auto-reply found in
--   'sending' after a crash is never sent again ('unknown'): at most once.
CREATE TABLE outgoing_mail (
    id           bigserial PRIMARY KEY,
    request_id   bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    history_id   bigint REFERENCES history (id),
    kind         text NOT NULL CHECK (kind IN ('auto_reply', 'staff_reply')),
    message_id   text UNIQUE,
    to_address   text NOT NULL,
    to_name      text NOT NULL DEFAULT '',
    agent_name   text,
    body_text    text,            -- staff reply's text as the agent wrote it
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'skipped')),
    reason       text,            -- why it was skipped, or why it failed
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE UNIQUE INDEX outgoing_one_auto_reply ON outgoing_mail (request_id) WHERE kind = 'auto_reply';
CREATE INDEX outgoing_auto_reply_rate ON outgoing_mail (lower(to_address), created_at) WHERE kind = 'auto_reply' AND state = 'sent';
