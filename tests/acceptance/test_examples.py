"""The examples in examples/, run as a user would run them: each one's run.sh against a real
jobd, on the embedded image. Each run.sh checks its own result and exits non-zero when it is
wrong; these tests add what a reader of the example would look at. The GPU training example
needs a GPU and a registry: only its recipe is applied and checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from tests.support import VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(daemon: Daemon, name: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "JOBD_SOCKET": str(daemon.socket),
        "OUT": str(tmp_path / "out"),
    }
    result = subprocess.run(
        ["sh", str(EXAMPLES / name / "run.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}\n{daemon.log()}"
    assert f"{name}: ok" in result.stdout
    return result.stdout


def test_every_example_has_a_readme_and_the_index_lists_it() -> None:
    index = (EXAMPLES / "README.md").read_text()
    examples = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
    assert len(examples) >= 5
    for example in examples:
        assert (example / "README.md").is_file(), example
        assert f"]({example.name}/)" in index, example.name


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="image.sh needs the host's sqlite3")
def test_db_migration_applies_once_and_keeps_the_database_on_the_volume(
    daemon: Daemon, tmp_path: Path
) -> None:
    out = run_example(daemon, "db-migration", tmp_path)
    assert "apply 001_create_accounts" in out
    assert "apply 003_index_email" in out
    assert "skip  002_add_email (applied)" in out  # the second run
    assert "grace|grace@example.org" in out


def test_nightly_backup_is_scheduled_and_writes_archives(daemon: Daemon, tmp_path: Path) -> None:
    out = run_example(daemon, "nightly-backup", tmp_path)
    assert "scheduled: job job-" in out
    assert out.count("wrote /backups/app-") == 2
    schedules = daemon.jobctl("schedule").stdout
    assert "nightly-backup" in schedules
    recipe = daemon.get("/v1/recipes/nightly-backup").body
    assert recipe["retry"]["maxAttempts"] == 3


def test_render_batch_keeps_png_frames_and_a_preview(daemon: Daemon, tmp_path: Path) -> None:
    run_example(daemon, "render-batch", tmp_path)
    frames = sorted((tmp_path / "out" / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["0001.png", "0002.png", "0003.png", "0004.png"]
    for frame in frames:
        data = frame.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data[12:16] == b"IHDR"
        assert int.from_bytes(data[16:20], "big") == 96  # the scene's width


def test_notebook_service_answers_on_its_port_and_keeps_its_history(
    daemon: Daemon, tmp_path: Path
) -> None:
    out = run_example(daemon, "notebook-service", tmp_path)
    assert "notebook at http://127.0.0.1:" in out
    assert "1 cells run" in out
    jobs = daemon.get("/v1/jobs?label=example=notebook-service").body["jobs"]
    assert len(jobs) == 1
    run = daemon.get(f"/v1/jobs/{jobs[0]['id']}").body["latestRun"]
    assert run["status"] == "succeeded"  # stopped cleanly


def test_gpu_training_recipe_is_one_the_api_takes(daemon: Daemon) -> None:
    """Applying it here is refused (no GPU, 2 CPUs: the plan could never fit), so it is
    checked as the API would check it, and its plan against the daemon's plans."""
    recipe = tomllib.loads((EXAMPLES / "gpu-training/recipe.toml").read_text())
    document = json.loads(files("jobd").joinpath("openapi.json").read_text())
    schema = {"$ref": "#/components/schemas/RecipeCreate", "components": document["components"]}
    jsonschema.validate(recipe, schema)
    plans = {plan["id"]: plan for plan in daemon.get("/v1/plans").body["plans"]}
    assert plans[recipe["plan"]]["gpus"] == 1
