"""What an outgoing mail says: the row the replier sends from, and its parts rendered from a template.

The replier composes each mail from these (services/replier/stage.py), and
the admin layer previews a staff reply with the very same code
(services/admin/replies.py), so the preview is what the SMTP server gets:
From (the mailbox's account name with its placeholders filled in, the
agent's name on a staff reply), Subject (with the request tag), the text and
the HTML body.

The sender: `mailbox.name` in templates is the account name as it reads
when no agent acts (an auto-reply); an account name that refers to
`mailbox.name` itself sees the address there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from shared import templates
from shared.tags import with_tag

log = logging.getLogger(__name__)

ROWS_SQL = """
SELECT o.id AS outgoing_id, o.kind, o.state, o.message_id, o.to_address, o.to_name, o.cc,
       o.agent_name, o.body_text AS reply_text,
       r.id AS request_id, r.subject, r.status, r.mailbox_id,
       m.address AS mailbox_address, m.from_name, m.smtp_id,
       c.name AS customer_name,
       h.message_id AS parent_message_id, h.subject AS message_subject,
       h.body_text AS message_body,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(p.parsed->'references', '[]'::jsonb)))
         AS parent_references
FROM outgoing_mail o
JOIN requests r ON r.id = o.request_id
JOIN mailboxes m ON m.id = r.mailbox_id
LEFT JOIN customers c ON c.id = r.customer_id
LEFT JOIN history h ON h.id = o.history_id
LEFT JOIN parsed_messages p ON p.raw_id = h.raw_id
WHERE o.id = ANY(%s)
"""


def rows(conn: psycopg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """The outgoing mails with everything their composing needs (ROWS_SQL), in no particular order."""
    return conn.execute(ROWS_SQL, (ids,)).fetchall()


@dataclass(frozen=True)
class Parts:
    from_name: str
    subject: str
    body_text: str
    body_html: str  # "": no HTML part


def render(row: dict[str, Any], tmpl: templates.Template) -> Parts:
    """The mail's From name, subject (tagged) and bodies; RenderError when the template fails."""
    staff = row["kind"] == "staff_reply"
    customer_name = row["customer_name"] or row["to_name"] or ""

    def context(mailbox_name: str, agent: str | None) -> dict[str, Any]:
        return templates.build_context(
            request_id=row["request_id"], request_subject=row["subject"],
            request_status=row["status"], customer_name=customer_name,
            customer_address=row["to_address"], mailbox_name=mailbox_name,
            mailbox_address=row["mailbox_address"], agent_name=agent,
            message_subject=row["message_subject"] or "",
            message_body_text=row["message_body"] or "",
            reply_body_text=(row["reply_text"] or "") if staff else None,
        )

    mailbox_name = _from_name(row, context(row["mailbox_address"], None))
    ctx = context(mailbox_name or row["mailbox_address"], row["agent_name"] if staff else None)
    from_name = _from_name(row, ctx) if staff else mailbox_name
    rendered = templates.render(tmpl, ctx)
    return Parts(from_name, with_tag(rendered.subject, row["request_id"]), rendered.body_text,
                 rendered.body_html or "")


def _from_name(row: dict[str, Any], ctx: dict[str, Any]) -> str:
    try:
        return templates.render_from_name(row["from_name"], ctx)
    except templates.RenderError as exc:
        # The account name is checked when the mailbox is saved; one saved
        # before that check existed still must not stop the mail.
        log.error("mailbox account name fails; sending with the address only",
                  extra={"mailbox_id": row["mailbox_id"], "problem": str(exc)})
        return ""
