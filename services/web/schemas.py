"""The JSON shapes of /api/v1, for the OpenAPI document and for checking our answers.

Request bodies declare the types an API client should send, but accept any
JSON value: the admin layer decides what is valid and words the error, so
the API, the pages and the CLI answer a wrong value in the same words (a
`port` of "abc" gets the same message everywhere, not pydantic's own).
Routes hand the admin layer plain values (`body_of`), never these classes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


def _lenient(schema: dict[str, Any], description: str) -> Any:
    return Annotated[Any, WithJsonSchema({**schema, "description": description})]


_STR = {"type": "string"}
_INT = {"type": "integer"}
_OPT_INT = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
_BOOL = {"type": "boolean"}
_OPT_STR = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def body_of(body: BaseModel | None) -> dict[str, Any]:
    """The fields a client sent (and only those), as plain values for the admin layer."""
    return body.model_dump(exclude_unset=True) if body is not None else {}


class MailboxIn(BaseModel):
    """A mailbox's settings (the seed page's fields); on update send only what changes."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"from_name": "ACME Support", "address": "support@example.com",
                      "account_type": "imap", "security": "tls", "host": "imap.example.com",
                      "username": "support@example.com", "password": "(write-only)",
                      "folder": "INBOX", "archive": True, "archive_folder": "deskmail_archive"}]})

    from_name: _lenient(_STR, "Account name shown as sender; may hold placeholders such as "
                        "{{ agent.name if agent else mailbox.name }}") = None
    address: _lenient(_STR, "the mailbox's address, e.g. support@example.com") = None
    folder: _lenient(_STR, "folder to import from (INBOX)") = None
    archive: _lenient(_BOOL, "IMAP: move imported mail to the archive folder instead of deleting it") = None
    archive_folder: _lenient(_STR, "IMAP folder imported mail is moved to") = None
    host: _lenient(_STR, "IMAP/POP3 server") = None
    username: _lenient(_STR, "login name") = None
    password: _lenient({"type": "string", "writeOnly": True},
                       "write-only; blank or absent keeps the saved password") = None
    account_type: _lenient({"type": "string", "enum": ["imap", "pop3", "maildir"]}, "protocol") = None
    port: _lenient(_OPT_INT, "port; null means the usual port for the type and security") = None
    security: _lenient({"type": "string", "enum": ["none", "starttls", "tls"]}, "connection security") = None
    allow_self_signed: _lenient(_BOOL, "accept a certificate that cannot be verified (off by default)") = None
    category_id: _lenient(_OPT_INT, "default category of new requests (an id, or a name: created if missing)") = None
    auto_reply: _lenient(_BOOL, "send an auto-reply to new requests") = None
    smtp_id: _lenient({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                      "how it sends: 'system' (or null) the system default; 'custom' its own settings"
                      " (the smtp_ fields); the id or name of shared named settings") = None
    smtp_host: _lenient(_STR, "SMTP section: server of its own settings (or of the shared ones, with smtp_edit)"
                        ) = None
    smtp_port: _lenient(_OPT_INT, "SMTP section: port; null means 25/587/465 by security") = None
    smtp_security: _lenient({"type": "string", "enum": ["none", "starttls", "tls"]}, "SMTP section") = None
    smtp_username: _lenient(_OPT_STR, "SMTP section: login; null sends without logging in") = None
    smtp_password: _lenient({"type": "string", "writeOnly": True}, "SMTP section: write-only") = None
    smtp_allow_self_signed: _lenient(_BOOL, "SMTP section: accept a certificate that cannot be verified") = None
    smtp_edit: _lenient({"type": "string", "enum": ["shared", "copy"]},
                        "SMTP section fields that change shared named settings: 'shared' changes them for every"
                        " mailbox that uses them, 'copy' gives this mailbox its own copy (required then)") = None
    enabled: _lenient(_BOOL, "poll this mailbox") = None
    poll_interval: _lenient(_INT, "seconds between polls") = None
    max_per_poll: _lenient(_INT, "messages imported per poll at most") = None
    max_message_bytes: _lenient(_INT, "larger mail is imported as headers only") = None
    auth_method: _lenient({"type": "string", "enum": ["password", "oauth2"]},
                          "how to sign in: the password, or OAuth2 (the oauth_ settings)") = None
    oauth_provider: _lenient({"type": "string", "enum": ["microsoft", "google", "generic"]},
                             "OAuth2 provider preset (endpoints and scopes filled in); generic takes the URLs") = None
    oauth_flow: _lenient({"type": "string", "enum": ["authorization_code", "client_credentials", "refresh_token"]},
                         "how tokens are obtained: authorization_code (Connect), client_credentials"
                         " (Microsoft app-only) or refresh_token (oauth_refresh_token, pasted)") = None
    oauth_tenant: _lenient(_OPT_STR, "Microsoft directory (tenant) id or domain") = None
    oauth_client_id: _lenient(_STR, "the application (client) id the provider gave you") = None
    oauth_client_secret: _lenient({"type": "string", "writeOnly": True},
                                  "write-only; blank or absent keeps the saved client secret") = None
    oauth_scopes: _lenient(_OPT_STR, "space-separated scopes; null or blank: the provider's mail scopes") = None
    oauth_token_url: _lenient(_OPT_STR, "token endpoint (generic; overrides a preset)") = None
    oauth_authorize_url: _lenient(_OPT_STR, "authorization endpoint (generic; overrides a preset)") = None
    oauth_mechanism: _lenient({"type": "string", "enum": ["auto", "xoauth2", "oauthbearer"]},
                              "SASL mechanism; auto: what the server offers") = None
    oauth_refresh_token: _lenient({"type": "string", "writeOnly": True},
                                  "write-only; a refresh token to sign in with (flow refresh_token)") = None


class SharedWith(BaseModel):
    id: int
    address: str


class MailboxSmtp(BaseModel):
    use: Literal["system", "custom", "named"] = Field(
        description="system: the system default; custom: its own settings; named: settings it shares")
    id: int | None
    name: str | None
    shared_with: list[SharedWith] = Field(description="named: the other mailboxes that send with them")


class MailboxOut(BaseModel):
    id: int
    from_name: str
    address: str
    folder: str
    archive: bool
    archive_folder: str
    host: str
    username: str
    account_type: str
    port: int | None
    effective_port: int | None
    security: str
    allow_self_signed: bool
    category_id: int | None
    category: str | None
    auto_reply: bool
    smtp_id: int | None
    enabled: bool
    poll_interval: int
    max_per_poll: int
    max_message_bytes: int
    has_password: bool = Field(description="the password itself is never shown")
    auth_method: str = Field("password", description="password or oauth2")
    needs_reconnect: bool = Field(False, description="OAuth2: the provider refused the sign-in; Connect again")
    oauth_provider: str | None = None
    oauth_flow: str | None = None
    oauth_tenant: str | None = None
    oauth_client_id: str | None = None
    oauth_token_url: str | None = Field(None, description="as set; null means the provider's preset")
    oauth_authorize_url: str | None = Field(None, description="as set; null means the provider's preset")
    oauth_scopes: str | None = Field(None, description="as set; null means the provider's mail scopes")
    oauth_mechanism: str | None = None
    oauth_has_client_secret: bool = Field(False, description="the client secret itself is never shown")
    oauth_connected: bool = Field(False, description="OAuth2: a refresh token (or client credentials) is in place")
    oauth_reconnect_reason: str | None = Field(None, description="why the mailbox must be connected again")
    oauth_token_expires_at: dt.datetime | None = Field(None, description="when the current access token expires")
    last_poll_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_error: str | None
    last_error_at: dt.datetime | None
    failures_in_row: int
    mail_24h: int = Field(description="mail imported in the last 24 hours")
    health: str = Field(description="ok, failing, disabled or new")
    created_at: dt.datetime
    smtp: MailboxSmtp | None = Field(None, description="how it sends (one mailbox only; not in the list)")


class Step(BaseModel):
    step: str = Field(description="dns, tcp, tls, starttls, connect, login, folder, archive_folder, smtp_login")
    ok: bool
    detail: str


class TestResult(BaseModel):
    ok: bool
    steps: list[Step]


class Folders(BaseModel):
    ok: bool
    folders: list[str]
    step: str | None = Field(description="the step that failed (dns, tcp, tls, starttls, login, ...)")
    detail: str | None


class Poll(BaseModel):
    """One poll of a mailbox, from the fetcher's poll log (the newest 100 are kept)."""

    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: Literal["ok", "partial", "failed"] = Field(
        description="ok; partial: imported, but the server could not deliver some messages (see error);"
                    " failed: stopped at `step`")
    fetched: int = Field(description="messages imported")
    removed: int = Field(description="imported messages archived or deleted on the server")
    step: str | None = Field(description="where the poll stopped or stumbled: dns, tcp, tls, starttls, login,"
                                         " folder, fetch, ...")
    error: str | None


class TestMailIn(MailboxIn):
    test_to: _lenient(_STR, "where the test mail goes (default: the mailbox's own address)") = None


class FromNamePreviewIn(BaseModel):
    from_name: _lenient(_STR, "account name with placeholders") = None


class FromNamePreview(BaseModel):
    staff_reply: str | None = Field(description="as sent with a staff reply (agent Grace Hopper)")
    auto_reply: str | None = Field(description="as sent with an auto-reply (no agent)")
    error: str | None


class CategoryIn(BaseModel):
    name: _lenient(_STR, "the category's name") = None


class CategoryOut(BaseModel):
    id: int
    name: str
    created_at: dt.datetime
    mailboxes: int
    requests: int


class RequestItem(BaseModel):
    id: int
    subject: str
    status: str
    unparsed: bool
    spam: bool = Field(description="in the spam state: no auto-reply; release or delete it (/spam)")
    spam_reason: str | None = Field(description="who said spam, e.g. \"rspamd: score 15, action reject\"")
    mailbox_id: int | None
    mailbox: str | None
    category_id: int | None
    category: str | None
    customer: str | None
    entries: int
    failed_outgoing: int = Field(description="outgoing mail that failed (a refusal or a bounce)")
    created_at: dt.datetime
    updated_at: dt.datetime


class RequestPage(BaseModel):
    items: list[RequestItem]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page; null on the last")


class Attachment(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None
    inline: bool


class HistoryEntry(BaseModel):
    id: int
    kind: str
    outcome: str | None
    message_id: str | None
    from_address: str | None
    from_name: str | None
    subject: str | None
    body_text: str
    has_html: bool = Field(description="the mail came with an HTML part as well")
    automatic: str | None
    author: str | None
    raw_id: int | None
    created_at: dt.datetime
    attachments: list[Attachment]


class Outgoing(BaseModel):
    id: int
    kind: str
    message_id: str | None
    to_address: str
    cc: list[str] = Field(description="a staff reply's Cc; an auto-reply has none")
    agent_name: str | None
    state: str
    reason: str | None = Field(description="why it was skipped, or why it failed")
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None


class ReplyDefaults(BaseModel):
    to: str | None = Field(description="the address a staff reply goes to (null: the request has none)")
    cc: list[str] = Field(description="its Cc unless the agent changes it: the other people of the conversation")


class RequestDetail(BaseModel):
    id: int
    subject: str
    status: str
    unparsed: bool
    spam: bool
    spam_reason: str | None
    mailbox_id: int | None
    mailbox: str | None
    category_id: int | None
    category: str | None
    customer: str | None
    customer_name: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    people: list[str] = Field(description="everyone on the conversation (From, To, Cc) but our own mailboxes")
    reply: ReplyDefaults
    history: list[HistoryEntry]
    outgoing: list[Outgoing]


class RequestPatch(BaseModel):
    category_id: _lenient(_OPT_INT, "file the request under this category (null: none)") = None


class ReplyIn(BaseModel):
    body: _lenient(_STR, "the reply's text") = None
    agent: _lenient(_STR, "the agent's name shown as the sender (default: the API user's name)") = None
    cc: _lenient({"anyOf": [{"type": "array", "items": _STR}, _STR, {"type": "null"}]},
                 "Cc: absent or null for the other people of the conversation; a list (or a comma-separated"
                 " text) of addresses; [] for the customer alone") = None


class Queued(BaseModel):
    outgoing_id: int
    request_id: int
    to: str
    cc: list[str]
    note: str | None = Field(description="null, or why the replier could not be told at once (it is sent anyway)")


class ReplyPreview(BaseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    cc: list[str]
    subject: str
    body_text: str
    body_html: str = Field(description="empty: the reply is plain text only")


class SmtpIn(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"host": "smtp.example.com", "port": 587, "security": "starttls",
                      "username": "support@example.com", "password": "(write-only)"}]})

    name: _lenient(_STR, "name of custom settings (ignored for the system default)") = None
    host: _lenient(_STR, "SMTP server") = None
    port: _lenient(_OPT_INT, "port; null means 25/587/465 for none/starttls/tls") = None
    security: _lenient({"type": "string", "enum": ["none", "starttls", "tls"]}, "connection security") = None
    username: _lenient({"anyOf": [_STR, {"type": "null"}]}, "login; null sends without logging in") = None
    password: _lenient({"type": "string", "writeOnly": True}, "write-only; blank keeps the saved one") = None
    allow_self_signed: _lenient(_BOOL, "accept a certificate that cannot be verified") = None
    auth_method: _lenient({"type": "string", "enum": ["password", "oauth2"]}, "password or oauth2") = None
    oauth_provider: _lenient({"type": "string", "enum": ["microsoft", "google", "generic"]}, "OAuth2 provider") = None
    oauth_flow: _lenient({"type": "string", "enum": ["refresh_token", "client_credentials", "authorization_code"]},
                         "refresh_token (oauth_refresh_token, pasted) or client_credentials") = None
    oauth_tenant: _lenient(_OPT_STR, "Microsoft directory (tenant) id or domain") = None
    oauth_client_id: _lenient(_STR, "the application (client) id") = None
    oauth_client_secret: _lenient({"type": "string", "writeOnly": True}, "write-only; blank keeps the saved one") = None
    oauth_scopes: _lenient(_OPT_STR, "space-separated scopes; blank: the provider's") = None
    oauth_token_url: _lenient(_OPT_STR, "token endpoint (generic; overrides a preset)") = None
    oauth_authorize_url: _lenient(_OPT_STR, "authorization endpoint (generic)") = None
    oauth_mechanism: _lenient({"type": "string", "enum": ["auto", "xoauth2", "oauthbearer"]}, "SASL mechanism") = None
    oauth_refresh_token: _lenient({"type": "string", "writeOnly": True}, "write-only; a refresh token") = None


class SmtpOut(BaseModel):
    id: int
    name: str
    is_system: bool
    host: str
    port: int | None
    effective_port: int
    security: str
    username: str | None
    allow_self_signed: bool
    has_password: bool
    mailboxes: int
    owner_mailbox_id: int | None = Field(None, description="a mailbox's own settings: that mailbox")
    owner_address: str | None = None
    updated_at: dt.datetime
    auth_method: str = "password"
    oauth_provider: str | None = None
    oauth_flow: str | None = None
    oauth_tenant: str | None = None
    oauth_client_id: str | None = None
    oauth_token_url: str | None = None
    oauth_authorize_url: str | None = None
    oauth_scopes: str | None = None
    oauth_mechanism: str | None = None
    oauth_has_client_secret: bool = Field(False, description="the client secret itself is never shown")
    oauth_connected: bool = False
    oauth_reconnect_reason: str | None = None
    oauth_token_expires_at: dt.datetime | None = None


class TemplateIn(BaseModel):
    subject: _lenient(_STR, "Jinja2 (sandboxed) subject") = None
    body_text: _lenient(_STR, "Jinja2 (sandboxed) text body") = None
    body_html: _lenient(_STR, "Jinja2 (sandboxed, autoescaped) HTML body") = None


class TemplateOut(BaseModel):
    name: str
    mailbox_id: int | None
    source: str = Field(description="shipped (Deskmail's own), system (the system override) "
                        "or mailbox (this mailbox's override)")
    subject: str
    body_text: str
    body_html: str


class Rendered(BaseModel):
    subject: str
    body_text: str
    body_html: str


class DeadLetterOut(BaseModel):
    id: str
    stage: str
    queue: str
    error: str
    failed_at: str
    event_type: str | None
    ids: dict[str, Any]
    event_error: str | None


class ReplayIn(BaseModel):
    stage: _lenient({"anyOf": [{"type": "string", "enum": ["parse", "ticket", "reply"]}, {"type": "null"}]},
                    "only this stage's dead letters") = None
    ids: _lenient({"anyOf": [{"type": "array", "items": _STR}, {"type": "null"}]},
                  "only these ids (or id prefixes); null: all of the stage") = None


class DiscardIn(BaseModel):
    reason: _lenient(_STR, "why it is discarded (required); recorded with who discarded it") = None


class DiscardedOut(BaseModel):
    id: int
    letter_id: str = Field(description="the dead letter's id as it was listed")
    stage: str
    event_type: str | None = Field(description="null: the message was not a readable event")
    event_ids: dict[str, Any]
    raw_id: int | None
    request_id: int | None
    outgoing_id: int | None
    error: str | None = Field(description="why the stage gave it up")
    failed_at: str | None
    reason: str
    discarded_by: str | None
    discarded_at: dt.datetime
    confirmed_at: dt.datetime | None = Field(
        description="when the broker confirmed the removal; null: recorded, but the removal was not seen"
        " to succeed (the letter may still be listed)")


class Handled(BaseModel):
    count: int
    ids: list[str]


class QueueOut(BaseModel):
    name: str
    stage: str
    kind: str
    messages: int | None
    consumers: int | None
    publish_rate: float | None = Field(None, description="messages/s in (needs DESKMAIL_RABBITMQ_API)")
    deliver_rate: float | None = Field(None, description="messages/s delivered (needs DESKMAIL_RABBITMQ_API)")
    waiting: int | None = Field(
        default=None, description="work queue: items waiting for this stage in the database (mail stored"
        " but not parsed, parsed but not recorded, replies pending or sending), retries and dead letters"
        " included; other queues: null")
    oldest_age_seconds: float | None = Field(
        description="work queue: age of the oldest of those items (since it was stored, parsed or"
        " queued); dead-letter queue: age of the oldest dead letter; null: nothing waiting")
    problem: str | None


class MailboxHealthOut(BaseModel):
    id: int
    address: str
    enabled: bool
    state: str
    detail: str
    last_success_at: dt.datetime | None
    needs_reconnect: bool = False


class StatusOut(BaseModel):
    needs_attention: bool
    problems: list[str]
    queues: list[QueueOut]
    mailboxes: list[MailboxHealthOut]


# ---- mail rules, sender lists, spam (issue 16) ---------------------------------------------

_LINES = {"anyOf": [{"type": "array", "items": {"anyOf": [{"type": "object"}, {"type": "string"}]}},
                    {"type": "string"}]}


class RuleIn(BaseModel):
    """A mail rule; on update send only what changes (conditions and actions are replaced whole)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "name": "Invoices", "mailbox_id": None, "match": "all",
        "conditions": ["subject regex invoice \\d+", {"field": "attachments", "value": True}],
        "actions": ["category Billing", "stop"]}]})

    name: _lenient(_STR, "unique within its scope") = None
    mailbox_id: _lenient({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                         "the mailbox whose rule it is; null or 'system': system-wide (runs first)") = None
    position: _lenient(_OPT_INT, "its place in its list, lower first (default: last)") = None
    match: _lenient({"type": "string", "enum": ["all", "any"]}, "all conditions, or any one") = None
    enabled: _lenient(_BOOL, "off: kept but not applied") = None
    conditions: _lenient(_LINES, "objects {field, op, value, negate, header} or text lines such as"
                                 " 'subject contains invoice', 'header:X-Priority equals 1', 'attachments yes'") = None
    actions: _lenient(_LINES, "objects {action, value} or text lines: category NAME, spam, no_auto_reply, close,"
                              " note TEXT, discard REASON, stop") = None


class RuleOut(BaseModel):
    id: int
    mailbox_id: int | None
    mailbox: str | None
    position: int
    name: str
    enabled: bool
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    condition_lines: list[str]
    action_lines: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class DryRunIn(RuleIn):
    last: _lenient(_INT, "how many of the mailbox's newest mails (1-1000, default 50)") = None


class DryRunRow(BaseModel):
    raw_id: int
    request_id: int | None
    received_at: dt.datetime
    sender: str | None = Field(alias="from")
    subject: str
    matched: bool
    would: str | None = Field(description="the history line the rule would have written")


class SenderIn(BaseModel):
    list: _lenient({"type": "string", "enum": ["allow", "block"]}, "allow or block") = None
    kind: _lenient({"type": "string", "enum": ["address", "domain", "pattern"]},
                   "address (any case), domain (and subdomains), pattern (* and ?)") = None
    value: _lenient(_STR, "e.g. ceo@partner.example, spam.example, *@*.newsletter.example") = None
    note: _lenient(_STR, "why, for the next administrator") = None
    mailbox_id: _lenient({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                         "the mailbox it applies to; null: system-wide") = None


class SenderOut(BaseModel):
    id: int
    mailbox_id: int | None
    mailbox: str | None
    list: str
    kind: str
    value: str
    note: str
    created_by: str | None
    created_at: dt.datetime


class SpamRequest(BaseModel):
    id: int
    subject: str
    spam_reason: str | None
    mailbox_id: int | None
    mailbox: str | None
    customer: str | None
    created_at: dt.datetime
    score: float | None
    action: str | None


class HeldMail(BaseModel):
    raw_id: int
    mailbox_id: int | None
    mailbox: str | None
    kind: str = Field(description="blocked (a sender list) or discarded (a rule)")
    reason: str
    from_address: str | None
    subject: str | None
    created_at: dt.datetime
    released_at: dt.datetime | None
    released_by: str | None
    request_id: int | None


class Taught(BaseModel):
    id: int
    verdict: str
    learned: bool | None = Field(description="null: rspamd is off; false: not learned (outcome says why)")
    outcome: str


class SpamDecision(BaseModel):
    id: int
    announced: bool = Field(description="false: the broker did not answer; the replier's sweep tells the"
                                        " stages within a minute")
    taught: list[Taught]


class ThresholdIn(BaseModel):
    spam_threshold: _lenient({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
                             "rspamd score at or above which mail is spam; null: rspamd's own verdict") = None


class ThresholdOut(BaseModel):
    id: int
    address: str
    spam_threshold: float | None


class SpamHealth(BaseModel):
    configured: bool
    unchecked: int = Field(description="mail rspamd did not check in the last hour")
    last_problem: str | None
    last_at: dt.datetime | None
    needs_attention: bool
    summary: str
