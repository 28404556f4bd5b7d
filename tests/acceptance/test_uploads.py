"""Inputs, through the real daemon and podman: a file uploaded (streamed, checksummed, its
content kept once) is visible read-only at /inputs/<name>; `jobctl run --input FILE` uploads
and attaches in one step, and reuses what jobd already has; a job is made of a recipe and a
slug alone; unknown, expired, oversized and in-use uploads are refused clearly."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon, UnixConnection

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

READ = "ls -l /inputs; cat /inputs/*; touch /inputs/scene.blend 2>&1 || true"


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    path = tmp_path / "scene.blend"
    path.write_bytes(b"a scene\n" + os.urandom(3 * 1024 * 1024))  # more than a piece
    return path


def upload(daemon: Daemon, data: bytes, name: str) -> dict[str, object]:
    response = daemon.request(
        "POST",
        f"/v1/uploads?name={name}",
        raw=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status == 201, response.text
    return response.body  # type: ignore[no-any-return]


def chunked_upload(daemon: Daemon, pieces: Iterable[bytes]) -> tuple[int, bytes]:
    """An upload that does not declare its length: (status, body)."""
    connection = UnixConnection(daemon.socket)
    try:
        connection.request("POST", "/v1/uploads?name=big", body=iter(pieces), encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_an_uploaded_input_is_visible_read_only_at_inputs(daemon: Daemon, scene: Path) -> None:
    added = daemon.jobctl("upload", "add", str(scene), "--json")
    assert added.returncode == 0, added.stderr
    slug = daemon.get("/v1/uploads").body["uploads"][0]["slug"]
    doc = daemon.get(f"/v1/uploads/{slug}").body
    assert doc["sha256"] == hashlib.sha256(scene.read_bytes()).hexdigest()
    assert doc["sizeBytes"] == scene.stat().st_size and doc["expiresAt"]
    command = "sha256sum /inputs/scene.blend; touch /inputs/scene.blend 2>&1 || true"
    ran = daemon.jobctl(
        "run", "--wait", "--network", "none", "--input", slug, TEST_IMAGE, "--", "sh", "-c", command
    )
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[1]
    text = daemon.logs_text(run_id)
    assert f"{doc['sha256']}  /inputs/scene.blend" in text
    assert "Read-only file system" in text
    job = daemon.get(f"/v1/jobs/{ran.stdout.split()[0]}").body
    assert job["inputs"] == [
        {"slug": slug, "name": "scene.blend", "sha256": doc["sha256"],
         "sizeBytes": doc["sizeBytes"], "path": "/inputs/scene.blend"}
    ]  # fmt: skip
    held = daemon.get(f"/v1/uploads/{slug}").body
    assert held["usedBy"] == [job["id"]] and held["expiresAt"] is None


def test_run_input_uploads_once_and_the_same_content_is_kept_once(
    daemon: Daemon, scene: Path
) -> None:
    for _ in range(2):
        ran = daemon.jobctl(
            "run",
            "--wait",
            "--input",
            str(scene),
            TEST_IMAGE,
            "--",
            "wc",
            "-c",
            "/inputs/scene.blend",
        )
        assert ran.returncode == 0, ran.stderr
        assert f"{scene.stat().st_size} /inputs/scene.blend" in daemon.logs_text(
            ran.stdout.split()[1]
        )
    uploads = daemon.get("/v1/uploads").body["uploads"]
    assert len(uploads) == 1, "the second run reused the upload jobd had"
    again = upload(daemon, scene.read_bytes(), "copy.blend")  # a new upload, the same content
    blobs = list((daemon.data_dir / "uploads" / "blobs").iterdir())
    assert [b.name for b in blobs] == [again["sha256"]]
    assert blobs[0].stat().st_nlink == 3, "the blob and both uploads' files: one copy on disk"


def test_a_job_of_a_recipe_and_a_slug_alone(daemon: Daemon) -> None:
    recipe = {"name": "render", "image": TEST_IMAGE, "network": "none",
              "command": ["sh", "-c", "cat /inputs/*"]}  # fmt: skip
    assert daemon.post("/v1/recipes", recipe).status == 201
    slug = upload(daemon, b"frame spec\n", "job.txt")["slug"]
    job = daemon.post("/v1/jobs", {"recipe": "render", "slug": slug}).body
    run = daemon.wait_status(job["latestRunId"])
    assert run["status"] == "succeeded"
    assert daemon.logs_text(run["id"]) == "frame spec\n"


def test_bad_uploads_and_inputs_are_refused_clearly(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(config="[uploads]\nmax_bytes = 1000\nexpire_days = 0.00001\n")
    too_big = daemon.request("POST", "/v1/uploads?name=big", raw=b"x" * 1001)
    assert too_big.status == 413 and "1000 bytes at most" in too_big.body["error"]["message"]
    streamed = chunked_upload(daemon, [b"x" * 600, b"x" * 600])  # no length declared
    assert streamed[0] == 413 and b"over the limit" in streamed[1], streamed
    assert daemon.request("POST", "/v1/uploads?name=a/b", raw=b"x").status == 400
    unknown = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "inputs": ["upload-" + "0" * 32]})
    assert unknown.status == 422 and "upload-" + "0" * 32 in unknown.text
    slug = upload(daemon, b"soon gone", "a.txt")["slug"]
    time.sleep(1.0)  # expire_days = 0.00001: under a second
    expired = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "inputs": [slug]})
    assert expired.status == 422 and f"{slug} has expired" in expired.text
    assert daemon.get("/v1/uploads").body["uploads"][0]["slug"] == slug, "changed nothing"
    assert list((daemon.data_dir / "uploads" / "incoming").iterdir()) == []


def test_an_upload_a_job_names_is_not_deleted_until_the_job_is(daemon: Daemon) -> None:
    slug = upload(daemon, b"data", "a.txt")["slug"]
    job = daemon.submit(command=["true"], inputs=[slug])
    refused = daemon.request("DELETE", f"/v1/uploads/{slug}")
    assert refused.status == 409 and job["id"] in refused.text
    changed = daemon.request("PATCH", f"/v1/jobs/{job['id']}", {"inputs": []})
    assert changed.status == 200 and changed.body["inputs"] == []
    removed = daemon.jobctl("upload", "rm", slug)
    assert removed.returncode == 0, removed.stderr
    assert list((daemon.data_dir / "uploads" / "files").iterdir()) == []
    assert list((daemon.data_dir / "uploads" / "blobs").iterdir()) == []
