"""Helpers for tests that use real podman and real jobd processes."""

from __future__ import annotations

import grp
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APPLETS = (
    "sh",
    "echo",
    "sleep",
    "cat",
    "true",
    "false",
    "env",
    "seq",
    "dd",
    "head",
    "yes",
    "id",
    "ls",
    "wc",
    "trap",
    "kill",
    "httpd",
    "mkdir",
    "ln",
    "nc",
)
# tagged by its contents: built once per machine, not re-imported (and left dangling) per run
TEST_IMAGE = (
    "localhost/jobd-test-busybox:" + hashlib.sha256(" ".join(APPLETS).encode()).hexdigest()[:12]
)
VENV_BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright drives it (its own download can't run here)
TERMINAL = {"succeeded", "failed", "cancelled"}


def podman_runtime_flag() -> list[str]:
    """runc on cgroup v1/hybrid hosts, where crun fails (see ENVIRONMENT.md)."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists() or not shutil.which("runc"):
        return []
    return ["--runtime", "runc"]


def build_test_image(user: str | None = None) -> None:
    """A busybox rootfs imported with `podman import`: ~1 MB, built offline in a second."""
    exists = ["podman", "image", "exists", TEST_IMAGE]
    if subprocess.run(as_user(user, exists) if user else exists, check=False).returncode == 0:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rootfs"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        os.chmod(tmp, 0o755)
        tar = subprocess.run(
            ["tar", "-C", str(root), "-c", "."], check=True, capture_output=True
        ).stdout
        command = ["podman", *podman_runtime_flag(), "import", "-", TEST_IMAGE]
        if user is not None:
            command = as_user(user, command)
        subprocess.run(command, input=tar, check=True, capture_output=True)


def as_user(user: str, command: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """setpriv execs (no intermediate process), so signals reach the command itself."""
    environment = [f"{k}={v}" for k, v in (env or {}).items()]
    return [
        "setpriv",
        f"--reuid={user}",
        f"--regid={user}",
        "--init-groups",
        "env",
        *environment,
        *command,
    ]


def start_podman_service(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    socket_path = workdir / "podman.sock"
    with (workdir / "service.log").open("wb") as log:
        process = subprocess.Popen(
            [
                "podman",
                *podman_runtime_flag(),
                "system",
                "service",
                "--time=0",
                f"unix://{socket_path}",
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    wait_until(socket_path.exists, 30, "podman service socket")
    time.sleep(0.2)
    return process, socket_path


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class UserConnection(UnixConnection):
    """A connection made by `user`: the daemon's SO_PEERCRED sees that user."""

    def __init__(self, path: Path, user: str, timeout: float = 30) -> None:
        super().__init__(path, timeout)
        self.user = user

    def connect(self) -> None:
        self.sock = connect_as(self.user, Path(self.path))
        self.sock.settimeout(self.timeout)


def connect_as(user: str, path: Path) -> socket.socket:
    """A Unix socket connected to `path` by a child process running as `user` (uid, gid and
    groups) and handed back over a socket pair: the peer credentials the daemon reads are
    that user's, while this process stays root and needs nothing installed for the user."""
    entry = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: as the user, connect, hand the socket over, and go
        status = 1
        try:
            parent.close()
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            socket.send_fds(child, [b"s"], [sock.fileno()])
            status = 0
        finally:
            os._exit(status)
    child.close()
    try:
        _, fds, _, _ = socket.recv_fds(parent, 1, 1)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    if not fds:
        raise PermissionError(f"{user} could not connect to {path}")
    return socket.socket(fileno=fds[0])


@dataclass
class Response:
    status: int
    body: Any
    text: str


class Daemon:
    """A real jobd process with its own data directory, socket and port."""

    def __init__(
        self,
        home: Path,
        *,
        podman_socket: Path | None = None,
        config: str | None = None,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        tcp: bool = True,
        bin_dir: Path = VENV_BIN,
    ) -> None:
        self.home = home
        self.bin_dir = bin_dir
        self.data_dir = home / "data"
        self.socket = home / "run" / "jobd.sock"
        self.port = free_port()
        self.podman_socket = podman_socket
        self.user = user
        self.extra_env = dict(env or {})
        self.tcp = tcp
        self.config_file: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "jobd.log"
        home.mkdir(parents=True, exist_ok=True)
        if config is not None:
            self.config_file = home / "jobd.toml"
            self.config_file.write_text(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def command(self) -> list[str]:
        args = [
            str(self.bin_dir / "jobd"),
            "--data-dir",
            str(self.data_dir),
            "--socket",
            str(self.socket),
            "--port",
            str(self.port),
            "--log-level",
            "debug",
        ]
        if self.podman_socket is not None:
            args += ["--podman-socket", str(self.podman_socket)]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        if not self.tcp:
            args.append("--no-tcp")
        return args

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, **self.extra_env}
        command = self.command()
        if self.user is not None:
            command = as_user(self.user, command, self.extra_env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=self.home)
        wait_until(self._ready, timeout, f"jobd to serve (log: {self.log_path})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"jobd exited {self.process.returncode}:\n{self.log()}")
        try:
            return self.get("/v1/health").status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def stop(self, *, kill_containers: bool) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if kill_containers and self.user is None:
            self.remove_containers()

    def remove_containers(self) -> None:
        ids = subprocess.run(
            ["podman", "ps", "-aq", "--filter", "label=io.jobd.managed=true"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        mine = [i for i in ids if self._is_mine(i)]
        if mine:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", *mine], capture_output=True, check=False
            )

    def _is_mine(self, container_id: str) -> bool:
        out = subprocess.run(
            [
                "podman",
                "inspect",
                "--format",
                '{{index .Config.Labels "io.jobd.run-id"}}',
                container_id,
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return bool(out) and (self.data_dir / "logs" / out).exists()

    # -- HTTP -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
        user: str | None = None,
    ) -> Response:
        """`user`: the request is that user's (the connection is made as them)."""
        connection = (
            UserConnection(self.socket, user, timeout)
            if user is not None
            else UnixConnection(self.socket, timeout)
        )
        payload = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Response(status=response.status, body=parsed, text=text)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Response:
        return self.request("POST", path, body if body is not None else {})

    def submit(self, **spec: Any) -> dict[str, Any]:
        spec.setdefault("image", TEST_IMAGE)
        spec.setdefault("network", "none")
        response = self.post("/v1/jobs", spec)
        assert response.status == 201, response.text
        return response.body  # type: ignore[no-any-return]

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/runs/{run_id}")
        assert response.status == 200, response.text
        return response.body  # type: ignore[no-any-return]

    def wait_status(
        self,
        run_id: str,
        statuses: set[str] | frozenset[str] = frozenset(TERMINAL),
        timeout: float = 60,
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in statuses else None

        return wait_until(reached, timeout, f"{run_id} to reach {sorted(statuses)}")  # type: ignore[no-any-return]

    def logs_text(self, run_id: str, query: str = "") -> str:
        return self.get(f"/v1/runs/{run_id}/logs?format=text{query}").text

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/v1/runs/{run_id}/events").body["events"]  # type: ignore[no-any-return]

    # -- jobctl -----------------------------------------------------------------------

    def jobctl(
        self, *args: str, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """jobctl on this daemon's socket; its stdin is `stdin`, or /dev/null."""
        env = {**os.environ, "JOBD_SOCKET": str(self.socket)}
        return subprocess.run(
            [str(self.bin_dir / "jobctl"), *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
        )


def removed_soon(run_id: str, timeout: float = 10) -> bool:
    """Whether the run's container is gone within `timeout`: jobd removes an ended run's
    container in the background, just after recording the end."""
    deadline = time.monotonic() + timeout
    while container_state(run_id) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def container_state(run_id: str) -> str | None:
    result = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Status}}", run_id],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None
