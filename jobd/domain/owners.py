"""Who a record belongs to (the user who asked for it, and how jobd knew them), who is asking
and with what powers, and whose records a request may reach: a user reaches their own, an
admin everyone's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobd.errors import Forbidden


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    uid: int | None
    user: str
    via: str  # "unix" (peer credentials), "tcp" (the daemon's token), "token", "hmac"

    def to_api(self) -> dict[str, Any]:
        return {"uid": self.uid, "user": self.user, "via": self.via}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Owner:
        return cls(uid=data["uid"], user=data["user"], via=data["via"])


@dataclass(frozen=True, slots=True)
class Reach:
    """Whose records a request may see and act on: one user's (by uid), or everyone's. Every
    read of owned rows in the store takes one, so another user's record is simply not there
    (404, never 403: ids do not leak)."""

    uid: int | None  # None: everyone's

    @property
    def everyone(self) -> bool:
        return self.uid is None

    def includes(self, owner: Owner) -> bool:
        return self.uid is None or owner.uid == self.uid


EVERYONE = Reach(None)  # jobd itself, and an admin


class Scope(StrEnum):
    """What an API token may do."""

    READ = "read"  # reads only
    SUBMIT = "submit"  # also creates, cancels, updates and deletes its owner's records
    ADMIN = "admin"  # an admin's powers; only an admin may hold one

    def allows(self, *, writes: bool) -> bool:
        return not writes or self is not Scope.READ


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is asking: the owner of what they create, whether they administer jobd (root,
    the daemon's own user, the configured admins: through a token, only with its admin
    scope), and through which token, with what scope (none on the Unix socket: all that
    the user may do)."""

    owner: Owner
    admin: bool
    scope: Scope | None = None
    token_id: str | None = None

    def may(self, *, writes: bool) -> bool:
        """Whether the caller's scope lets a request read, or change something."""
        return self.scope is None or self.scope.allows(writes=writes)

    @property
    def reach(self) -> Reach:
        """What a request naming a record by id may reach: an admin's reaches everyone's."""
        return EVERYONE if self.admin else Reach(self.owner.uid)

    def listing(self, all_users: bool) -> Reach:
        """What a listing shows: the caller's own records, or, asked by an admin with
        allUsers, everyone's. Forbidden when anyone else asks for everyone's."""
        if not all_users:
            return Reach(self.owner.uid)
        if not self.admin:
            raise Forbidden(f"allUsers: {self.owner.user} is not an admin of jobd")
        return EVERYONE
