"""Many people on one server, through the real daemon and podman: two real local users (made
here) each see and act on their own jobs, runs, recipes, volumes and uploads; another user's
are 404, never 403, so ids do not leak; a configured admin and root see everyone's."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import ALICE, BOB, CAROL, call, submit
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


@pytest.fixture
def daemon(team_daemon: Daemon) -> Daemon:
    return team_daemon


def test_each_user_sees_and_acts_on_their_own_jobs_alone(daemon: Daemon) -> None:
    alices = submit(daemon, ALICE, command=["sleep", "300"])
    bobs = submit(daemon, BOB, command=["echo", "hi from bob"])
    run_id = alices["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    daemon.wait_status(bobs["latestRunId"])
    assert alices["owner"]["user"] == ALICE and bobs["owner"]["user"] == BOB

    def listed(user: str, query: str = "") -> list[str]:
        response = call(daemon, user, "GET", f"/v1/jobs{query}")
        assert response.status == 200, response.text
        return [job["id"] for job in response.body["jobs"]]

    assert listed(ALICE) == [alices["id"]]
    assert listed(BOB) == [bobs["id"]]

    job, run = f"/v1/jobs/{alices['id']}", f"/v1/runs/{run_id}"
    for method, path in [
        ("GET", job),
        ("GET", f"{job}/status"),
        ("GET", f"{job}/runs"),
        ("GET", f"{job}/logs"),
        ("GET", f"{job}/metrics"),
        ("PATCH", job),
        ("POST", f"{job}/runs"),
        ("DELETE", job),
        ("GET", run),
        ("GET", f"{run}/events"),
        ("GET", f"{run}/logs"),
        ("GET", f"{run}/metrics"),
        ("GET", f"{run}/outputs"),
        ("GET", f"{run}/outputs/x.txt"),
        ("GET", f"{run}/exec?cmd=true"),
        ("POST", f"{run}/cancel"),
        ("POST", f"{run}/stop"),
    ]:
        body = {"name": "taken"} if method == "PATCH" else None
        response = call(daemon, BOB, method, path, body)
        assert response.status == 404, f"{method} {path}: {response.status} {response.text}"
        assert response.body["error"]["code"] == "not_found"
    assert daemon.run(run_id)["status"] == "running", "bob's cancel changed nothing"
    assert daemon.get(job).body["name"] is None, "nor did his update"

    refused = call(daemon, BOB, "GET", "/v1/jobs?allUsers=true")
    assert refused.status == 403 and "not an admin" in refused.text
    assert set(listed(CAROL, "?allUsers=true")) >= {alices["id"], bobs["id"]}
    assert listed(CAROL) == [], "an admin lists their own unless asked for everyone's"
    assert call(daemon, CAROL, "GET", job).status == 200, "an admin reaches any job by id"
    shown = daemon.jobctl("ls", "--all-users").stdout.splitlines()
    assert shown[0].split()[:2] == ["USER", "JOB"]
    assert {line.split()[0] for line in shown[1:]} == {ALICE, BOB}

    cancelled = call(daemon, ALICE, "POST", f"{run}/cancel")
    assert cancelled.status == 202, cancelled.text
    assert daemon.wait_status(run_id)["status"] == "cancelled"


def test_recipes_volumes_and_uploads_are_their_owners_alone(daemon: Daemon) -> None:
    recipe = {"name": "alices-recipe", "image": TEST_IMAGE, "command": ["true"]}
    assert call(daemon, ALICE, "POST", "/v1/recipes", recipe).status == 201
    assert call(daemon, ALICE, "POST", "/v1/volumes", {"name": "alices-data"}).status == 201
    upload = daemon.request(
        "POST", "/v1/uploads?name=a.txt", raw=b"alice's\n", user=ALICE,
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert upload.status == 201, upload.text
    slug = upload.body["slug"]

    for path in ("/v1/recipes/alices-recipe", "/v1/volumes/alices-data", f"/v1/uploads/{slug}"):
        assert call(daemon, BOB, "GET", path).status == 404, path
        assert call(daemon, BOB, "DELETE", path).status == 404, path
        assert call(daemon, ALICE, "GET", path).status == 200, path
    for path, key in (("/v1/recipes", "recipes"), ("/v1/volumes", "volumes"),
                      ("/v1/uploads", "uploads")):  # fmt: skip
        assert call(daemon, BOB, "GET", path).body[key] == [], path
        assert len(call(daemon, ALICE, "GET", path).body[key]) == 1, path
        assert len(call(daemon, CAROL, "GET", f"{path}?allUsers=true").body[key]) >= 1, path

    taken = call(daemon, BOB, "PUT", "/v1/recipes/alices-recipe", recipe)
    assert taken.status == 409 and "another user's recipe" in taken.text
    of_recipe = call(daemon, BOB, "POST", "/v1/jobs", {"recipe": "alices-recipe"})
    assert of_recipe.status == 400 and "no recipe named" in of_recipe.text
    mounting = call(
        daemon, BOB, "POST", "/v1/jobs",
        {"image": TEST_IMAGE, "command": ["true"], "volumes": [
            {"source": "alices-data", "target": "/data"}]},
    )  # fmt: skip
    assert mounting.status == 409 and "another user's volume" in mounting.text
    reading = call(
        daemon, BOB, "POST", "/v1/jobs", {"image": TEST_IMAGE, "command": ["true"],
                                          "inputs": [slug]},
    )  # fmt: skip
    assert reading.status == 422 and slug in reading.text

    job = submit(daemon, ALICE, command=["cat", "/inputs/a.txt"], inputs=[slug],
                 volumes=[{"source": "alices-data", "target": "/data"}])  # fmt: skip
    assert daemon.wait_status(job["latestRunId"])["status"] == "succeeded"
    assert daemon.logs_text(job["latestRunId"]) == "alice's\n"
