"""What decides about a mail before it becomes a request: sender lists and mail rules.

Both are applied by the ticketer (services/ticketer) and edited through the
admin layer (services/admin); the code that matches lives here so both use
the same, and neither imports the other.
"""
