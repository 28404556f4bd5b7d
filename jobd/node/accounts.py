"""The machine's user accounts as a run needs them: who a run's process is on the host (its
owner's uid, primary group and groups, read from the system's user database, at most every
ten seconds), and whether that user may reach a host path the way a mount asks."""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

from jobd.domain.identity import Identity, RunAs, run_as
from jobd.errors import Forbidden

READ, WRITE, SEARCH = 4, 2, 1


ACCOUNT_SECONDS = 10.0  # how long a user's groups, once read, are used (LDAP is a round trip)
_accounts: dict[int, tuple[float, tuple[int, tuple[int, ...]] | None]] = {}


def identity_for(owner_uid: int | None, *, rootless: bool) -> Identity:
    """Who a run of this owner is on the host. Forbidden for an owner the system no longer
    knows: no run may fall back to the daemon's own powers."""
    mode = run_as(owner_uid=owner_uid, daemon_uid=os.getuid(), rootless=rootless)
    if mode is not RunAs.OWNER:
        return Identity.of(mode)
    found = _account(owner_uid) if owner_uid is not None else None
    if found is None:
        raise Forbidden(f"uid {owner_uid} is not a user of this machine any more")
    gid, groups = found
    return Identity.of(mode, uid=owner_uid, gid=gid, groups=groups)


def _account(uid: int) -> tuple[int, tuple[int, ...]] | None:
    """The user's primary group and groups, from the user database at most every
    ACCOUNT_SECONDS (a group change counts from then on); None for an unknown uid."""
    moment = time.monotonic()
    cached = _accounts.get(uid)
    if cached is not None and moment - cached[0] < ACCOUNT_SECONDS:
        return cached[1]
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        found = None
    else:
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
        found = (entry.pw_gid, groups)
    _accounts[uid] = (moment, found)
    return found


def may_reach(path: Path, identity: Identity, *, write: bool) -> bool:
    """Whether the run's user may reach `path` (symlinks resolved) as a mount asks: search
    every directory above it, read it (and list it, a directory), write it unless read-only.
    Mode bits only; the kernel checks again, ACLs included, when the run opens it."""
    if identity.mode is not RunAs.OWNER:
        return True
    for parent in reversed(path.parents):
        if not _permits(os.stat(parent), identity, SEARCH):
            return False
    info = os.stat(path)
    wanted = READ | (WRITE if write else 0) | (SEARCH if stat.S_ISDIR(info.st_mode) else 0)
    return _permits(info, identity, wanted)


def _permits(info: os.stat_result, identity: Identity, bits: int) -> bool:
    if info.st_uid == identity.uid:
        shift = 6
    elif info.st_gid in identity.groups:
        shift = 3
    else:
        shift = 0
    return (info.st_mode >> shift) & bits == bits
