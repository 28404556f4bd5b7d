"""A run's owner, read from the user database at most every ACCOUNT_SECONDS; an owner the
machine no longer knows is refused, never run with the daemon's powers."""

from __future__ import annotations

import os
import pwd
from typing import Any

import pytest

from jobd.domain.identity import RunAs
from jobd.errors import Forbidden
from jobd.node import accounts


def test_the_user_database_is_read_once_in_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.getuid() != 0:
        pytest.skip("an owner's run is another user's only under a root daemon")
    reads: list[int] = []
    real = pwd.getpwuid

    def counted(uid: int) -> Any:
        reads.append(uid)
        return real(uid)

    clock = [1000.0]
    monkeypatch.setattr(accounts.pwd, "getpwuid", counted)
    monkeypatch.setattr(accounts.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(accounts, "_accounts", {})
    nobody = pwd.getpwnam("nobody").pw_uid
    first = accounts.identity_for(nobody, rootless=False)
    assert first.mode is RunAs.OWNER and first.uid == nobody and first.capabilities == ()
    assert accounts.identity_for(nobody, rootless=False) == first and reads == [nobody]
    clock[0] += accounts.ACCOUNT_SECONDS + 1
    accounts.identity_for(nobody, rootless=False)
    assert reads == [nobody, nobody], "read again once its time is up"
    with pytest.raises(Forbidden, match="not a user of this machine"):
        accounts.identity_for(987654, rootless=False)
