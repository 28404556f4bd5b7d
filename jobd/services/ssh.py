"""SSH into a job (the gateway, jobd/ssh/, is the edge): which client may reach which run,
and what it may open there. A client names a run (its id) or a job (its id or name) as its
user and offers a key; it is let in when the key is one of that job's `sshKeys` and its
address is one of the job's `allowedIps` (loopback when the job names none). Nothing else
tells an unknown user, a wrong key, someone else's job and a refused address apart.

What a session opens runs in the run's container exactly as `jobctl exec` does (the
container's user, groups and capabilities: its owner's powers): a command or a shell through
the runtime's exec, files and TCP connections through a helper the runtime puts in the
container's namespaces (jobd/runtime/podman/helper.py). Each session checks the key again,
so a key taken off the job stops working at the next session.

The audit log has each session and forward that was asked for (opened, or refused and why),
as its job's owner's, and each connection that offered keys and was let in with none. What a
session runs is not recorded, as a request's body is not.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import asyncssh

from jobd.domain.audit import AuditEntry
from jobd.domain.engine import ExecSession
from jobd.domain.jobs import Job, JobFilter, JobSpec, Kind
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import now
from jobd.domain.runs import Run
from jobd.domain.ssh import MAX_ALLOWED_IPS, MAX_SSH_KEYS, allows, published_alone
from jobd.errors import InvalidRequest, NotFound
from jobd.services.audit import Audit
from jobd.services.exec import ExecSessions
from jobd.store import Store


class StartCommand(Protocol):
    """The runtime's exec, with variables added to the container's environment."""

    def __call__(
        self, handle: str, command: list[str], *, tty: bool, env: Mapping[str, str] | None = None
    ) -> Awaitable[ExecSession]: ...


# (container, the client's SSH version) -> an SFTP server on the container's files
OpenFiles = Callable[[str, str], Awaitable[ExecSession]]
# (container, host, port) -> a TCP connection made inside the container's network
Connect = Callable[[str, str, int], Awaitable[socket.socket]]
MAX_CANDIDATES = 50  # jobs of one name tried for a key (other users' included)
MAX_NAMED = 64  # of what a refused client named as its user, in the audit log


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """A client let in: what it named, the job that took its key, and the key."""

    user: str
    job_id: str
    owner: Owner  # the job's: a session has its powers, and the audit log says so
    run_id: str | None  # the run it named; None: its job's latest run, at each session
    key: bytes  # the key's public data, checked again at each session
    peer: str


@dataclass(frozen=True, slots=True)
class Runtime:
    """What sessions need of the runtime, as the daemon wires it: exec, files, connect."""

    command: StartCommand
    files: OpenFiles
    connect: Connect


class SshAccess:
    def __init__(self, store: Store, runtime: Runtime, audit: Audit | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.audit = audit

    async def admit(self, user: str, key: bytes, peer: str) -> Admission | None:
        """The admission of a client that names `user` and offers `key` from `peer`, or None:
        the same None for every reason."""
        try:
            candidates = await self._candidates(user)
        except NotFound:
            return None
        for job, run_id in candidates:
            if _lets_in(job, key, peer):
                return Admission(
                    user=user, job_id=job.id, owner=job.owner, run_id=run_id, key=key, peer=peer
                )
        return None

    async def _candidates(self, user: str) -> list[tuple[Job, str | None]]:
        if user.startswith("run-"):
            run = await self.store.get_run(user, reach=EVERYONE)
            return [(await self.store.get_job(run.job_id, reach=EVERYONE), run.id)]
        if user.startswith("job-"):
            return [(await self.store.get_job(user, reach=EVERYONE), None)]
        page = await self.store.list_jobs(
            JobFilter(name=user, reach=EVERYONE), limit=MAX_CANDIDATES, cursor=None
        )
        newest = sorted(page.items, key=lambda j: j.created_at, reverse=True)
        return [(job, None) for job in newest]

    async def run(self, admission: Admission) -> Run:
        """The run a session of this admission opens in, its key checked again: NotFound when
        the job no longer takes it, Conflict (ExecSessions.target) when it is not running."""
        job = await self.store.get_job(admission.job_id, reach=EVERYONE)
        if not _lets_in(job, admission.key, admission.peer):
            raise NotFound(f"job {job.id} no longer takes this key")
        run_id = admission.run_id or job.latest_run_id
        if run_id is None:
            raise NotFound(f"job {job.id} has no run")
        return await self.store.get_run(run_id, reach=EVERYONE)

    def audited(self, admission: Admission, what: str, status: int, run_id: str | None) -> None:
        """A session or forward asked for (`what`: "shell", "forward HOST:PORT"...),
        opened (200) or refused with `status`, into the admission's job (and `run_id`)."""
        owner = admission.owner
        ids = (admission.job_id, *([run_id] if run_id else []))
        self._record(owner.user, owner.uid, admission.peer, what, status, ids)

    def refused(self, named: str, peer: str) -> None:
        """A connection that offered keys and was let in with none: what it named as its user
        (a run, a job or a name) is all there is to say."""
        self._record(None, None, peer, f"login {named[:MAX_NAMED]}", 401, ())

    def _record(
        self,
        user: str | None,
        uid: int | None,
        peer: str,
        what: str,
        status: int,
        ids: tuple[str, ...],
    ) -> None:
        if self.audit is None:
            return
        self.audit.record(
            AuditEntry(
                at=now(),
                user=user,
                uid=uid,
                via="ssh",
                token_id=None,
                peer=peer,
                method="SSH",
                path=what,
                status=status,
                ids=ids,
            )
        )

    async def command(
        self, run: Run, command: list[str], *, tty: bool, env: Mapping[str, str]
    ) -> ExecSession:
        return await self.runtime.command(ExecSessions.target(run), command, tty=tty, env=env)

    async def files(self, run: Run, client_version: str) -> ExecSession:
        return await self.runtime.files(ExecSessions.target(run), client_version)

    async def connect(self, run: Run, host: str, port: int) -> socket.socket:
        return await self.runtime.connect(ExecSessions.target(run), host, port)


def _lets_in(job: Job, key: bytes, peer: str) -> bool:
    # every key is compared, and the address checked, whatever the first ones say
    matches = [_key_data(k) == key for k in job.spec.ssh_keys]
    return any(matches) & allows(job.spec.allowed_ips, peer)


@lru_cache(maxsize=1024)
def _key_data(text: str) -> bytes | None:
    try:
        return bytes(asyncssh.import_public_key(text).public_data)
    except (asyncssh.KeyImportError, ValueError):
        return None


def checked_spec(spec: JobSpec, *, publish_address: str, firewall: bool) -> JobSpec:
    """A job's sshKeys and allowedIps checked (InvalidRequest says what is wrong), its keys
    trimmed. `firewall`: this daemon can refuse addresses at its runs' published ports
    (root, rootful podman); without it, allowedIps must be something the published ports'
    address can keep to by itself."""
    if spec.ssh_keys and spec.kind is not Kind.PERSISTENT:
        raise InvalidRequest("sshKeys: only a persistent job (kind persistent) takes SSH keys")
    if len(spec.ssh_keys) > MAX_SSH_KEYS or len(spec.allowed_ips or ()) > MAX_ALLOWED_IPS:
        raise InvalidRequest(
            f"sshKeys: at most {MAX_SSH_KEYS}; allowedIps: at most {MAX_ALLOWED_IPS}"
        )
    keys = tuple(_checked_key(i, key) for i, key in enumerate(spec.ssh_keys))
    if spec.ports and not firewall and not published_alone(spec.allowed_ips, publish_address):
        raise InvalidRequest(
            "allowedIps: this daemon can't keep its runs' published ports to those addresses"
            " (no firewall rules without root and rootful podman); allow only loopback"
            " (127.0.0.1/32), or every address"
        )
    return dataclasses.replace(spec, ssh_keys=keys)


def _checked_key(index: int, key: str) -> str:
    text = key.strip()
    if "\n" in text or _key_data(text) is None:
        raise InvalidRequest(
            f"sshKeys[{index}]: not an OpenSSH public key, one line such as"
            " 'ssh-ed25519 AAAAC3Nz... you@laptop' (the .pub file)"
        )
    return text
