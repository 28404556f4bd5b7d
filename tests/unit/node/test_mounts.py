"""A job's host paths checked against the machine and the configuration, and named volumes'
directories made on first use."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.config import Config
from jobd.config.tables import VolumeSettings
from jobd.domain.identity import Identity, RunAs
from jobd.domain.volumes import HostMount, VolumeMount
from jobd.errors import Forbidden, NotHere
from jobd.node.mounts import check_host_paths, resolved

DAEMON = Identity(mode=RunAs.DAEMON_USER)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    allowed = tmp_path / "allowed"
    (allowed / "in").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return Config(
        data_dir=tmp_path / "data",
        socket=tmp_path / "jobd.sock",
        volumes=VolumeSettings(allowed_host_paths=(allowed,)),
    )


def test_named_volumes_and_allowed_paths_resolve(config: Config, tmp_path: Path) -> None:
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "allowed" / "in")
    given = [
        VolumeMount(source="cache", target="/data"),
        VolumeMount(source=str(tmp_path / "allowed" / "link"), target="/in", read_only=True),
    ]
    assert resolved(given, config, DAEMON) == (
        HostMount(host_path=str(config.volumes_dir / "cache"), target="/data"),
        HostMount(host_path=str(tmp_path / "allowed" / "in"), target="/in", read_only=True),
    )
    made = config.volumes_dir / "cache"
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o777


@pytest.mark.parametrize(
    ("source", "error", "says"),
    [
        ("elsewhere", Forbidden, "is not within a host path jobs may mount"),
        ("allowed/missing", NotHere, "does not exist"),
        ("allowed/escape", Forbidden, "is not within"),
        ("data", Forbidden, "holds jobd's own data"),
    ],
)
def test_what_may_not_be_mounted(
    config: Config, tmp_path: Path, source: str, error: type[Exception], says: str
) -> None:
    (tmp_path / "allowed" / "escape").symlink_to(tmp_path / "elsewhere")
    config.data_dir.mkdir()
    with pytest.raises(error, match=says):
        check_host_paths([VolumeMount(source=str(tmp_path / source), target="/x")], config, DAEMON)


def test_a_parent_of_jobds_data_is_refused_even_where_allowed(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path / "allowed" / "jobd",
        socket=tmp_path / "s",
        volumes=VolumeSettings(allowed_host_paths=(tmp_path,)),
    )
    config.data_dir.mkdir(parents=True)
    with pytest.raises(Forbidden, match="jobd's own data"):
        check_host_paths(
            [VolumeMount(source=str(tmp_path / "allowed"), target="/x")], config, DAEMON
        )


def test_nothing_is_allowed_unless_configured(config: Config, tmp_path: Path) -> None:
    closed = dataclasses.replace(config, volumes=VolumeSettings())
    with pytest.raises(Forbidden, match=r"allowed: none \(volumes.allowed_host_paths\)"):
        check_host_paths(
            [VolumeMount(source=str(tmp_path / "allowed"), target="/x")], closed, DAEMON
        )


ALICE = Identity(mode=RunAs.OWNER, uid=2001, gid=2001, groups=(2001, 3000))


@pytest.fixture
def open_config() -> Iterator[Config]:
    """Allowed host paths in a directory anyone may enter (pytest's are root's alone)."""
    if os.getuid() != 0:
        pytest.skip("giving files to other users needs root")
    base = Path(tempfile.mkdtemp(prefix="jobd-mounts-"))
    base.chmod(0o755)
    (base / "allowed" / "in").mkdir(parents=True)
    (base / "allowed").chmod(0o755)
    try:
        yield Config(
            data_dir=base / "data",
            socket=base / "jobd.sock",
            volumes=VolumeSettings(allowed_host_paths=(base / "allowed",)),
        )
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("owner", "group", "mode", "read_only", "allowed"),
    [
        (2001, 0, 0o700, False, True),  # hers
        (2002, 0, 0o700, True, False),  # another user's, private
        (2002, 0, 0o755, True, True),  # another user's, readable by all
        (2002, 0, 0o755, False, False),  # ... but not writable
        (2002, 3000, 0o770, False, True),  # a group she is in
        (2002, 3001, 0o770, True, False),  # a group she is not in
    ],
)
def test_host_paths_are_checked_as_the_owner(
    open_config: Config, owner: int, group: int, mode: int, read_only: bool, allowed: bool
) -> None:
    config = open_config
    target = config.volumes.allowed_host_paths[0] / "in"
    os.chown(target, owner, group)
    target.chmod(mode)
    mounts = [VolumeMount(source=str(target), target="/x", read_only=read_only)]
    if allowed:
        check_host_paths(mounts, config, ALICE)
        assert check_host_paths(mounts, config, DAEMON) is None
    else:
        with pytest.raises(Forbidden, match="runs as uid 2001, which may not"):
            check_host_paths(mounts, config, ALICE)


def test_every_directory_above_must_be_searchable(open_config: Config) -> None:
    closed = open_config.volumes.allowed_host_paths[0] / "closed"
    inner = closed / "data"
    inner.mkdir(parents=True)
    os.chown(inner, 2001, 2001)
    closed.chmod(0o700)  # root's, not hers to enter
    mounts = [VolumeMount(source=str(inner), target="/x", read_only=True)]
    with pytest.raises(Forbidden, match="may not read"):
        check_host_paths(mounts, open_config, ALICE)
    closed.chmod(0o711)  # searchable, not listable: enough to reach what is inside
    check_host_paths(mounts, open_config, ALICE)
