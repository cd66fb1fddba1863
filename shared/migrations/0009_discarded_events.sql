-- Dead letters an operator discarded (`deskmail dead-letters purge`, the
-- admin web's Discard): what was thrown away, by whom, when and why. The
-- audit trail, and what tells services/admin/status.py `backlog` that this
-- work is given up rather than still waiting.
--
-- A row is written BEFORE the broker removes the letter (services/admin/
-- dead_letters.py), so no discard goes unrecorded; confirmed_at is set once
-- the broker has confirmed the removal. A row without it is a discard whose
-- removal was not seen to succeed: the letter may still be in its dead-letter
-- queue (`deskmail dead-letters list` shows it) or gone (the process died in
-- between).
--
-- The ids have no foreign keys on purpose: a poison event often names a row
-- that does not exist, and the record must outlive whatever it names.
CREATE TABLE discarded_events (
    id            bigserial PRIMARY KEY,
    letter_id     text NOT NULL,          -- the dead letter's id as `dead-letters list` showed it
    stage         text NOT NULL CHECK (stage IN ('parse', 'ticket', 'reply')),
    event_type    text,                   -- NULL: the body was not a readable event
    event_ids     jsonb NOT NULL DEFAULT '{}',
    raw_id        bigint,
    request_id    bigint,
    outgoing_id   bigint,
    error         text,                   -- why the stage gave it up
    failed_at     text,                   -- the letter's x-deskmail-failed-at header
    reason        text NOT NULL CHECK (length(trim(reason)) > 0),
    discarded_by  text,
    discarded_at  timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz
);
CREATE INDEX discarded_events_recent ON discarded_events (discarded_at DESC, id DESC);
-- backlog() probes these per row of work in flight.
CREATE INDEX discarded_events_raw ON discarded_events (raw_id) WHERE raw_id IS NOT NULL;
CREATE INDEX discarded_events_outgoing ON discarded_events (outgoing_id) WHERE outgoing_id IS NOT NULL;
CREATE INDEX discarded_events_request ON discarded_events (request_id) WHERE request_id IS NOT NULL;
