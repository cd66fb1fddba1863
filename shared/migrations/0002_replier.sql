-- The replier's bookkeeping on outgoing mail.
--
-- updated_at: when the row last changed state. A staff reply left 'pending'
-- (its reply.queued event lost) or 'sending' (its replier died) is found by
-- the replier's sweep once it is older than a grace period.
ALTER TABLE outgoing_mail ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX outgoing_staff_unsent ON outgoing_mail (updated_at)
    WHERE kind = 'staff_reply' AND state IN ('pending', 'sending');

-- The per-recipient rate limit counts every auto-reply that went out or may
-- have (pending, sending, sent, unknown), not only 'sent' ones: the index of
-- 0001 covered 'sent' only.
DROP INDEX IF EXISTS outgoing_auto_reply_rate;
CREATE INDEX outgoing_auto_reply_recipient ON outgoing_mail (lower(to_address), created_at)
    WHERE kind = 'auto_reply';
