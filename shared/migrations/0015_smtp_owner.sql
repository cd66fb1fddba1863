-- A mailbox's own SMTP settings ("custom settings for this mailbox" in its SMTP
-- section) are owned by that mailbox; named settings (deskmail smtp add, the
-- API's POST /smtp) have no owner and may be shared by any number of mailboxes.
-- The admin layer (services/admin/mailbox_smtp.py) never changes shared
-- settings from one mailbox's form unless the administrator says so.
ALTER TABLE smtp_settings ADD COLUMN owner_mailbox_id bigint REFERENCES mailboxes (id);
CREATE UNIQUE INDEX smtp_settings_one_per_owner ON smtp_settings (owner_mailbox_id)
    WHERE owner_mailbox_id IS NOT NULL;

-- Settings the mailbox form made before this column: named after the mailbox
-- ("<address> (mailbox)", "<address> (mailbox 2)") and used by it alone.
UPDATE smtp_settings s SET owner_mailbox_id = m.id
FROM mailboxes m
WHERE m.smtp_id = s.id AND NOT s.is_system
  AND s.name LIKE m.address || ' (mailbox%'
  AND (SELECT count(*) FROM mailboxes o WHERE o.smtp_id = s.id) = 1;
