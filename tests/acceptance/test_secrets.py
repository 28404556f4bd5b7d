"""Secret environment variables, through the real daemon and podman: the container gets the
values, and nothing jobd shows or writes carries them: not the API's jobs, runs, events or
finalConfig, not the request kept as requestedConfig, not jobctl, not jobd's own log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]
VALUE = "s3cr3t-vAlue-9f2e"
FROM_FILE = "f1le-s3cret-77a1"


def test_secret_values_reach_the_container_and_are_never_shown(
    daemon: Daemon, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"DB_PASSWORD={FROM_FILE}\n")
    ran = daemon.jobctl(
        "run", "--network", "none", "--env", "PLAIN=visible",
        "--secret-env", f"API_TOKEN={VALUE}", "--secret-env-file", str(secrets_file),
        "--wait", TEST_IMAGE, "--", "sh", "-c",
        # checked in halves, so that the command (which is shown) never holds a whole value
        f'test "${{API_TOKEN%{VALUE[8:]}}}" = {VALUE[:8]} && test "${{API_TOKEN#{VALUE[:8]}}}"'
        f' = {VALUE[8:]} && test "${{DB_PASSWORD#{FROM_FILE[:8]}}}" = {FROM_FILE[8:]}'
        " && echo both-there",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    job_id, run_id = ran.stdout.split()[:2]
    assert daemon.logs_text(run_id) == "both-there\n"

    job = daemon.get(f"/v1/jobs/{job_id}").body
    assert job["secretEnvNames"] == ["API_TOKEN", "DB_PASSWORD"] and job["env"] == {
        "PLAIN": "visible"}  # fmt: skip
    assert job["requestedConfig"]["secretEnv"] == {"API_TOKEN": "(secret)",
                                                    "DB_PASSWORD": "(secret)"}  # fmt: skip
    shown = [
        json.dumps(job),
        daemon.get(f"/v1/runs/{run_id}").text,
        daemon.get(f"/v1/runs/{run_id}/events").text,
        daemon.get(f"/v1/jobs/{job_id}/runs").text,
        daemon.get("/v1/jobs").text,
        daemon.jobctl("show", job_id).stdout,
        daemon.jobctl("show", run_id, "--json").stdout,
        daemon.jobctl("ls", "--json").stdout,
        daemon.log(),
    ]
    for text in shown:
        assert VALUE not in text and FROM_FILE not in text
    assert "API_TOKEN" in daemon.jobctl("show", job_id).stdout

    changed = daemon.request("PATCH", f"/v1/jobs/{job_id}", {"secretEnv": {"ONLY": VALUE}})
    assert changed.status == 200 and changed.body["secretEnvNames"] == ["ONLY"]
    assert VALUE not in changed.text
    rerun = daemon.post(f"/v1/jobs/{job_id}/runs", {})
    assert rerun.status == 201, rerun.text
    clash = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "env": {"A": "1"},
                                     "secretEnv": {"A": "2"}})  # fmt: skip
    assert clash.status == 400 and "also in env" in clash.text
    assert VALUE not in daemon.log()
