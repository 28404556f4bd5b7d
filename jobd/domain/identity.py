"""Who a run's process is on the host, and what it may do there. A job has exactly its
owner's powers: on the system daemon (rootful podman), another user's run is that user's
uid and groups, with no capabilities at all, so the kernel checks every file it opens as
the owner's; the daemon's own user's runs keep the image's user, with a small documented
set of capabilities; a user's own daemon runs everything in that user's rootless podman,
where the container's root is the user. No run can gain privileges (no_new_privileges)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunAs(StrEnum):
    OWNER = "owner"  # rootful podman; the process is the owner's uid, gid and groups
    DAEMON_USER = "daemon-user"  # the daemon's own user's run, as the image says
    ROOTLESS = "rootless"  # a user's own daemon: the container's root is that user


# What a root-in-container process keeps (the daemon user's runs, and every run of a
# rootless daemon, whose root is the user in a user namespace), and why; every other
# capability, podman's defaults included (SETFCAP, SETPCAP, SYS_CHROOT, MKNOD, NET_RAW,
# AUDIT_WRITE), is dropped. An owner's run keeps none.
ROOT_CAPABILITIES: Mapping[str, str] = {
    "CHOWN": "package managers and entrypoints give files to the users they made",
    "DAC_OVERRIDE": "root reads and writes files of the image's other users",
    "FOWNER": "chmod and utime on files root does not own (unpacking archives)",
    "FSETID": "setgid directories keep their bit when root changes them",
    "SETUID": "entrypoints that drop to an unprivileged user (gosu, su-exec, apt's _apt)",
    "SETGID": "the same, for the group",
    "KILL": "an init or supervisor signals processes of the image's other users",
    "NET_BIND_SERVICE": "a service listens on a port below 1024",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """A run's process on the host: how it runs, and as whom."""

    mode: RunAs
    uid: int | None = None  # OWNER: the owner's uid, gid and supplementary groups
    gid: int | None = None
    groups: tuple[int, ...] = ()
    capabilities: tuple[str, ...] = ()  # all it keeps: every other one is dropped

    @classmethod
    def of(cls, mode: RunAs, **account: Any) -> Identity:
        """An identity with its mode's capabilities: none for an owner's run."""
        kept = () if mode is RunAs.OWNER else tuple(ROOT_CAPABILITIES)
        return cls(mode=mode, capabilities=kept, **account)

    def as_user(self, user: str | None) -> Identity:
        """The identity of a run whose command runs as `user` (the job's; None: the
        image's, taken to be root). A non-root user keeps no capabilities: podman would make
        the added ones its ambient set, and uid 1000 would override every file's permissions
        with DAC_OVERRIDE."""
        root = user is None or user.partition(":")[0] in {"0", "root"}
        return self if root else dataclasses.replace(self, capabilities=())

    @property
    def user(self) -> str | None:
        """podman's --user: "uid:gid" for an owner's run; None keeps the image's user."""
        return f"{self.uid}:{self.gid}" if self.mode is RunAs.OWNER else None

    def to_api(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "capabilities": list(self.capabilities),
            "noNewPrivileges": True,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Identity:
        return cls(
            mode=RunAs(data["mode"]),
            uid=data.get("uid"),
            gid=data.get("gid"),
            groups=tuple(data.get("groups") or ()),
            capabilities=tuple(data.get("capabilities") or ()),
        )


def run_as(*, owner_uid: int | None, daemon_uid: int, rootless: bool) -> RunAs:
    """How a run of this owner's runs under this daemon."""
    if rootless:
        return RunAs.ROOTLESS
    if owner_uid == daemon_uid:
        return RunAs.DAEMON_USER
    return RunAs.OWNER


def user_problem(user: str | None, identity: Identity) -> str | None:
    """What is wrong with a job's `user` for a run of this identity: an owner's run is the
    owner, so `user` may only name them (their uid, optionally with one of their groups)."""
    if user is None or identity.mode is not RunAs.OWNER:
        return None
    uid, _, gid = user.partition(":")
    if uid == str(identity.uid) and (not gid or (gid.isdigit() and int(gid) in identity.groups)):
        return None
    return (
        f"user: {user!r}: a job runs as its owner (uid {identity.uid}); leave user out, or give"
        " your own uid, optionally with one of your groups (uid:gid)"
    )


def mode_summary(*, daemon_uid: int, rootless: bool) -> str:
    """What `health` and `doctor` say about how runs run here."""
    if rootless:
        return (
            "rootless: every run is in this user's rootless podman (the container's root is"
            " this user), with no_new_privileges and a small set of capabilities"
        )
    return (
        f"owner: each user's runs run as that user (uid, gid and groups, no capabilities,"
        f" no_new_privileges) under rootful podman; the daemon's own user's (uid"
        f" {daemon_uid}) keep the image's user with a small set of capabilities"
    )
