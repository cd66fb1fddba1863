"""The service layer that the CLI, the JSON API and the admin pages all call.

One function per operation, so the three front ends accept the same values
and report the same errors in the same words.
"""
