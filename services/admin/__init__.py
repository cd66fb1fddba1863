"""The admin layer: the one door through which the CLI, the JSON API and the admin pages act.

As in Mailman, where app/lifecycle.py serves both the REST layer and the CLI:
every `deskmail` command, every /api/v1 route and every page is a thin
adapter (parse its input, call a function here, render the answer), so the
three accept the same values and refuse wrong ones with the same words
(tests/integration/test_web_parity.py holds them to it). Front ends contain no
SQL and call no other front end's functions; stages never import this layer.

One module per area:

    mailboxes      add, edit, view, list, enable/disable, remove, recent polls, From-name preview
    mailbox_smtp   a mailbox's SMTP section: system default, its own settings, or shared named ones
    probes         trying values on the real servers: test connection, list folders, SMTP login,
                   send a test mail (the only module here that talks to mail servers)
    smtp           SMTP settings: the system default and named settings
    templates      templates per level (system, mailbox): view, save, revert, preview
    requests       the request list (filters, cursor) and one request in full; unmatched mail
    categories     add, rename, delete (with a target for what uses it), move requests
    replies        staff replies: queue, announce
    operations     status, queues, dead letters (list, show, replay, discard), discarded record
    oauth_connect  the OAuth2 Connect flow of a mailbox
    users          administrators, sessions, API tokens, login throttling
    status, dead_letters, form_values, errors: the rules and helpers the modules above share

The shape every function follows (new areas, e.g. rules or sender lists, follow it too):

- It takes plain values: a Mapping[str, Any] as a front end received it (form
  strings, JSON values, command-line text: `form_values.coerce` converts only
  what is clearly meant), ints and strs; never a web schema class.
- It takes a psycopg connection inside the caller's transaction when it only
  reads or writes the database (the caller commits: `with transaction(pool)`
  in the CLI, `c.tx()` in the web), or the App (pool, broker, topology,
  settings) / the pool when it needs the broker, the network or its own
  transactions.
- It returns plain dicts, lists or ids; timestamps stay datetimes.
- It raises `errors.InvalidSetting({field: message})` for bad values (every
  problem at once), `errors.NotFound`, `errors.Conflict` (a duplicate, or
  something still in use) and `errors.Unavailable`; front ends map them the
  same way (CLI exit 2/1, HTTP 422/404/409/503, the form shown again).
- A new setting is added to the parity test, so form, API and CLI are shown
  to accept and refuse it alike.
"""
