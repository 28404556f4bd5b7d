"""What a release is: `python -m build` makes an sdist and, from it, a wheel, both named with
jobd's version and carrying everything jobd reads at run time; the wheel installed into a
fresh virtualenv (its dependencies from the package index) gives a jobd that runs a job and
a jobctl that drives it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from jobd import __version__
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
# what jobd reads from its own package at run time
PACKAGE_DATA = (
    "jobd/openapi.json",
    "jobd/py.typed",
    "jobd/web/templates/base.html",
    "jobd/web/templates/run.html",
    "jobd/web/static/htmx.min.js",
    "jobd/web/static/uPlot.iife.min.js",
    "jobd/web/static/LICENSES.md",
    "jobd/systemd/units/jobd.service",  # what `jobd install` puts in place
    "jobd/systemd/units/jobd-user.service",
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, from a copy of the working tree (a build
    writes into its source directory)."""
    work = tmp_path_factory.mktemp("release")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT, "test-artifacts"))
    out = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_the_sdist_and_the_wheel_carry_the_version_and_what_jobd_reads(dist: Path) -> None:
    wheel = dist / f"jobd-{__version__}-py3-none-any.whl"
    sdist = dist / f"jobd-{__version__}.tar.gz"
    assert sorted(p.name for p in dist.iterdir()) == sorted([wheel.name, sdist.name])
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    for path in PACKAGE_DATA:
        assert path in in_wheel, path
    metadata = zipfile.ZipFile(wheel).read(f"jobd-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    assert (
        "jobd = jobd.daemon:main"
        in zipfile.ZipFile(wheel).read(f"jobd-{__version__}.dist-info/entry_points.txt").decode()
    )
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for path in (*PACKAGE_DATA, "pyproject.toml", "README.md", "examples/README.md"):
        assert path in in_sdist, path
    assert any(name.startswith("systemd/") for name in in_sdist)


def test_the_wheel_in_a_fresh_virtualenv_runs_a_job(
    dist: Path, tmp_path: Path, podman_socket: Path, test_image: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = dist / f"jobd-{__version__}-py3-none-any.whl"
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for program in ("jobd", "jobctl"):
        version = subprocess.run(
            [str(venv / "bin" / program), "--version"], capture_output=True, text=True, check=True
        )
        assert version.stdout.strip() == f"{program}, version {__version__}"
    daemon = Daemon(tmp_path / "home", podman_socket=podman_socket, bin_dir=venv / "bin")
    try:
        daemon.start()
        assert daemon.get("/v1/health").body["version"] == __version__
        assert daemon.get("/v1/openapi.json").status == 200  # the document, from the package
        ran = daemon.jobctl("run", "--wait", "--network", "none", TEST_IMAGE, "--", "echo", "hi")
        assert ran.returncode == 0, ran.stderr
        assert daemon.jobctl("logs", ran.stdout.split()[1]).stdout == "hi\n"
    finally:
        daemon.stop(kill_containers=True)
