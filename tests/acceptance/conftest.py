"""Fixtures for the acceptance tests of many users on one server: real local users (made once
and kept, as a test machine keeps its test users) and the system daemon they share."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import CHROMIUM, TEST_IMAGE, Daemon, Response

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ALICE, BOB, CAROL = "jobd-alice", "jobd-bob", "jobd-carol"  # carol is an admin
DAVE = "jobd-dave"  # in no project
GROUP = "jobd"  # the system daemon's socket is 0660, group jobd


def ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
    subprocess.run(["usermod", "--append", "--groups", GROUP, name], check=True)


def call(daemon: Daemon, user: str, method: str, path: str, body: Any = None) -> Response:
    """A request made as `user` (the connection is theirs)."""
    return daemon.request(method, path, body, user=user)


def submit(daemon: Daemon, user: str, **spec: Any) -> dict[str, Any]:
    """A job `user` creates (the test image, no network, unless `spec` says)."""
    spec = {"image": TEST_IMAGE, "network": "none", **spec}
    response = call(daemon, user, "POST", "/v1/jobs", spec)
    assert response.status == 201, response.text
    return response.body  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def users() -> None:
    if os.getuid() != 0:
        pytest.skip("creating the test users needs root")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    for name in (ALICE, BOB, CAROL, DAVE):
        ensure_user(name)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's temporary directories are root's alone):
    the daemon's home, and host paths jobs may mount (its `mounts/`)."""
    home = Path(tempfile.mkdtemp(prefix="jobd-users-"))
    home.chmod(0o755)
    (home / "mounts").mkdir(mode=0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def team_daemon(
    users: None, podman_socket: Path, test_image: str, shared_dir: Path
) -> Iterator[Daemon]:
    """The system daemon, as root, with carol as an admin; its socket where the users can
    reach it, and host paths under `mounts/` allowed."""
    config = f'admins = ["{CAROL}"]\n[volumes]\nallowed_host_paths = ["{shared_dir / "mounts"}"]\n'
    with system_daemon(shared_dir, podman_socket, config) as d:
        yield d


@contextlib.contextmanager
def system_daemon(shared_dir: Path, podman_socket: Path, config: str) -> Iterator[Daemon]:
    """A system daemon (as root, system = true, and `config`) in `shared_dir`, where the
    users can reach its socket."""
    d = Daemon(
        shared_dir / "daemon", podman_socket=podman_socket, config=f"system = true\n{config}"
    )
    (shared_dir / "daemon").chmod(0o755)
    try:
        d.start()
        yield d
    finally:
        d.stop(kill_containers=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, driven by playwright, for a module's dashboard tests."""
    from playwright.sync_api import sync_playwright  # only the browser tests need it

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()
