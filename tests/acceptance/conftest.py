"""Fixtures for the acceptance tests of many users on one server: real local users (made once
and kept, as a test machine keeps its test users) and the system daemon they share."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Daemon

ALICE, BOB, CAROL = "jobd-alice", "jobd-bob", "jobd-carol"  # carol is an admin
GROUP = "jobd"  # the system daemon's socket is 0660, group jobd


def ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
    subprocess.run(["usermod", "--append", "--groups", GROUP, name], check=True)


@pytest.fixture(scope="session")
def users() -> None:
    if os.getuid() != 0:
        pytest.skip("creating the test users needs root")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    for name in (ALICE, BOB, CAROL):
        ensure_user(name)


@pytest.fixture
def team_daemon(users: None, podman_socket: Path, test_image: str) -> Iterator[Daemon]:
    """The system daemon, as root, with carol as an admin; its home is where the users can
    reach its socket (pytest's temporary directories are root's alone)."""
    home = Path(tempfile.mkdtemp(prefix="jobd-users-"))
    home.chmod(0o755)
    d = Daemon(home, podman_socket=podman_socket, config=f'system = true\nadmins = ["{CAROL}"]\n')
    try:
        d.start()
        yield d
    finally:
        d.stop(kill_containers=True)
        shutil.rmtree(home, ignore_errors=True)
