"""Each user holds at most so many streaming connections; a closed one frees its slot, and
other users are not held up."""

from __future__ import annotations

import contextlib

import pytest

from jobd.api.streams import StreamSlots
from jobd.domain.owners import Caller, Owner
from jobd.errors import TooManyRequests

ALICE = Caller(owner=Owner(uid=2001, user="alice", via="unix"), admin=False)
BOB = Caller(owner=Owner(uid=2002, user="bob", via="token"), admin=False)


def test_a_user_past_the_cap_is_refused_until_one_closes() -> None:
    slots = StreamSlots(limit=2)
    with contextlib.ExitStack() as held:
        held.enter_context(slots.held(ALICE))
        second = held.enter_context(contextlib.ExitStack())
        second.enter_context(slots.held(ALICE))
        with pytest.raises(TooManyRequests, match="alice has 2 of 2 streaming"), slots.held(ALICE):
            pass
        with slots.held(BOB):
            pass
        second.close()
        with slots.held(ALICE):
            pass
