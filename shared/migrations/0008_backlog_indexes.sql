-- The status page's "oldest waiting work" per stage (services/admin/status.py
-- `backlog`) reads the ledger, not the queues: peeking into a quorum queue
-- counts as a delivery. These partial indexes hold only the work still in
-- flight, so the look stays cheap however many mails and replies are done.
--
-- Mail stored or published but not yet committed by the ticketer: waiting
-- for the parse or the ticket stage. (0001's remote_messages_todo also holds
-- every 'committed' row of a mailbox that does not archive, i.e. all of them.)
CREATE INDEX remote_messages_in_flight ON remote_messages (raw_id)
    WHERE state IN ('stored', 'published');

-- Outgoing mail not yet handed to SMTP, auto-replies included (0002's
-- outgoing_staff_unsent covers staff replies only).
CREATE INDEX outgoing_mail_unsent ON outgoing_mail (created_at)
    WHERE state IN ('pending', 'sending');
