"""Helpers for tests that talk to real servers: the private Dovecot
(``dovecot``), an in-process SMTP sink (``smtp``), their shared self-signed
certificate (``certs``) and pytest fixtures over all three (``fixtures``).
"""
