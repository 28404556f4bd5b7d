"""A machine with systemd as PID 1, for tests of jobd as a service: a privileged podman
container booted from scripts/systemd-image (../shared/ENVIRONMENT.md has the recipe and why
each flag), with jobd installed in it from wheels as a user would install it."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "scripts" / "systemd-image"
USER = "alice"  # made by scripts/systemd-image: subordinate ids, lingering, overlay storage
USER_UID = 1000
BOOT_SECONDS = 60
# privileged: nested podman works, and hardening directives are really applied (with
# --systemd=always they are silently skipped); its own cgroup namespace and tmpfs mounts as
# systemd expects them; SIGRTMIN+3 is how systemd is asked to shut down
BOOT_FLAGS = (
    *("--privileged", "--cgroupns=private", "--systemd=false", "--pids-limit=-1"),
    *("--stop-signal=RTMIN+3", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp"),
    *("-e", "container=podman"),
)


def unavailable(reason: str) -> None:
    """Skip where a privileged systemd container can't run; in CI that is a broken setup,
    not a reason to pass, so fail there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"systemd tests can't run in CI: {reason}")
    pytest.skip(reason)


def check_host() -> None:
    if os.geteuid() != 0:
        unavailable("needs root: rootful podman runs the privileged systemd container")
    if shutil.which("podman") is None:
        unavailable("podman is not installed")


def build_image() -> str:
    """The image's name: built once (about 80 s), then found in podman's image store."""
    done = subprocess.run(
        [str(IMAGE_SCRIPT)], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        unavailable(f"scripts/systemd-image failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def build_wheels(directory: Path) -> Path:
    """Wheels of jobd (this working tree) and its dependencies, for an offline pip inside."""
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    subprocess.run(
        [*pip, "wheel", "-q", str(REPO), "-w", str(directory)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return directory


def _hard_limit(kind: int, cap: int) -> str:
    """An rlimit for the container within what this process may grant (podman's defaults
    are above the hard limits here, and setrlimit then fails at start)."""
    hard = resource.getrlimit(kind)[1]
    limit = cap if hard == resource.RLIM_INFINITY else min(cap, hard)
    return f"{limit}:{limit}"


class Machine:
    """One booted container: `sh` runs a script in it as root or as the test user."""

    def __init__(self, name: str, image: str, wheels: Path) -> None:
        self.name = name
        self.image = image
        self.wheels = wheels
        self.container_id: str | None = None

    def boot(self) -> None:
        done = subprocess.run(
            [
                *("podman", "run", "-d", "--name", self.name, *BOOT_FLAGS),
                *("--ulimit", f"nofile={_hard_limit(resource.RLIMIT_NOFILE, 65536)}"),
                *("--ulimit", f"nproc={_hard_limit(resource.RLIMIT_NPROC, 32768)}"),
                *("-v", f"{self.wheels}:/wheels:ro", self.image, "/sbin/init"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            unavailable(f"podman can't run a privileged systemd container: {done.stderr}")
        self.container_id = done.stdout.strip()
        deadline = time.monotonic() + BOOT_SECONDS
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                # as Debian's udev makes them (50-udev-default.rules), for rootless podman's
                # fuse-overlayfs and slirp4netns: the container copies the host's nodes,
                # 0600 on some hosts (seen here)
                self.sh("chmod 0666 /dev/fuse /dev/net/tun", check=False)
                return
            time.sleep(0.5)
        raise AssertionError(f"systemd did not finish booting: {state}")

    def install_jobd(self) -> None:
        """As the README says: a virtualenv in /opt/jobd from the wheels, jobd and jobctl on
        PATH."""
        self.sh(
            "python3 -m venv /opt/jobd && /opt/jobd/bin/pip install -q --no-index"
            " --disable-pip-version-check --find-links /wheels jobd"
            " && ln -sf /opt/jobd/bin/jobd /opt/jobd/bin/jobctl /usr/local/bin/",
            timeout=300,
        )

    def sh(
        self, script: str, *, user: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`script` under bash, as root or as `user` (with the variables a login session
        would give it, so `systemctl --user` reaches the user's manager)."""
        command = ["bash", "-c", script]
        if user is not None:
            login = (
                f"runtime=/run/user/$(id -u {user}) && exec runuser -u {user} -- env"
                ' XDG_RUNTIME_DIR="$runtime" DBUS_SESSION_BUS_ADDRESS="unix:path=$runtime/bus"'
                ' bash -c "$0"'
            )
            command = ["bash", "-c", login, script]
        done = subprocess.run(
            ["podman", "exec", "--workdir", "/", self.name, *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{script!r} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def journal(self, unit: str = "jobd") -> str:
        return self.sh(f"journalctl -u {unit} --no-pager -o cat").stdout

    def remove(self) -> None:
        subprocess.run(
            ["podman", "rm", "-f", "-t", "5", self.name],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if self.container_id:
            remove_cgroups(self.container_id)


def remove_cgroups(container_id: str) -> None:
    """Nested runc leaves empty cgroups (machine.slice and below) inside the container's own
    in some of the host's hierarchies, which podman then can't remove: remove them, deepest
    first. Only empty cgroups can be removed, so nothing alive is touched."""
    root = Path("/sys/fs/cgroup")
    for pattern in ("*/libpod-{}", "*/*/libpod-{}", "*/*/*/libpod-{}"):
        for top in root.glob(pattern.format(container_id)):
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):  # not empty: something lives there
                    os.rmdir(directory)


def wait_for(
    predicate_script: str, machine: Machine, *, timeout: float, user: str | None = None
) -> str:
    """Run `predicate_script` until it succeeds; its output then."""
    deadline = time.monotonic() + timeout
    while True:
        done = machine.sh(predicate_script, user=user, check=False)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{predicate_script!r} never succeeded: {done.stderr}")
        time.sleep(0.25)
