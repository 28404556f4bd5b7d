"""Data a job keeps, through the real daemon and podman: named volumes across runs and jobs,
host paths within what the configuration allows (and nothing else), the working directory,
the user and environment files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory jobs may mount, with a file in it."""
    directory = tmp_path / "host"
    (directory / "in").mkdir(parents=True)
    (directory / "in" / "hello.txt").write_text("from the host\n")
    return directory


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, host: Path) -> Daemon:
    return daemon_factory(config=f'[volumes]\nallowed_host_paths = ["{host}"]\n')


def run_to_end(daemon: Daemon, *args: str) -> dict[str, object]:
    result = daemon.jobctl("run", "--wait", "--network", "none", *args)
    assert result.stdout, result.stderr
    return daemon.run(result.stdout.split()[1])


def test_a_named_volume_written_by_one_run_is_read_by_the_next(daemon: Daemon) -> None:
    write = "echo kept > /data/file; mkdir /data/sub; echo more > /data/sub/two"
    first = run_to_end(daemon, "-v", "cache:/data", TEST_IMAGE, "--", "sh", "-c", write)
    assert first["status"] == "succeeded"
    other_job = run_to_end(daemon, "-v", "cache:/mnt:ro", TEST_IMAGE, "--", "cat", "/mnt/file")
    assert other_job["status"] == "succeeded"
    assert daemon.logs_text(str(other_job["id"])) == "kept\n"
    read_only = run_to_end(
        daemon, "-v", "cache:/mnt:ro", TEST_IMAGE, "--", "sh", "-c", "echo x > /mnt/new"
    )
    assert read_only["status"] == "failed"
    assert "Read-only file system" in daemon.logs_text(str(read_only["id"]))
    volume = daemon.get("/v1/volumes/cache").body
    assert (volume["sizeBytes"], volume["files"], volume["usedBy"]) == (10, 2, [])
    assert volume["owner"]["user"] == "root"
    listed = daemon.jobctl("volume", "ls").stdout.splitlines()
    assert listed[1].split()[:4] == ["cache", "10", "B", "2"]


def test_a_volume_in_use_is_not_deleted(daemon: Daemon) -> None:
    job = daemon.submit(command=["sleep", "300"], volumes=[{"source": "busy", "target": "/d"}])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    refused = daemon.jobctl("volume", "rm", "busy")
    assert refused.returncode == 1 and f"in use by {run_id}" in refused.stderr
    assert daemon.get("/v1/volumes/busy").body["usedBy"] == [run_id]
    assert daemon.jobctl("cancel", run_id).returncode == 0
    daemon.wait_status(run_id)
    assert daemon.jobctl("volume", "rm", "busy").returncode == 0
    assert daemon.get("/v1/volumes/busy").status == 404
    assert not (daemon.data_dir / "volumes" / "busy").exists()
    created = daemon.jobctl("volume", "create", "fresh", "--label", "team=data")
    assert created.returncode == 0
    again = daemon.post("/v1/volumes", {"name": "fresh"})
    assert again.status == 409


def test_a_host_path_within_the_allowed_ones_is_mounted(daemon: Daemon, host: Path) -> None:
    run = run_to_end(
        daemon,
        "-v", f"{host}/in:/in:ro", "-v", f"{host}:/out",
        "--workdir", "/in", "--user", "1000:1000",
        TEST_IMAGE, "--", "sh", "-c", "pwd; id -u; cat hello.txt; echo made > /out/made",
    )  # fmt: skip
    assert run["status"] == "failed", "uid 1000 may not write the root-owned host directory"
    assert daemon.logs_text(str(run["id"])).splitlines()[:3] == ["/in", "1000", "from the host"]
    written = run_to_end(
        daemon, "-v", f"{host}:/out", TEST_IMAGE, "--", "sh", "-c", "echo hi > /out/made"
    )
    assert written["status"] == "succeeded" and (host / "made").read_text() == "hi\n"


@pytest.mark.parametrize(
    ("source", "status", "says"),
    [
        ("/etc", 403, "is not within a host path jobs may mount"),
        ("{host}/missing", 422, "does not exist on this machine"),
        ("{data}", 403, "holds jobd's own data"),
        ("{host}/../host/in", 400, "is not a clean absolute path"),
        ("{link}", 403, "is not within a host path jobs may mount"),
    ],
)
def test_a_host_path_that_may_not_be_mounted_is_refused_and_nothing_is_made(
    daemon: Daemon, host: Path, source: str, status: int, says: str
) -> None:
    (host / "escape").symlink_to("/etc")
    path = source.format(host=host, data=daemon.data_dir, link=host / "escape")
    before = daemon.get("/v1/jobs").body["jobs"]
    response = daemon.post(
        "/v1/jobs",
        {"image": TEST_IMAGE, "command": ["true"], "volumes": [{"source": path, "target": "/x"}]},
    )
    assert response.status == status, response.text
    assert says in response.body["error"]["message"]
    assert daemon.get("/v1/jobs").body["jobs"] == before


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("/outputs", "overlaps /outputs"),
        ("/inputs/scene", "overlaps /inputs"),
        ("/data/../x", "not a clean absolute path"),
        ("/", "too short"),
        ("relative", "does not match"),
    ],
)
def test_a_target_jobd_reserves_or_that_is_not_a_path_is_refused(
    daemon: Daemon, target: str, says: str
) -> None:
    response = daemon.post(
        "/v1/jobs",
        {"image": TEST_IMAGE, "volumes": [{"source": "v", "target": target}]},
    )
    assert response.status == 400 and says in response.body["error"]["message"]


def test_env_files_working_dir_and_user_apply(daemon: Daemon, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text('# settings\nA=from-file\nexport B="two words"\nC\n')
    run = run_to_end(
        daemon, "--env-file", str(env_file), "--env", "A=from-flag", "--workdir", "/tmp",
        "--user", "65534", TEST_IMAGE, "--", "sh", "-c", 'echo "$A|$B|$C"; pwd; id -u',
    )  # fmt: skip
    assert daemon.logs_text(str(run["id"])) == "from-flag|two words|\n/tmp\n65534\n"
    job = daemon.get(f"/v1/jobs/{run['jobId']}").body
    assert job["env"] == {"A": "from-flag", "B": "two words", "C": ""}, "values, not the file"
    assert (job["workingDir"], job["user"]) == ("/tmp", "65534")
    missing = daemon.jobctl("run", "--env-file", str(tmp_path / "none.env"), TEST_IMAGE)
    assert missing.returncode == 2 and "none.env" in missing.stderr


def test_a_recipes_volumes_are_frozen_into_the_job_and_update_replaces_them(
    daemon: Daemon,
) -> None:
    created = daemon.jobctl(
        "recipe", "create", "backup", "-v", "store:/data", "--workdir", "/data", TEST_IMAGE,
        "--", "sh", "-c", "echo $(pwd) > out",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job = daemon.post("/v1/jobs", {"recipe": "backup"}).body
    assert job["volumes"] == [{"source": "store", "target": "/data", "readOnly": False}]
    daemon.wait_status(job["latestRunId"])
    changed = daemon.jobctl("recipe", "update", "backup", "--no-volumes")
    assert changed.returncode == 0, changed.stderr
    assert daemon.get(f"/v1/jobs/{job['id']}").body["volumes"] == job["volumes"], "a snapshot"
    updated = daemon.jobctl("update", job["id"], "-v", "other:/o:ro", "--json")
    assert updated.returncode == 0, updated.stderr
    assert daemon.get(f"/v1/jobs/{job['id']}").body["volumes"] == [
        {"source": "other", "target": "/o", "readOnly": True}
    ]
    cleared = daemon.jobctl("update", job["id"], "--no-volumes")
    assert cleared.returncode == 0 and daemon.get(f"/v1/jobs/{job['id']}").body["volumes"] == []
