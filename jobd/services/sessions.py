"""The dashboard's logins. A person logs in with an API token of theirs (or the daemon's);
the answer is a session: a random id kept in an HttpOnly, SameSite=Strict cookie, and a CSRF
token the pages send back with every action. Sessions live in memory (a restart logs
everyone out) and for SESSION_HOURS at most; each request checks the token again, so a
revoked or expired token ends its sessions at once."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from jobd.domain.owners import Caller
from jobd.errors import Unauthorized
from jobd.services.tokens import Tokens

SESSION_HOURS = 12
MAX_SESSIONS = 10_000  # the oldest go first past this


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str  # sent back by every state-changing request the pages make
    token: str  # the bearer token logged in with, checked again at each request
    started: float

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self._by_id: dict[str, Session] = {}

    async def login(self, token: str) -> tuple[Session, Caller]:
        """A session for this token; Unauthorized when it opens nothing."""
        caller = await self.tokens.bearer(f"Bearer {token.strip()}")
        while len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            token=token.strip(),
            started=time.time(),
        )
        self._by_id[session.id] = session
        return session, caller

    async def caller(self, session_id: str) -> tuple[Session, Caller] | None:
        """Who the session is, while it and its token last; None (and forgotten) after."""
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if time.time() - session.started > SESSION_HOURS * 3600:
            self.logout(session_id)
            return None
        try:
            return session, await self.tokens.bearer(f"Bearer {session.token}")
        except Unauthorized:
            self.logout(session_id)
            return None

    def logout(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)
