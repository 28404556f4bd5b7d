"""The container every system of scenarios 2 and 3 runs, and the floor they are held to.

Every system starts the same container: jobd's embedded busybox image, no network, the same
memory, CPU and pids limits and the same rlimits as the jobd plan the scenario defines
(`ContainerLimits`). The floor is the podman API called directly through podman-py, the way
jobd's runtime calls it (jobd/runtime/podman/client.py), on a `podman system service` of the
bench's own in a private working directory, so nothing but the bench's calls is in its way.

Every container the bench creates outside jobd carries the label `jobd-bench=<scenario>`, and
`remove_labelled` removes whatever a failed run left behind.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import podman
import podman.errors
import requests.exceptions

from bench.daemon import IMAGE, remove_labelled_containers

LABEL = "jobd-bench"
OCI_RUNTIME = "runc"  # crun fails on this machine's hybrid cgroups
NOFILE = 4096  # as jobd's supervisor sets it
# the API's wait call polls the container's state every 250 ms unless told otherwise:
# the floor asks for the shortest interval that does not load the service (ENVIRONMENT.md)
WAIT_INTERVAL = "10ms"
SERVICE_START_SECONDS = 30.0
NOT_UP_YET = (podman.errors.PodmanError, requests.exceptions.RequestException, OSError)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerLimits:
    """A jobd plan, and the same limits for podman run and podman-py."""

    plan: str
    memory_mb: int
    cpus: float
    pids: int = 4096

    def toml(self) -> str:
        """The plan for BenchDaemon's config."""
        return (
            f"[plans.{self.plan}]\nmemory_mb = {self.memory_mb}\ncpus = {self.cpus!r}\n"
            f"pids_limit = {self.pids}\n"
        )

    def api_options(self, scenario: str) -> dict[str, Any]:
        """podman-py create options: what jobd's runtime passes for this plan."""
        memory = self.memory_mb * 2**20
        return {
            "labels": {LABEL: scenario},
            "network_mode": "none",
            "mem_limit": memory,
            "memswap_limit": memory,
            "cpu_period": 100_000,
            "cpu_quota": int(self.cpus * 100_000),  # nano_cpus is silently dropped
            "pids_limit": self.pids,
            "ulimits": [
                {"Name": "nofile", "Soft": NOFILE, "Hard": NOFILE},
                {"Name": "nproc", "Soft": self.pids, "Hard": self.pids},
            ],
            "runtime": OCI_RUNTIME,
        }

    def podman_run(self, scenario: str, command: Sequence[str]) -> list[str]:
        """`podman run --rm` of the same container, as a user (or tsp, or Slurm) would."""
        return [
            "podman",
            "--runtime",
            OCI_RUNTIME,
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            f"{LABEL}={scenario}",
            "--memory",
            f"{self.memory_mb}m",
            "--memory-swap",
            f"{self.memory_mb}m",
            "--cpus",
            f"{self.cpus:g}",
            "--pids-limit",
            str(self.pids),
            "--ulimit",
            f"nofile={NOFILE}:{NOFILE}",
            "--ulimit",
            f"nproc={self.pids}:{self.pids}",
            IMAGE,
            *command,
        ]


@contextlib.contextmanager
def podman_service() -> Iterator[Path]:
    """A private `podman system service`: its socket, for as long as the block runs."""
    podman_bin = shutil.which("podman")
    if podman_bin is None:
        raise RuntimeError("podman is not installed")
    with tempfile.TemporaryDirectory(prefix="jobd-bench-podman-") as workdir:
        socket = Path(workdir) / "podman.sock"
        command = [podman_bin, "--runtime", OCI_RUNTIME, "system", "service", "--time=0"]
        with (Path(workdir) / "service.log").open("ab") as log:
            process = subprocess.Popen(
                [*command, f"unix://{socket}"],
                cwd=workdir,  # conmon drops its oom marker files in the service's cwd
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            _wait_until_up(socket, process)
            yield socket
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_up(socket: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"podman system service exited ({process.returncode})")
        if socket.exists():
            with contextlib.suppress(*NOT_UP_YET), client(socket) as api:
                if api.ping():
                    return
        time.sleep(0.05)
    raise RuntimeError("podman system service did not answer within 30 s")


def client(socket: Path) -> podman.PodmanClient:
    return podman.PodmanClient(base_url=f"http+unix://{socket}", timeout=120)


def remove_labelled(scenario: str) -> None:
    """Remove the bench's own containers of this scenario that a failed run left behind."""
    remove_labelled_containers(f"{LABEL}={scenario}")
