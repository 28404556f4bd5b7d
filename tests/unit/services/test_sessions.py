"""Dashboard sessions: a login gives an id and a CSRF token; the token is checked again at
each request, so a revoked one ends its sessions at once; sessions expire; logout forgets."""

from __future__ import annotations

from typing import cast

import pytest

from jobd.domain.owners import Caller, Owner
from jobd.errors import Unauthorized
from jobd.services import sessions
from jobd.services.sessions import Sessions
from jobd.services.tokens import Tokens

ALICE = Caller(owner=Owner(uid=1001, user="alice", via="token"), admin=False)


class Bearers:
    """Tokens as far as sessions use them: bearer() answers for the tokens held."""

    def __init__(self) -> None:
        self.valid = {"jobd_alice"}

    async def bearer(self, authorization: str) -> Caller:
        if authorization.removeprefix("Bearer ") not in self.valid:
            raise Unauthorized("unknown token")
        return ALICE


async def test_a_session_lasts_as_long_as_its_token() -> None:
    tokens = Bearers()
    held = Sessions(cast(Tokens, tokens))
    session, who = await held.login(" jobd_alice ")
    assert who == ALICE and session.id != session.csrf
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("forged")
    assert not session.csrf_ok(None)
    assert await held.caller(session.id) == (session, ALICE)
    tokens.valid.clear()  # revoked
    assert await held.caller(session.id) is None
    tokens.valid.add("jobd_alice")
    assert await held.caller(session.id) is None, "forgotten, not resumed"
    with pytest.raises(Unauthorized):
        await held.login("jobd_nobody")


async def test_sessions_expire_and_logout_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    held = Sessions(cast(Tokens, Bearers()))
    first, _ = await held.login("jobd_alice")
    second, _ = await held.login("jobd_alice")
    held.logout(first.id)
    assert await held.caller(first.id) is None
    monkeypatch.setattr(sessions, "SESSION_HOURS", 0)
    assert await held.caller(second.id) is None
