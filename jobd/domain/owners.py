"""Who a record belongs to (the user who asked for it, and how jobd knew them), who is asking,
and whose records a request may reach: a user reaches their own, an admin everyone's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobd.errors import Forbidden


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    uid: int | None
    user: str
    via: str  # "unix" (peer credentials) or "tcp" (bearer token)

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is asking: the owner of what they create, and whether they administer jobd (root,
    the daemon's own user, the configured admins)."""

    owner: Owner
    admin: bool

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
