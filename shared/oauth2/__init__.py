"""OAuth2 sign-in for mailboxes and SMTP settings (Microsoft 365, Google, any standard provider).

    providers.py  presets that fill in endpoints and scopes; settings validation
    pkce.py       the authorization-code flow's verifier, challenge and state
    client.py     the token endpoint: code, refresh_token and client_credentials
                  grants, and what each failure means (retry later, reconnect, fix settings)
    grants.py     the oauth_grants rows: settings, encrypted tokens, TokenSource
                  (a valid access token, refreshed before expiry and after a refusal)
    sasl.py       XOAUTH2 / OAUTHBEARER strings and the IMAP, POP3 and SMTP dialogues
    authorize.py  start and finish the authorization-code flow (admin web, CLI)
    web.py        a FastAPI router with the Connect and callback endpoints

Tokens and client secrets are encrypted at rest and never logged, shown or
returned: errors name the step and the provider's error code, not the token.
"""
