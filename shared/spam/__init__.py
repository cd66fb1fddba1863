"""Spam verdicts: rspamd's HTTP API, upstream servers' verdict headers, DMARC."""
