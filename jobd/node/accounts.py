"""The machine's user accounts as a run needs them: who a run's process is on the host (its
owner's uid, primary group and groups, read from the system's user database when the run
starts), and whether that user may reach a host path the way a mount asks."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from jobd.domain.identity import Identity, RunAs, run_as
from jobd.errors import Forbidden

READ, WRITE, SEARCH = 4, 2, 1


def identity_for(owner_uid: int | None, *, rootless: bool) -> Identity:
    """Who a run of this owner is on the host. Forbidden for an owner the system no longer
    knows: no run may fall back to the daemon's own powers."""
    mode = run_as(owner_uid=owner_uid, daemon_uid=os.getuid(), rootless=rootless)
    if mode is not RunAs.OWNER:
        return Identity.of(mode)
    try:
        entry = pwd.getpwuid(owner_uid) if owner_uid is not None else None
    except KeyError:
        entry = None
    if entry is None:
        raise Forbidden(f"uid {owner_uid} is not a user of this machine any more")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Identity.of(mode, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


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
