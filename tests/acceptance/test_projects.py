"""Projects, through the real daemon and podman with real local users: a job alice puts in
project `vision` is seen by bob (a member) in his listing, by id, with its runs and logs; bob
may cancel and re-run it but not change it, delete it or open a shell in it (its runs have
alice's powers, not his); dave (no member) gets 404 for all of it and may not put a job in the
project; a recipe shared with the project is used by its members alone."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import ALICE, BOB, CAROL, DAVE, call, submit, system_daemon
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

CONFIG = f"""admins = ["{CAROL}"]
[projects.vision]
members = ["{ALICE}", "{BOB}"]
[projects.audio]
members = ["{DAVE}"]
"""


@pytest.fixture
def daemon(users: None, podman_socket: Path, test_image: str, shared_dir: Path) -> Iterator[Daemon]:
    with system_daemon(shared_dir, podman_socket, CONFIG) as d:
        yield d


def listed(daemon: Daemon, user: str, query: str = "") -> list[str]:
    response = call(daemon, user, "GET", f"/v1/jobs{query}")
    assert response.status == 200, response.text
    return [job["id"] for job in response.body["jobs"]]


def test_a_projects_members_see_and_control_its_jobs_and_nobody_else_does(
    daemon: Daemon,
) -> None:
    shared = submit(daemon, ALICE, command=["sleep", "300"], project="vision")
    private = submit(daemon, ALICE, command=["echo", "mine"])
    bobs = submit(daemon, BOB, command=["echo", "bob"])
    assert shared["project"] == "vision" and private["project"] is None
    run_id = shared["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    job, run = f"/v1/jobs/{shared['id']}", f"/v1/runs/{run_id}"

    assert set(listed(daemon, BOB)) == {shared["id"], bobs["id"]}, "his own and vision's"
    assert listed(daemon, BOB, "?project=vision") == [shared["id"]]
    assert listed(daemon, DAVE) == [] and listed(daemon, DAVE, "?project=vision") == []
    for path in (job, f"{job}/status", f"{job}/runs", f"{job}/logs", run, f"{run}/events",
                 f"{run}/logs", f"{run}/outputs"):  # fmt: skip
        assert call(daemon, BOB, "GET", path).status == 200, path
        assert call(daemon, DAVE, "GET", path).status == 404, path
    assert call(daemon, BOB, "GET", f"/v1/jobs/{private['id']}").status == 404

    # what the job runs, and the job itself, stay alice's: a teammate gets 404 as dave does
    for method, path, body in [
        ("PATCH", job, {"command": ["cat", "/etc/shadow"]}),
        ("DELETE", job, None),
        ("GET", f"{run}/exec?cmd=true", None),
    ]:
        response = call(daemon, BOB, method, path, body)
        assert response.status == 404, f"{method} {path}: {response.status} {response.text}"
    assert daemon.get(job).body["command"] == ["sleep", "300"]

    assert call(daemon, DAVE, "POST", f"{run}/cancel").status == 404
    cancelled = call(daemon, BOB, "POST", f"{run}/cancel")
    assert cancelled.status == 202, cancelled.text
    assert daemon.wait_status(run_id)["status"] == "cancelled"
    again = call(daemon, BOB, "POST", f"{job}/runs")
    assert again.status == 201, again.text
    rerun = daemon.wait_status(again.body["id"], {"running"})
    assert rerun["limits"]["runAs"]["uid"] == pwd.getpwnam(ALICE).pw_uid, "it runs as alice"
    assert call(daemon, BOB, "POST", f"/v1/runs/{again.body['id']}/stop", {}).status == 202
    daemon.wait_status(again.body["id"])

    # an admin reaches it as any job; jobctl shows the project
    assert call(daemon, CAROL, "GET", job).status == 200
    shown = daemon.jobctl("show", shared["id"]).stdout
    assert "project:" in shown and "vision" in shown


def test_only_a_member_puts_a_job_in_a_project(daemon: Daemon) -> None:
    before = listed(daemon, CAROL, "?allUsers=true")
    refused = call(daemon, DAVE, "POST", "/v1/jobs", {"image": TEST_IMAGE, "project": "vision"})
    assert refused.status == 403, refused.text
    assert f"{DAVE} is not a member of project 'vision'" in refused.body["error"]["message"]
    unknown = call(daemon, ALICE, "POST", "/v1/jobs", {"image": TEST_IMAGE, "project": "nope"})
    assert unknown.status == 400 and "no project 'nope'" in unknown.text
    assert listed(daemon, CAROL, "?allUsers=true") == before, "nothing was written"
    mine = submit(daemon, DAVE, command=["true"], project="audio")
    assert mine["project"] == "audio"
    daemon.wait_status(mine["latestRunId"])


def test_a_recipe_shared_with_a_project_is_used_by_its_members_alone(daemon: Daemon) -> None:
    recipe = {"name": "vision-train", "image": TEST_IMAGE, "command": ["echo", "trained"],
              "network": "none", "project": "vision"}  # fmt: skip
    made = call(daemon, ALICE, "POST", "/v1/recipes", recipe)
    assert made.status == 201, made.text
    assert made.body["project"] == "vision"
    assert call(daemon, BOB, "GET", "/v1/recipes/vision-train").status == 200
    assert "vision-train" in [
        r["name"] for r in call(daemon, BOB, "GET", "/v1/recipes").body["recipes"]
    ]
    job = call(daemon, BOB, "POST", "/v1/jobs", {"recipe": "vision-train"})
    assert job.status == 201, job.text
    assert job.body["owner"]["user"] == BOB, "a job of a shared recipe is the user's own"
    daemon.wait_status(job.body["latestRunId"])

    assert call(daemon, DAVE, "GET", "/v1/recipes/vision-train").status == 404
    assert call(daemon, DAVE, "POST", "/v1/jobs", {"recipe": "vision-train"}).status == 400
    changed = call(daemon, BOB, "PATCH", "/v1/recipes/vision-train", {"command": ["id"]})
    assert changed.status == 404, "only its owner changes it"
    assert call(daemon, BOB, "DELETE", "/v1/recipes/vision-train").status == 404
    moved = call(daemon, ALICE, "PATCH", "/v1/recipes/vision-train", {"project": None})
    assert moved.status == 200 and moved.body["project"] is None
    assert call(daemon, BOB, "GET", "/v1/recipes/vision-train").status == 404
