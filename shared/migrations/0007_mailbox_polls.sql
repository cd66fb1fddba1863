-- A short log of each mailbox's polls, for operators (issue 10): the API's
-- /mailboxes/{id}/polls, the admin web's mailbox page, `deskmail mailbox show`.
--
-- The fetcher writes one row per poll in the statement that records the
-- poll's outcome on the mailbox (services/fetcher/lease.py), and in that same
-- statement deletes the mailbox's rows beyond the newest 100: the table stays
-- small however often an IDLE session polls, and the log never disagrees with
-- the mailbox's last_poll_at / last_error.
--
-- outcome: ok; partial (imported, but the server could not deliver some
-- messages: `error` names them); failed (nothing more was done; `step` says
-- where it stopped: dns, tcp, tls, login, folder, fetch, ...).
CREATE TABLE mailbox_polls (
    id           bigserial PRIMARY KEY,
    mailbox_id   bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('ok', 'failed', 'partial')),
    fetched      integer NOT NULL DEFAULT 0,
    removed      integer NOT NULL DEFAULT 0,
    step         text,
    error        text
);
-- Newest first per mailbox: both the readers and the fetcher's trimming walk it.
CREATE INDEX mailbox_polls_recent ON mailbox_polls (mailbox_id, finished_at DESC, id DESC);
