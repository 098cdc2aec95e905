"""API tokens, one-time sign-in links and web sessions. May import: db."""
