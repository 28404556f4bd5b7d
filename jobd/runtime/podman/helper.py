"""A helper process that works inside a running container without anything in its image: it
joins the namespaces of the container's first process (its user namespace when podman is
rootless, then its mount or its network namespace), takes that process's identity (user,
groups, capabilities, and no new privileges), and only then does its work:

    python -m jobd.runtime.podman.helper files PID [CLIENT_VERSION]
        an SFTP server on stdin and stdout over the container's own filesystem, as the
        container's user: what `sftp` and OpenSSH 9's `scp` talk to
    python -m jobd.runtime.podman.helper connect PID HOST PORT FD
        a TCP connection from inside the container's network namespace, handed back over the
        Unix socket FD (SCM_RIGHTS); the caller uses it as its own (`ssh -L`)

Joining a user namespace needs a process with one thread, which the daemon is not: hence a
process of its own. Everything it needs is imported before it enters the mount namespace,
where the host's files (Python's own included) are no longer in view. What it does not take
from the container: its seccomp filter, its cgroup (what it reads and writes is not charged
to the run) and its AppArmor/SELinux label.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import grp  # noqa: F401  (owner names in listings, read from the container's /etc)
import os
import pwd  # noqa: F401
import socket
import sys
from dataclasses import dataclass
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 8, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAPABILITY_VERSION_3 = 0x20080522
CONNECT_TIMEOUT = 10.0

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """Who the container's process is, in the container's user namespace."""

    uids: tuple[int, int, int]
    gids: tuple[int, int, int]
    groups: tuple[int, ...]
    effective: int  # capability sets, as bit masks
    permitted: int
    inheritable: int
    bounding: int


def read_credentials(status: str, uid_map: str, gid_map: str) -> Credentials:
    """From /proc/PID/status as the host sees it, with the ids mapped into the container's
    user namespace (its uid_map and gid_map: "inside outside count" lines)."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uids = [map_id(int(v), uid_map) for v in fields["Uid"].split()[:3]]
    gids = [map_id(int(v), gid_map) for v in fields["Gid"].split()[:3]]
    return Credentials(
        uids=(uids[0], uids[1], uids[2]),
        gids=(gids[0], gids[1], gids[2]),
        groups=tuple(map_id(int(g), gid_map) for g in fields.get("Groups", "").split()),
        effective=int(fields["CapEff"], 16),
        permitted=int(fields["CapPrm"], 16),
        inheritable=int(fields["CapInh"], 16),
        bounding=int(fields["CapBnd"], 16),
    )


def map_id(outside: int, id_map: str) -> int:
    """A host id as the namespace whose map this is sees it (65534, nobody, if unmapped)."""
    for line in id_map.splitlines():
        inside, start, count = (int(v) for v in line.split())
        if start <= outside < start + count:
            return inside + outside - start
    return 65534


class Target:
    """The container's first process, opened before any namespace is joined: after the
    mount namespace changes, /proc/PID names another process or none."""

    def __init__(self, pid: int, kind: str) -> None:
        proc = f"/proc/{pid}"
        self.credentials = read_credentials(
            _read(f"{proc}/status"), _read(f"{proc}/uid_map"), _read(f"{proc}/gid_map")
        )
        own_user = os.stat("/proc/self/ns/user").st_ino
        self.user_ns = (
            os.open(f"{proc}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            if os.stat(f"{proc}/ns/user").st_ino != own_user
            else None
        )
        self.ns = os.open(f"{proc}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        self.kind = CLONE_NEWNS if kind == "mnt" else CLONE_NEWNET
        self.cwd: int | None = None
        if kind == "mnt":
            try:
                self.cwd = os.open(f"{proc}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                self.cwd = None  # the container's root, then

    def enter(self) -> None:
        if self.user_ns is not None:
            _setns(self.user_ns, CLONE_NEWUSER)
        _setns(self.ns, self.kind)
        if self.kind == CLONE_NEWNS:
            os.chdir("/")
            if self.cwd is not None:
                try:
                    os.fchdir(self.cwd)
                finally:
                    os.close(self.cwd)
        become(self.credentials)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _setns(fd: int, kind: int) -> None:
    try:
        if _libc.setns(fd, kind) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns: {os.strerror(error)}")
    finally:
        os.close(fd)


def become(creds: Credentials) -> None:
    """Take the container process's identity: its bounding set, groups and ids, then exactly
    its capabilities (kept across the change of uid), and no new privileges."""
    _prctl(PR_SET_KEEPCAPS, 1)
    for cap in range(64):
        if not creds.bounding >> cap & 1 and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
            raise OSError(ctypes.get_errno(), "dropping a capability from the bounding set")
    os.setgroups(list(creds.groups))
    os.setresgid(*creds.gids)
    os.setresuid(*creds.uids)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = creds.effective >> (32 * i) & 0xFFFFFFFF
        data[i].permitted = creds.permitted >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = creds.inheritable >> (32 * i) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl {option}")


# -- files: SFTP over stdin and stdout ---------------------------------------------------


class _Channel:
    """What asyncssh's SFTP server asks of the channel it writes to."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Reader:
    def __init__(self, stream: asyncio.StreamReader, logger: Any, client_version: str) -> None:
        self._stream = stream
        self.logger = logger
        self._client_version = client_version  # OpenSSH's swaps a symlink's arguments

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._client_version if name == "client_version" else default

    async def readexactly(self, n: int) -> bytes:
        return await self._stream.readexactly(n)


class _Writer:
    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self.channel = _Channel(transport)

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def close(self) -> None:
        self._transport.close()


async def serve_files(asyncssh: Any, client_version: str) -> None:
    """asyncssh's own SFTP server over this process's stdin and stdout; it works on the
    files this process sees, which are now the container's."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    reader = _Reader(stream, asyncssh.logging.logger, client_version)
    writer = _Writer(transport)
    await asyncssh.sftp.run_sftp_server(asyncssh.SFTPServer(writer.channel), reader, writer, 3)


def files(pid: int, client_version: str) -> None:
    import asyncssh
    import asyncssh.sftp

    target = Target(pid, "mnt")
    asyncio.run(_entered(target, serve_files(asyncssh, client_version)))


async def _entered(target: Target, work: Any) -> None:
    target.enter()  # the event loop, its self-pipe and selector exist already
    await work


# -- connect: a TCP connection from inside the container's network -------------------------


def connect(pid: int, host: str, port: int, reply_fd: int) -> None:
    reply = socket.socket(fileno=reply_fd)
    try:
        Target(pid, "net").enter()
        connection = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        reply.sendall(f"error {e.strerror or e}".encode())
        return
    socket.send_fds(reply, [b"ok"], [connection.fileno()])


def main(argv: list[str]) -> int:
    mode, pid = argv[1], int(argv[2])
    if mode == "files":
        files(pid, argv[3] if len(argv) > 3 else "")
    elif mode == "connect":
        connect(pid, argv[3], int(argv[4]), int(argv[5]))
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
