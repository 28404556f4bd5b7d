"""A job's volumes as written: names, clean paths, targets jobd keeps for itself."""

from __future__ import annotations

import pytest

from jobd.domain.volumes import VolumeMount, clean_path, mount_problem


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("/data", True),
        ("/data/sub/", True),
        ("/", True),
        ("/a/../b", False),
        ("/a/./b", False),
        ("//a", False),
        ("/a//b", False),
        ("relative", False),
        ("/a\u0000b", False),
    ],
)
def test_clean_paths(path: str, clean: bool) -> None:
    assert clean_path(path) is clean


def mounts(*pairs: tuple[str, str]) -> list[VolumeMount]:
    return [VolumeMount(source=s, target=t) for s, t in pairs]


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (mounts(("cache", "/data"), ("/srv/in", "/in")), None),
        (mounts(("-bad", "/data")), "volumes/0/source: '-bad' is neither a volume name"),
        (mounts(("/srv/../etc", "/x")), "volumes/0/source: '/srv/../etc' is not a clean"),
        (mounts(("v", "/")), "volumes/0/target: '/' is not a clean absolute path below /"),
        (mounts(("v", "/outputs")), "volumes/0/target: /outputs overlaps /outputs"),
        (mounts(("v", "/inputs/a")), "volumes/0/target: /inputs/a overlaps /inputs"),
        (mounts(("v", "/data"), ("w", "/data")), "volumes/1/target: /data is mounted twice"),
    ],
)
def test_what_is_wrong_with_a_jobs_volumes(given: list[VolumeMount], problem: str | None) -> None:
    found = mount_problem(given)
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_a_host_path_is_one_that_starts_with_a_slash() -> None:
    assert VolumeMount(source="/srv/data", target="/d").host_path
    assert not VolumeMount(source="cache", target="/d").host_path
    doc = {"source": "cache", "target": "/d", "readOnly": True}
    assert VolumeMount.from_api(doc).to_api() == doc
