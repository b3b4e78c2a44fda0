"""The web console at ``/_console``: server-rendered pages over the admin API."""
