"""Who the machine's users are: their names by uid, as the system's user database has them."""

from __future__ import annotations

import functools
import pwd


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The user's login name; the uid itself for a uid the system does not know."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def uid_of(name: str) -> int | None:
    """The uid of a user name; None for a name the system does not know."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def name_or(uid: int | None, unknown: str) -> str:
    """The user's name; `unknown` for a record that carries no uid."""
    return user_name(uid) if uid is not None else unknown
