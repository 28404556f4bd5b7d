"""Recipes (issue 4): saved configurations, and jobs made of them as snapshots, through a real
daemon and real containers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

PROBE = "localhost/jobd-recipe-probe"


@pytest.fixture
def retaggable(tmp_path: Path) -> Iterator[str]:
    """`PROBE:1` naming the test image; the test may point it at another image."""
    subprocess.run(["podman", "tag", TEST_IMAGE, f"{PROBE}:1"], check=True)
    yield f"{PROBE}:1"
    subprocess.run(["podman", "rmi", "-f", f"{PROBE}:1"], capture_output=True, check=False)


def point_tag_at_a_new_image(tag: str, context: Path) -> None:
    """Move `tag` to an image like the test image with a /marker file in it."""
    context.mkdir()
    (context / "marker").write_text("new image\n")
    (context / "Containerfile").write_text(f"FROM {TEST_IMAGE}\nCOPY marker /marker\n")
    subprocess.run(
        ["podman", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True
    )


def test_a_job_is_a_snapshot_of_its_recipe_and_its_image(
    daemon: Daemon, retaggable: str, tmp_path: Path
) -> None:
    recipe = {
        "name": "probe",
        "description": "prints what it sees",
        "image": retaggable,
        "startCommand": "cat /marker 2>/dev/null || echo old image; echo $A $B",
        "env": {"A": "a", "B": "b"},
        "plan": "starter",
        "network": "none",
        "labels": {"team": "data"},
    }
    created = daemon.post("/v1/recipes", recipe)
    assert created.status == 201, created.text
    response = daemon.post("/v1/jobs", {"recipe": "probe", "env": {"B": "override"}})
    assert response.status == 201, response.text
    job = response.body
    assert job["recipe"] == "probe" and job["name"] == "probe" and job["plan"] == "starter"
    assert job["env"] == {"A": "a", "B": "override"} and job["labels"] == {"team": "data"}
    assert job["requestedConfig"] == {"recipe": "probe", "env": {"B": "override"}}
    assert job["imageDigest"].startswith(f"{PROBE}@sha256:")
    assert job["finalConfig"]["imageDigest"] == job["imageDigest"]
    assert daemon.wait_status(job["latestRunId"])["status"] == "succeeded"
    assert daemon.logs_text(job["latestRunId"]) == "old image\na override\n"

    # the recipe changes, the tag moves to another image, the recipe goes: the job is as it was
    changed = daemon.request("PATCH", "/v1/recipes/probe", {"env": {"A": "changed"}})
    assert changed.status == 200 and changed.body["env"] == {"A": "changed"}
    point_tag_at_a_new_image(retaggable, tmp_path / "context")
    assert daemon.request("DELETE", "/v1/recipes/probe").status == 204
    rerun = daemon.post(f"/v1/jobs/{job['id']}/runs").body
    assert daemon.wait_status(rerun["id"])["status"] == "succeeded"
    assert daemon.logs_text(rerun["id"]) == "old image\na override\n"
    assert rerun["finalConfig"]["imageDigest"] == job["imageDigest"]

    # a new job of a new recipe takes the image the tag names now
    assert daemon.post("/v1/recipes", {**recipe, "env": {"A": "x"}}).status == 201
    fresh = daemon.post("/v1/jobs", {"recipe": "probe"}).body
    assert fresh["imageDigest"] != job["imageDigest"]
    assert daemon.wait_status(fresh["latestRunId"])["status"] == "succeeded"
    assert daemon.logs_text(fresh["latestRunId"]) == "new image\nx\n"  # env: replaced whole


def test_recipe_crud_and_bad_input(daemon: Daemon) -> None:
    base = {"name": "r1", "image": TEST_IMAGE, "command": ["true"]}
    assert daemon.post("/v1/recipes", base).status == 201
    again = daemon.post("/v1/recipes", base)
    assert again.status == 409 and "exists" in again.body["error"]["message"]
    listed = daemon.get("/v1/recipes").body["recipes"]
    assert [r["name"] for r in listed] == ["r1"]
    assert daemon.get("/v1/recipes/r1").body["command"] == ["true"]
    updated = daemon.request("PATCH", "/v1/recipes/r1", {"startCommand": "echo hi"})
    assert updated.status == 200, updated.text
    assert "command" not in updated.body and updated.body["startCommand"] == "echo hi"
    for body, status, fragment in (
        ({"name": "Bad Name", "image": TEST_IMAGE}, 400, "name"),
        ({"name": "r2"}, 400, "image"),
        ({"name": "r2", "image": TEST_IMAGE, "plan": "nope"}, 400, "unknown plan"),
        ({"name": "r2", "image": TEST_IMAGE, "plan": "pro-ultra"}, 422, "this machine"),
        ({"name": "r2", "image": TEST_IMAGE, "schedule": "* * * * *"}, 400, "schedule"),
    ):
        response = daemon.post("/v1/recipes", body)
        assert response.status == status, response.text
        assert fragment in response.body["error"]["message"]
    assert [r["name"] for r in daemon.get("/v1/recipes").body["recipes"]] == ["r1"]
    unknown = daemon.post("/v1/jobs", {"recipe": "nope"})
    assert unknown.status == 400 and "recipe: no recipe named 'nope'" in unknown.text
    assert daemon.get("/v1/jobs").body["jobs"] == []
    bad_override = daemon.post("/v1/jobs", {"recipe": "r1", "plan": "nope"})
    assert bad_override.status == 400 and "unknown plan" in bad_override.text
    assert daemon.request("PATCH", "/v1/recipes/nope", {"plan": "starter"}).status == 404
    assert daemon.request("DELETE", "/v1/recipes/nope").status == 404
    mismatch = daemon.request("PUT", "/v1/recipes/r1", {**base, "name": "r9"})
    assert mismatch.status == 400, mismatch.text


def test_jobctl_recipes_from_a_file_and_run_from_one(daemon: Daemon, tmp_path: Path) -> None:
    toml = tmp_path / "nightly.toml"
    toml.write_text(
        f'name = "nightly"\nimage = "{TEST_IMAGE}"\nstartCommand = "echo $WHO"\n'
        'network = "none"\n[env]\nWHO = "toml"\n[retry]\nmaxAttempts = 2\n'
    )
    applied = daemon.jobctl("recipe", "apply", "-f", str(toml))
    assert applied.returncode == 0, applied.stderr
    yaml = tmp_path / "nightly.yaml"
    yaml.write_text(
        f"name: nightly\nimage: {TEST_IMAGE}\nstartCommand: echo $WHO again\n"
        "network: none\nenv:\n  WHO: yaml\n"
    )
    replaced = daemon.jobctl("recipe", "apply", "-f", str(yaml))
    assert replaced.returncode == 0, replaced.stderr
    shown = daemon.get("/v1/recipes/nightly").body
    assert shown["env"] == {"WHO": "yaml"} and "retry" not in shown, "apply replaces whole"
    listing = daemon.jobctl("recipe", "ls")
    assert "nightly" in listing.stdout
    ran = daemon.jobctl("run", "--recipe", "nightly", "--env", "WHO=cli", "--wait")
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[1]
    assert daemon.logs_text(run_id) == "cli again\n"
    own = daemon.jobctl("run", "--recipe", "nightly", "--wait", "--", "sh", "-c", "echo own")
    assert own.returncode == 0, own.stderr
    assert daemon.logs_text(own.stdout.split()[1]) == "own\n"
    updated = daemon.jobctl("recipe", "update", "nightly", "--plan", "starter")
    assert updated.returncode == 0 and "starter" in updated.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    failed = daemon.jobctl("recipe", "apply", "-f", str(broken))
    assert failed.returncode == 2 and "broken.toml" in failed.stderr
    removed = daemon.jobctl("recipe", "rm", "nightly")
    assert removed.returncode == 0, removed.stderr
    gone = daemon.jobctl("recipe", "show", "nightly")
    assert gone.returncode == 1 and "not found" in gone.stderr
