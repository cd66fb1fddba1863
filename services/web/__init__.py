"""The admin web and HTTP API: one FastAPI app serving /api/v1 (JSON) and the admin pages.

Both the API and the pages call the service layer in shared/ (mailbox_admin,
categories, request_views, smtp_settings, broker_admin, ops_status, users),
the same functions the CLI calls, so the three accept the same values and
report the same errors in the same words.
"""
