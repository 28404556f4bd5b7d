"""A real jobd for a benchmark: its own data directory and its own podman service, as a user
would run it, driven over its Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
import psutil

BIN = Path(sys.executable).parent
IMAGE = "localhost/jobd/busybox:latest"  # jobd's embedded image, built on first use
BLOCKER_PLAN = "bench-whole-node"


class BenchDaemon:
    def __init__(self, home: Path, *, config: str = "", tcp: bool = False) -> None:
        self.home = home
        self.socket = home / "jobd.sock"
        self.data_dir = home / "data"
        self.port = _free_port() if tcp else None
        self.process: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        (home / "jobd.toml").write_text(
            f"[plans.{BLOCKER_PLAN}]\nmemory_mb = 64\ncpus = {cpus}\n{config}"
        )

    def start(self) -> float:
        """Start jobd and return how long it took until its API answered."""
        began = time.perf_counter()
        with (self.home / "jobd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "jobd"),
                    "--data-dir",
                    str(self.data_dir),
                    "--socket",
                    str(self.socket),
                    *(["--port", str(self.port)] if self.port else ["--no-tcp"]),
                    "--config",
                    str(self.home / "jobd.toml"),
                ],
                stdout=log,
                stderr=log,
            )
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"jobd exited; see {self.home / 'jobd.log'}")
            time.sleep(0.01)
        return time.perf_counter() - began

    def _answers(self) -> bool:
        """A blocking check: start() may be called with or without an event loop running."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2)
            probe.connect(str(self.socket))
            probe.sendall(b"GET /v1/plans HTTP/1.0\r\nHost: jobd\r\n\r\n")
            return probe.recv(12).endswith(b"200")
        except OSError:
            return False
        finally:
            probe.close()

    def rss_bytes(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.remove_containers()

    def remove_containers(self) -> None:
        """Containers of this jobd (by its instance label), so nothing outlives the bench."""
        instance = (self.data_dir / "instance-id").read_text().strip()
        remove_labelled_containers(f"io.jobd.instance={instance}")

    def session(self, connections: int = 100) -> aiohttp.ClientSession:
        connector = aiohttp.UnixConnector(path=str(self.socket), limit=connections)
        return aiohttp.ClientSession(connector=connector)

    def tcp_session(self, connections: int = 100) -> aiohttp.ClientSession:
        """A session on the TCP port (the daemon was made with tcp=True): requests to
        http://jobd/... go to it, as on the socket."""
        assert self.port is not None
        resolver = _Loopback(self.port)
        connector = aiohttp.TCPConnector(limit=connections, resolver=resolver)
        return aiohttp.ClientSession(connector=connector)


class _Loopback(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1 on one port, so the scenarios' http://jobd URLs
    reach the TCP port unchanged."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> Any:
        return [{"hostname": host, "host": "127.0.0.1", "port": self.port, "family": family,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remove_labelled_containers(label: str) -> None:
    """Remove every container carrying `label` (key=value), running or not."""
    ids = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True, check=False)


async def post_json(
    http: aiohttp.ClientSession, path: str, body: Any, headers: dict[str, str] | None = None
) -> Any:
    return await post_raw(
        http,
        path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


async def post_raw(
    http: aiohttp.ClientSession, path: str, body: bytes, headers: dict[str, str]
) -> Any:
    """A body sent exactly as given (a signed request signs these bytes)."""
    async with http.post(f"http://jobd{path}", data=body, headers=headers) as response:
        payload = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {payload}")
        return payload


async def get_json(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(f"http://jobd{path}") as response:
        payload = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"GET {path}: {response.status} {payload}")
        return payload


async def wait_for_status(
    http: aiohttp.ClientSession, run_id: str, statuses: set[str], *, interval: float = 0.01
) -> dict[str, Any]:
    async with asyncio.timeout(120):
        while True:
            run = await get_json(http, f"/v1/runs/{run_id}")
            if run["status"] in statuses:
                return run  # type: ignore[no-any-return]
            await asyncio.sleep(interval)
