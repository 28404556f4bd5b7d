"""Who a record belongs to (the user who asked for it, and how jobd knew them), who is asking
and with what powers, and whose records a request may reach: a user reaches their own and
their projects' jobs and recipes, an admin everyone's."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobd.errors import Forbidden, InvalidRequest


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
    # and the jobs and recipes of these projects (the user is a member of each)
    projects: frozenset[str] = frozenset()

    @property
    def everyone(self) -> bool:
        return self.uid is None

    def includes(self, owner: Owner, project: str | None = None) -> bool:
        return self.uid is None or owner.uid == self.uid or project in self.projects


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
    projects: frozenset[str] = frozenset()  # the projects the user is a member of

    def may(self, *, writes: bool) -> bool:
        """Whether the caller's scope lets a request read, or change something."""
        return self.scope is None or self.scope.allows(writes=writes)

    @property
    def reach(self) -> Reach:
        """What a request naming a record by id may see and act on: the caller's own, and
        their projects' jobs (and runs) and recipes; an admin's reaches everyone's."""
        return EVERYONE if self.admin else Reach(self.owner.uid, self.projects)

    @property
    def own_reach(self) -> Reach:
        """What a request may change as its owner would: what a run executes (a job's
        update, a recipe's), or a shell in it (exec). A project's member may watch, cancel
        and re-run a teammate's job, never make it run something else: its runs have its
        owner's powers, not the member's."""
        return EVERYONE if self.admin else Reach(self.owner.uid)

    def listing(self, all_users: bool) -> Reach:
        """What a listing shows: the caller's own records and their projects', or, asked by
        an admin with allUsers, everyone's. Forbidden when anyone else asks for everyone's."""
        if not all_users:
            return Reach(self.owner.uid, self.projects)
        if not self.admin:
            raise Forbidden(f"allUsers: {self.owner.user} is not an admin of jobd")
        return EVERYONE

    def project(self, name: str | None, known: Collection[str]) -> str | None:
        """The project a record the caller creates goes to: None, or one that is configured
        and that the caller is a member of (or any, for an admin)."""
        if name is None:
            return None
        if name not in known:
            names = ", ".join(sorted(known)) or "none are configured ([projects.NAME])"
            raise InvalidRequest(f"project: no project {name!r}; projects: {names}")
        if name not in self.projects and not self.admin:
            raise Forbidden(f"project: {self.owner.user} is not a member of project {name!r}")
        return name
