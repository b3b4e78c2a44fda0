"""Console sessions: the admin token exchanged once for a cookie, kept server-side.

A session is a random id in an HttpOnly, SameSite=Strict cookie; the record (expiry
and the session's CSRF token) lives in LMDB beside the data, so every worker process
on the data dir sees the same sessions and a logout ends the session everywhere,
not only in the browser that sent it. Sessions die after ``SESSION_TTL_MS``.
"""

from __future__ import annotations

import hmac
import secrets

from msgspec import Struct

from host.common.clock import Clock, WallClock
from host.services.console_sessions import ConsoleSessions, SessionRecord

COOKIE = "nimbus_console"
#: the login form's double-submit cookie (a CSRF token before there is a session)
LOGIN_COOKIE = "nimbus_console_login"
SESSION_TTL_MS = 12 * 3600 * 1000


class Session(Struct, frozen=True):
    """One logged-in browser: its id (the cookie), CSRF token and expiry."""

    id: str
    csrf: str
    expires_ms: int

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented), self.csrf)


class SessionStore:
    """Creates, finds and ends sessions; a session made under another admin token, or
    past its expiry, is not found."""

    def __init__(self, table: ConsoleSessions, token: str, clock: Clock | None = None) -> None:
        self._table = table
        self._clock = clock or WallClock()
        self._token = token.encode()
        # a session outlives neither its token: one made under an old token is refused
        self._fingerprint = hmac.new(self._token, b"console-session", "sha256").hexdigest()[:16]

    def check_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.strip().encode(), self._token)

    def create(self) -> Session:
        now = self._clock.now_ms()
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + SESSION_TTL_MS
        )
        record = SessionRecord(session.csrf, session.expires_ms, self._fingerprint)
        self._table.put(session.id, record, now)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        found = self._table.get(session_id)
        if found is None:
            return None
        if found.expires_ms <= self._clock.now_ms() or found.fingerprint != self._fingerprint:
            return None
        return Session(session_id, found.csrf, found.expires_ms)

    def end(self, session_id: str) -> None:
        self._table.delete(session_id)
