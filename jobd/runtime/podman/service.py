"""jobd's own `podman system service`, used when no podman socket is configured.

It runs in a private working directory (conmon drops `oom` marker files in the service's cwd),
on a private socket, and dies with jobd (a parent-death signal, set by `setpriv --pdeathsig`
rather than a preexec_fn, which is unsafe in a threaded process) so a SIGKILLed jobd never
leaves an orphan holding the socket. Containers are not its children: they live on under
conmon and the next jobd start recovers them. If the service exits while jobd runs, it is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import podman
import podman.errors
import requests.exceptions

from jobd.errors import RuntimeUnavailable

log = logging.getLogger(__name__)


class PodmanService:
    def __init__(self, workdir: Path, *, oci_runtime: str | None) -> None:
        self.workdir = workdir
        self.socket = workdir / "podman.sock"
        self._oci_runtime = oci_runtime
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        podman = shutil.which("podman")
        if podman is None:
            raise RuntimeUnavailable("podman is not installed (apt-get install podman)")
        if shutil.which("setpriv") is None:
            raise RuntimeUnavailable("setpriv is not installed (apt-get install util-linux)")
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._spawn(podman)
        self._supervisor = asyncio.create_task(self._supervise(podman), name="podman-service")

    async def _spawn(self, podman: str) -> None:
        self.socket.unlink(missing_ok=True)
        args = ["setpriv", "--pdeathsig", "TERM", podman]
        if self._oci_runtime:
            args += ["--runtime", self._oci_runtime]
        args += ["system", "service", "--time=0", f"unix://{self.socket}"]
        with (self.workdir / "service.log").open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *args,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        up = await asyncio.to_thread(wait_for_socket, self.socket, 30.0)
        if not up:
            raise RuntimeUnavailable(
                f"podman system service did not come up; see {self.workdir / 'service.log'}"
            )

    async def _supervise(self, podman: str) -> None:
        delay = 0.5
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            log.error("podman system service exited (%s); restarting in %.1fs", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            try:
                await self._spawn(podman)
                delay = 0.5
            except RuntimeUnavailable as e:
                log.error("%s", e)

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        self.socket.unlink(missing_ok=True)


def wait_for_socket(socket: Path, timeout: float) -> bool:
    """Block until the podman API answers on `socket`, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket.exists() and _answers(socket):
            return True
        time.sleep(0.05)
    return False


def _answers(socket: Path) -> bool:
    try:
        with podman.PodmanClient(base_url=f"http+unix://{socket}", timeout=2) as client:
            return bool(client.ping())
    except (podman.errors.PodmanError, requests.exceptions.RequestException, OSError):
        return False  # not up yet
