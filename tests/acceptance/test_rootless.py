"""jobd as an unprivileged user: its containers are rootless, and health tells the truth about
whether the plan's limits are enforced (rootless podman on cgroup v1 cannot enforce them)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Daemon, as_user

pytestmark = [pytest.mark.podman, pytest.mark.acceptance, pytest.mark.rootless]
USER = "jobd-rootless"
STARTER_MEMORY = 512 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def install_for(home: Path) -> Path:
    """A venv the test user can execute: the development venv may live where only root can
    reach (e.g. under /root). The venv is kept between runs; jobd is reinstalled on every
    run, so the test always runs the code under test, and so are dependencies it gained."""
    venv = home.parent / "venv"
    pip = str(venv / "bin" / "pip")
    if not (venv / "bin" / "pip").exists():
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
    subprocess.run([pip, "install", "-q", "--no-deps", "--force-reinstall", str(REPO)], check=True)
    subprocess.run([pip, "install", "-q", str(REPO)], check=True)  # what is missing, if any
    return venv / "bin"


@pytest.fixture
def user_home() -> Iterator[Path]:
    if os.getuid() != 0:
        pytest.skip("creating the test user needs root")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    entry = pwd.getpwnam(USER)
    home = Path(entry.pw_dir) / f"t-{os.getpid()}"
    runtime_dir = Path(entry.pw_dir) / f"xdg-{os.getpid()}"
    for directory in (home, runtime_dir):
        directory.mkdir(mode=0o700)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    yield home
    env = {"HOME": entry.pw_dir, "XDG_RUNTIME_DIR": str(runtime_dir)}
    subprocess.run(
        as_user(USER, ["podman", "rm", "-af", "-t", "0"], env),
        cwd="/",
        capture_output=True,
        check=False,
    )
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(runtime_dir, ignore_errors=True)


def test_unprivileged_jobd_runs_rootless_containers_and_reports_limits_truthfully(
    user_home: Path,
) -> None:
    entry = pwd.getpwnam(USER)
    env = {
        "HOME": entry.pw_dir,
        "XDG_RUNTIME_DIR": str(user_home.parent / f"xdg-{os.getpid()}"),
        "PATH": os.environ["PATH"],
    }
    daemon = Daemon(
        user_home,
        user=USER,
        env=env,  # no podman socket: jobd runs its own
        bin_dir=install_for(user_home),
    )
    try:
        daemon.start(timeout=120)
        health = daemon.get("/v1/health").body
        assert health["daemon"]["uid"] == entry.pw_uid
        assert health["podman"]["rootless"] is True
        job = daemon.submit(
            image="localhost/jobd/busybox:latest",
            plan="starter",
            command=[
                "sh",
                "-c",
                "head -n 1 /proc/self/uid_map;"
                " cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                " || cat /sys/fs/cgroup/memory.max",
            ],
        )
        assert job["owner"]["uid"] == 0, "the caller (root, over the socket) owns the job"
        run = daemon.wait_status(job["latestRunId"], timeout=180)
        assert run["status"] == "succeeded", (run, daemon.log()[-3000:])
        uid_map, limit = daemon.logs_text(run["id"]).split("\n")[:2]
        inside, host, _ = uid_map.split()
        assert (inside, host) == ("0", str(entry.pw_uid)), "root inside is the user outside"
        enforced = health["limits"]["enforced"]
        assert run["limits"]["enforced"] is enforced
        assert (limit == str(STARTER_MEMORY)) is enforced, (
            f"health says enforced={enforced} but the container sees a limit of {limit}"
        )
        if not enforced:
            assert "not enforced" in health["limits"]["note"]
            assert run["limits"]["note"] == health["limits"]["note"]
        on_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
        if on_v1:
            assert enforced is False, "rootless podman on cgroup v1 cannot enforce limits"
    finally:
        daemon.stop(kill_containers=False)
