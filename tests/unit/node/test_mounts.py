"""A job's host paths checked against the machine and the configuration, and named volumes'
directories made on first use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobd.config import Config, VolumeSettings
from jobd.domain.volumes import HostMount, VolumeMount
from jobd.errors import Forbidden, NotHere
from jobd.node.mounts import check_host_paths, resolved


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
    assert resolved(given, config) == (
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
        check_host_paths([VolumeMount(source=str(tmp_path / source), target="/x")], config)


def test_a_parent_of_jobds_data_is_refused_even_where_allowed(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path / "allowed" / "jobd",
        socket=tmp_path / "s",
        volumes=VolumeSettings(allowed_host_paths=(tmp_path,)),
    )
    config.data_dir.mkdir(parents=True)
    with pytest.raises(Forbidden, match="jobd's own data"):
        check_host_paths([VolumeMount(source=str(tmp_path / "allowed"), target="/x")], config)


def test_nothing_is_allowed_unless_configured(config: Config, tmp_path: Path) -> None:
    closed = dataclasses.replace(config, volumes=VolumeSettings())
    with pytest.raises(Forbidden, match=r"allowed: none \(volumes.allowed_host_paths\)"):
        check_host_paths([VolumeMount(source=str(tmp_path / "allowed"), target="/x")], closed)
