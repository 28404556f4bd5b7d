"""Out-of-memory detection that does not trust podman's OOMKilled flag.

podman 4.3.1 with conmon 2.1.6 never sets OOMKilled (conmon writes its marker where podman does
not look), and by the time a container's death is reported its cgroup is already removed. So jobd
watches each container's memory cgroup from the moment it exists (after `init`, before `start`):

- cgroup v1: an eventfd registered on memory.oom_control through cgroup.event_control. The kernel
  signals it on every OOM in the cgroup and once more when the cgroup is removed: a signal seen
  while the cgroup still exists, or a count of two or more, means an OOM happened.
- cgroup v2: inotify on memory.events, whose `oom_kill` counter the kernel bumps on every kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


def memory_cgroup_of(pid: int) -> Path | None:
    """The memory cgroup directory of a process, v1 or v2; None when it has none of its own."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = CGROUP_ROOT / "memory" / path.lstrip("/")
            return directory if path not in ("", "/") and directory.is_dir() else None
    for line in lines:
        if line.startswith("0::"):
            directory = CGROUP_ROOT / line[3:].lstrip("/")
            if (directory / "memory.events").exists() and line[3:] not in ("", "/"):
                return directory
    return None


class OomWatch:
    """Watches one container's memory cgroup; `oom_seen` says whether an OOM kill happened."""

    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        self.oom_seen = False
        self._fds: list[int] = []
        self._reader_fd: int | None = None

    @classmethod
    def start(cls, pid: int) -> OomWatch | None:
        cgroup = memory_cgroup_of(pid)
        if cgroup is None:
            return None
        watch = cls(cgroup)
        try:
            if (cgroup / "memory.oom_control").exists():
                watch._arm_v1()
            else:
                watch._arm_v2()
        except OSError as e:
            log.warning("cannot watch %s for OOM kills: %s", cgroup, e)
            watch.close()
            return None
        watch.check()  # an adopted container may have been OOM-killed before jobd came back
        return watch

    def _arm_v1(self) -> None:
        control = os.open(self.cgroup / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(control)
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._fds.append(efd)
        (self.cgroup / "cgroup.event_control").write_text(f"{efd} {control}")
        self._listen(efd, self._on_v1_event)

    def _on_v1_event(self) -> None:
        assert self._reader_fd is not None
        try:
            count = os.eventfd_read(self._reader_fd)
        except BlockingIOError:
            return
        if self.cgroup.exists():
            self.oom_seen = self.oom_seen or _v1_oom_kills(self.cgroup) > 0 or count > 0
        else:
            self.oom_seen = self.oom_seen or count >= 2
            self.close()

    def _arm_v2(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        ifd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._fds.append(ifd)
        events = str(self.cgroup / "memory.events").encode()
        if libc.inotify_add_watch(ifd, events, IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        self._listen(ifd, self._on_v2_event)
        self.check()

    def _on_v2_event(self) -> None:
        assert self._reader_fd is not None
        try:
            os.read(self._reader_fd, 4096)
        except BlockingIOError:
            return
        self.check()

    def check(self) -> bool:
        """Read the kernel's counters now (while the cgroup still exists)."""
        if self.cgroup.exists():
            if (self.cgroup / "memory.oom_control").exists():
                self.oom_seen = self.oom_seen or _v1_oom_kills(self.cgroup) > 0
            else:
                self.oom_seen = self.oom_seen or _v2_oom_kills(self.cgroup) > 0
        return self.oom_seen

    def _listen(self, fd: int, callback: object) -> None:
        self._reader_fd = fd
        asyncio.get_running_loop().add_reader(fd, callback)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._reader_fd is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone already
                asyncio.get_running_loop().remove_reader(self._reader_fd)
            self._reader_fd = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def _counter(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def _v1_oom_kills(cgroup: Path) -> int:
    try:
        text = (cgroup / "memory.oom_control").read_text()
    except OSError:
        return 0
    return _counter(text, "oom_kill") or _counter(text, "under_oom")


def _v2_oom_kills(cgroup: Path) -> int:
    try:
        return _counter((cgroup / "memory.events").read_text(), "oom_kill")
    except OSError:
        return 0
