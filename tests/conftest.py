"""Shared fixtures: a real `podman system service` on a temporary socket, a tiny locally built
image (no registry is reachable), and real `jobd` processes driven through HTTP and jobctl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    CHROMIUM,
    TEST_IMAGE,
    Daemon,
    build_test_image,
    start_podman_service,
)

# jobd's SSH gateway has one default port per user: the daemons tests start would fight over
# it, so it is off unless a test turns it on (tests/acceptance/test_ssh.py gives each its own)
os.environ.setdefault("JOBD_SSH_PORT", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without podman, podman tests are skipped on a workstation but fail in CI: CI installs
    podman, so a missing one there is a broken setup, not a reason to pass. Tests that need a
    real GPU are skipped where NVML finds none (the development and CI machines). Browser
    tests are skipped without Debian's chromium, except in CI, which installs it."""
    if not _has_gpu():
        skip_gpu = pytest.mark.skip(reason="no NVIDIA GPU (NVML finds none)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
    if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
        skip_browser = pytest.mark.skip(reason=f"no {CHROMIUM} (apt-get install chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip_browser)
    if shutil.which("podman") is not None or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="podman is not installed")
    for item in items:
        if "podman" in item.keywords:
            item.add_marker(skip)


def _has_gpu() -> bool:
    from jobd.node.gpus import NvmlSource

    return bool(NvmlSource().read().gpus)


@pytest.fixture(scope="session")
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("podman-service")
    process, socket = start_podman_service(workdir)
    try:
        yield socket
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def test_image() -> str:
    build_test_image()
    return TEST_IMAGE


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_factory(tmp_path: Path, podman_socket: Path, test_image: str) -> Iterator[DaemonFactory]:
    """Starts real jobd processes (sharing the session's podman service unless told
    otherwise) and stops them, and their containers, after the test."""
    started: list[Daemon] = []

    def start(**kwargs: Any) -> Daemon:
        kwargs.setdefault("podman_socket", podman_socket)
        d = Daemon(tmp_path / f"d{len(started)}", **kwargs)
        started.append(d)  # before start: a daemon that fails to start is still stopped
        d.start()
        return d

    yield start
    for d in started:
        d.stop(kill_containers=True)


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> Daemon:
    return daemon_factory()
