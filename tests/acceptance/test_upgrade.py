"""Upgrades: a database made by an earlier release (tests/fixtures/upgrade/, made by
make_release_db.py there) opens in today's jobd and migrates in place, keeping every job, run
and recipe as that release showed them, and the old jobs still run."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jobd.store.schema import MIGRATIONS
from tests.conftest import DaemonFactory
from tests.support import TERMINAL, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"
RELEASES = sorted(p.stem for p in FIXTURES.glob("jobd-*.db"))


def as_listed(d: Daemon) -> dict[str, Any]:
    jobs = {}
    for job in d.get("/v1/jobs?limit=100").body["jobs"]:
        runs = d.get(f"/v1/jobs/{job['id']}/runs?limit=100").body["runs"]
        jobs[job["id"]] = {
            "name": job["name"],
            "labels": job.get("labels", {}),
            "schedule": (job.get("schedule") or {}).get("schedule"),
            "runs": {r["id"]: {"status": r["status"], "exitCode": r.get("exitCode")} for r in runs},
        }
    recipes = sorted(r["name"] for r in d.get("/v1/recipes").body["recipes"])
    return {"jobs": jobs, "recipes": recipes}


@pytest.mark.parametrize("release", RELEASES)
def test_a_release_database_migrates_in_place_keeping_everything(
    release: str, tmp_path: Path, daemon_factory: DaemonFactory
) -> None:
    expected = json.loads((FIXTURES / f"{release}.json").read_text())
    data = tmp_path / "d0" / "data"  # where the factory's first daemon keeps its data
    data.mkdir(parents=True, mode=0o700)
    database = data / "jobd.db"
    shutil.copyfile(FIXTURES / f"{release}.db", database)
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] <= len(MIGRATIONS)

    d = daemon_factory()
    assert d.data_dir == data
    listed = as_listed(d)
    assert listed["jobs"] == expected["jobs"]
    assert listed["recipes"] == expected["recipes"]
    for job_id in expected["jobs"]:
        shown = d.get(f"/v1/jobs/{job_id}")
        assert shown.status == 200, shown.text
    old_run = next(r for j in expected["jobs"].values() for r in j["runs"])
    assert d.get(f"/v1/runs/{old_run}/logs").status == 200  # its kept log was not copied
    hello = next(i for i, j in expected["jobs"].items() if j["name"] == "hello")
    rerun = d.post(f"/v1/jobs/{hello}/runs", {})
    assert rerun.status == 201, rerun.text
    ended = d.wait_status(rerun.body["id"], TERMINAL, timeout=60)
    assert ended["status"] == "succeeded"
    assert d.logs_text(rerun.body["id"]) == "hello\n"

    d.stop(kill_containers=True)
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
