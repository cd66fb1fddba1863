-- A staff reply's Cc (issue 20): the other people of the conversation (the
-- request's people less Deskmail's own mailboxes and the customer it goes to),
-- or the addresses the agent chose. Auto-replies have none: they go to the
-- sender alone.
ALTER TABLE outgoing_mail ADD COLUMN cc text[] NOT NULL DEFAULT '{}';
