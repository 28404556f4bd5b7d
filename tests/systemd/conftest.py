"""Fixtures for tests under a real systemd: the image (built once, cached in podman's image
store), wheels of this working tree, and one booted machine per test module, with jobd
installed from those wheels, removed (and the cgroups nested runc leaves) after it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.machine import Machine, build_image, build_wheels, check_host


@pytest.fixture(scope="session")
def systemd_image() -> str:
    check_host()
    return build_image()


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory, systemd_image: str) -> Path:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest, systemd_image: str, wheels: Path) -> Iterator[Machine]:
    module = request.module.__name__.rpartition(".")[2].replace("_", "-")
    booted = Machine(f"jobd-{module}-{os.getpid()}", systemd_image, wheels)
    try:
        booted.boot()
        booted.install_jobd()
        yield booted
    finally:
        booted.remove()
