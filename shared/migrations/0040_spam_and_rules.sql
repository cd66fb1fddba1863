-- Spam verdicts, sender lists and mail rules (issue 16).
--
-- The parser stage writes a mail's spam verdict (rspamd's /checkv2, or the
-- verdict an upstream mail server wrote into the headers) beside its parsed
-- form; the ticketer reads it together with the sender lists and the mail
-- rules, and decides: a request (maybe in the spam state, maybe routed by a
-- rule), or no request at all (blocked sender, discarded by a rule), in
-- which case the mail is held here with its reason, never lost.

-- One verdict per raw message, written by the parser in the transaction that
-- stores the parsed form (idempotent by primary key). No row: no filter had
-- anything to say (rspamd off and no upstream verdict header).
--   state: rspamd    rspamd answered
--          upstream  rspamd is off; an upstream server's header gave the verdict
--          unchecked rspamd is on but did not answer in time (problem says why);
--                    an upstream verdict, if any, still counts
CREATE TABLE spam_verdicts (
    raw_id        bigint PRIMARY KEY REFERENCES raw_messages (id),
    state         text NOT NULL CHECK (state IN ('rspamd', 'upstream', 'unchecked')),
    spam          boolean,          -- the filter's own verdict (rspamd's action, upstream flag)
    score         real,
    action        text,             -- rspamd's action: no action, greylist, add header, rewrite subject, reject
    dmarc         text,             -- pass, fail, softfail, none (from rspamd's DMARC_* symbols)
    dmarc_policy  text,             -- the From domain's published policy when it failed: reject, quarantine, none
    dmarc_domain  text,
    symbols       jsonb NOT NULL DEFAULT '{}',   -- symbol -> score, for the request's history
    problem       text,             -- why rspamd gave no verdict
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- The status page counts recent unchecked mail.
CREATE INDEX spam_verdicts_unchecked ON spam_verdicts (created_at) WHERE state = 'unchecked';

-- Per-mailbox spam threshold: a mail scoring at least this is spam. NULL:
-- rspamd's own verdict decides (its actions add header, rewrite subject,
-- reject; 6 and 15 points with its stock scores).
ALTER TABLE mailboxes ADD COLUMN spam_threshold real;

-- A request in the spam state: no auto-reply, out of the default lists,
-- released (spam = false, released_at set) or deleted by an administrator.
-- no_auto_reply: why this request must not get an auto-reply (a rule said
-- so, the sender failed DMARC), in words, for the replier's record.
ALTER TABLE requests
    ADD COLUMN spam boolean NOT NULL DEFAULT false,
    ADD COLUMN spam_reason text,
    ADD COLUMN released_at timestamptz,
    ADD COLUMN no_auto_reply text;
CREATE INDEX requests_spam ON requests (id) WHERE spam;
-- The replier's sweep: released requests whose auto-reply is still to be decided.
CREATE INDEX requests_released ON requests (released_at) WHERE released_at IS NOT NULL;

-- Allow and block entries, system-wide (mailbox_id NULL) or for one mailbox.
--   kind: address (exact, case-insensitive), domain (and its subdomains),
--         pattern (* and ? over the whole address)
CREATE TABLE sender_list (
    id          bigserial PRIMARY KEY,
    mailbox_id  bigint REFERENCES mailboxes (id) ON DELETE CASCADE,
    list        text NOT NULL CHECK (list IN ('allow', 'block')),
    kind        text NOT NULL CHECK (kind IN ('address', 'domain', 'pattern')),
    value       text NOT NULL CHECK (length(trim(value)) > 0),
    note        text NOT NULL DEFAULT '',
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sender_list_unique ON sender_list (coalesce(mailbox_id, 0), list, kind, lower(value));

-- Mail rules, ordered by position (then id) within their scope: system-wide
-- rules (mailbox_id NULL) run first, then the mailbox's own.
CREATE TABLE mail_rules (
    id          bigserial PRIMARY KEY,
    mailbox_id  bigint REFERENCES mailboxes (id) ON DELETE CASCADE,
    position    integer NOT NULL DEFAULT 0,
    name        text NOT NULL CHECK (length(trim(name)) > 0),
    enabled     boolean NOT NULL DEFAULT true,
    match       text NOT NULL DEFAULT 'all' CHECK (match IN ('all', 'any')),
    conditions  jsonb NOT NULL,     -- [{"field", "op", "value", "negate", "header"}]
    actions     jsonb NOT NULL,     -- [{"action", "value"}]
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX mail_rules_name ON mail_rules (coalesce(mailbox_id, 0), lower(name));
CREATE INDEX mail_rules_order ON mail_rules (mailbox_id, position, id);

-- Mail that made no request: a blocked sender's, or discarded by a rule.
-- The raw bytes stay in raw_messages (invariant 1); raw_id is the
-- idempotency key (a redelivery adds nothing). Released mail goes through
-- the ticketer again, without the block or the discard, and request_id
-- records what it became.
CREATE TABLE held_mail (
    raw_id        bigint PRIMARY KEY REFERENCES raw_messages (id),
    mailbox_id    bigint REFERENCES mailboxes (id),
    kind          text NOT NULL CHECK (kind IN ('blocked', 'discarded')),
    reason        text NOT NULL,
    from_address  text,
    subject       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    released_at   timestamptz,
    released_by   text,
    request_id    bigint REFERENCES requests (id) ON DELETE SET NULL
);
CREATE INDEX held_mail_open ON held_mail (created_at) WHERE released_at IS NULL;

-- The administrators' spam and not-spam decisions, and what rspamd said when
-- it was taught them (/learnspam, /learnham).
CREATE TABLE spam_training (
    id          bigserial PRIMARY KEY,
    raw_id      bigint NOT NULL REFERENCES raw_messages (id),
    verdict     text NOT NULL CHECK (verdict IN ('spam', 'ham')),
    decided_by  text,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    learned     boolean,            -- NULL: rspamd is off; false: the call failed (outcome says why)
    outcome     text
);
CREATE INDEX spam_training_raw ON spam_training (raw_id);
