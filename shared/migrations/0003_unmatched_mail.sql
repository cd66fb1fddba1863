-- Automatic mail the ticketer could not attach to any request: a bounce or
-- delivery report whose original mail is not ours (or no longer exists).
-- Such mail never opens a request (a bounce storm would flood the help
-- desk), but it must not vanish either (invariant 6: it reaches a person):
-- it waits here, with a link to its raw bytes, until an operator looks at
-- it with `deskmail requests unmatched`. raw_id is the idempotency key
-- (invariant 2): a redelivered bounce adds nothing.
CREATE TABLE unmatched_mail (
    raw_id        bigint PRIMARY KEY REFERENCES raw_messages (id),
    mailbox_id    bigint REFERENCES mailboxes (id),
    kind          text NOT NULL,           -- shared.parsed.AUTOMATIC_KINDS, e.g. 'bounce'
    reason        text NOT NULL,           -- why it matched nothing, in plain words
    from_address  text,
    subject       text,
    original_message_id text,              -- what the bounce said it was about
    recipient     text,                    -- the failed recipient, when the report names one
    status        text,                    -- the DSN status, e.g. 5.1.1
    created_at    timestamptz NOT NULL DEFAULT now(),
    seen_at       timestamptz              -- set when an operator marks it handled
);
CREATE INDEX unmatched_mail_open ON unmatched_mail (created_at) WHERE seen_at IS NULL;

-- The ticketer writes every incoming mail's text and sanitised HTML into
-- history; lz4 compresses those several times faster than the default pglz
-- for about the same size (PostgreSQL 14+, built with lz4 as Debian's is).
-- Existing rows keep their compression; only new values use lz4. A server
-- without lz4 (or older than 14) keeps pglz: same data, only slower.
DO $$
BEGIN
    ALTER TABLE history ALTER COLUMN body_text SET COMPRESSION lz4;
    ALTER TABLE history ALTER COLUMN body_html SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'history keeps the default compression: %', SQLERRM;
END
$$;
