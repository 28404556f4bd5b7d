"""Everyday use of jobctl and the API, through the real daemon and podman: jobs and runs named
by a job's name or a unique prefix of their id (an ambiguous one lists its candidates, another
user's records are not found); a run's stdout and stderr kept apart, with their times; cron's
shorthands; cancelling several runs, or a selection, confirmed on a terminal; stopping an
ended run; the runs of a run's job; plans with their GPUs; sizes in GiB everywhere."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from datetime import datetime

import pytest

from tests.acceptance.conftest import ALICE, BOB, call, submit
from tests.support import TEST_IMAGE, VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

SPLIT = "echo out1; echo err1 >&2; echo out2; exit 3"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ")


def unique_prefix(one: str, *others: str) -> str:
    """The shortest prefix of `one` (at least its kind and 4 digits) no other id has."""
    for length in range(8, len(one) + 1):
        if not any(other.startswith(one[:length]) for other in others):
            return one[:length]
    raise AssertionError(f"{one} is a prefix of another id")


def common_prefix(one: str, other: str) -> str:
    """What two ids begin with: their kind and the digits of their creation time they share."""
    length = next((i for i, (a, b) in enumerate(zip(one, other, strict=False)) if a != b), 0)
    return one[:length]


def hold_every_cpu(daemon: Daemon) -> str:
    """A running run holding all the node's CPUs: runs submitted after it stay pending."""
    cpus = int(daemon.get("/v1/node").body["capacity"]["cpus"])
    blocker = daemon.submit(command=["sleep", "120"], resources={"cpuCount": cpus})
    daemon.wait_status(blocker["latestRunId"], {"running"})
    return str(blocker["latestRunId"])


# -- names and prefixes ---------------------------------------------------------------


def test_a_job_is_named_by_its_name_and_ids_by_a_unique_prefix(daemon: Daemon) -> None:
    older = daemon.submit(name="train", command=["sh", "-c", "echo older"])
    newer = daemon.submit(name="train", command=["sh", "-c", SPLIT])
    other = daemon.submit(name="other", command=["true"])
    run_id = newer["latestRunId"]
    daemon.wait_status(run_id)
    daemon.wait_status(older["latestRunId"])
    ids = [older["id"], other["id"]]

    assert daemon.get("/v1/jobs/train").body["id"] == newer["id"]  # the newest of the name
    assert daemon.get("/v1/jobs/train/runs").body["runs"][0]["id"] == run_id
    job_prefix = unique_prefix(newer["id"], *ids)
    for given in (job_prefix, job_prefix.removeprefix("job-"), newer["id"]):
        assert daemon.get(f"/v1/jobs/{given}").body["id"] == newer["id"], given
    run_prefix = unique_prefix(run_id, older["latestRunId"], other["latestRunId"])
    assert daemon.get(f"/v1/runs/{run_prefix.removeprefix('run-')}").body["id"] == run_id
    assert daemon.get(f"/v1/runs/{run_prefix}/events").status == 200
    missing = daemon.get("/v1/jobs/no-such-name")
    assert (missing.status, missing.body["error"]["code"]) == (404, "not_found")
    short = daemon.get("/v1/runs/run-01")
    assert short.status == 404 and "at least 4 hex digits" in short.body["error"]["message"]

    # jobctl takes the same, and leaves resolving them to the daemon
    logs = daemon.jobctl("logs", "train")
    assert (logs.returncode, logs.stdout) == (0, "out1\nout2\n"), logs.stderr
    shown = daemon.jobctl("show", "--json", job_prefix.removeprefix("job-"))
    assert shown.returncode == 0, shown.stderr
    assert '"id": "' + newer["id"] in shown.stdout
    waited = daemon.jobctl("wait", "train", run_prefix)
    assert waited.returncode == 3, waited.stderr  # as the last run did
    runs = daemon.jobctl("runs", run_prefix)  # a run: its job's runs
    assert runs.returncode == 0 and run_id in runs.stdout, runs.stderr
    assert older["latestRunId"] not in runs.stdout


def test_an_ambiguous_prefix_is_a_409_that_lists_the_candidates(daemon: Daemon) -> None:
    first = daemon.submit(name="first", command=["true"])
    second = daemon.submit(command=["true"])
    shared = common_prefix(first["id"], second["id"])
    assert len(shared) >= len("job-") + 4  # ids begin with their creation time
    response = daemon.get(f"/v1/jobs/{shared}")
    assert response.status == 409, response.text
    error = response.body["error"]
    assert error["code"] == "ambiguous"
    assert f"{first['id']} (first)" in error["message"] and second["id"] in error["message"]
    assert "give more of the id" in error["message"]

    result = daemon.jobctl("logs", shared.removeprefix("job-"))
    assert result.returncode == 1
    assert f"is ambiguous: it matches {second['id']}, {first['id']} (first)" in result.stderr


def test_another_users_jobs_are_not_found_by_name_or_prefix(team_daemon: Daemon) -> None:
    bobs = submit(team_daemon, BOB, name="bobs-secret", command=["true"])
    alices = submit(team_daemon, ALICE, name="alices", command=["true"])
    for path in ("/v1/jobs/bobs-secret", f"/v1/jobs/{bobs['id'][:-2]}"):
        response = call(team_daemon, ALICE, "GET", path)
        assert response.status == 404, f"{path}: {response.text}"
    assert call(team_daemon, BOB, "GET", "/v1/jobs/bobs-secret").body["id"] == bobs["id"]
    # a prefix both have is alice's alone to alice: not ambiguous
    shared = common_prefix(alices["id"], bobs["id"])
    if len(shared) >= len("job-") + 4:
        assert call(team_daemon, ALICE, "GET", f"/v1/jobs/{shared}").body["id"] == alices["id"]
    run = call(team_daemon, ALICE, "GET", f"/v1/runs/{bobs['latestRunId'][:-2]}")
    assert run.status == 404


# -- output ---------------------------------------------------------------------------


def test_logs_keep_stdout_and_stderr_apart_with_their_times(daemon: Daemon) -> None:
    job = daemon.submit(name="split", command=["sh", "-c", SPLIT])
    daemon.wait_status(job["latestRunId"])
    plain = daemon.jobctl("logs", "split")
    assert (plain.stdout, plain.stderr) == ("out1\nout2\n", "err1\n")
    stamped = daemon.jobctl("logs", "--timestamps", job["latestRunId"])
    out, err = stamped.stdout.splitlines(), stamped.stderr.splitlines()
    assert [STAMP.sub("", line) for line in out] == ["out1", "out2"]
    assert [STAMP.sub("", line) for line in err] == ["err1"]
    assert all(STAMP.match(line) for line in out + err)
    times = [datetime.fromisoformat(line.split()[0]) for line in out]
    assert times == sorted(times)
    every = daemon.jobctl("logs", "--all-runs", "split")
    run_id = job["latestRunId"]
    assert (every.stdout, every.stderr) == (f"{run_id} out1\n{run_id} out2\n", f"{run_id} err1\n")


def test_run_follow_leaves_only_the_runs_stdout_on_stdout(daemon: Daemon) -> None:
    result = daemon.jobctl(
        "run", "--follow", "--network", "none", TEST_IMAGE, "--", "sh", "-c", SPLIT
    )
    assert result.returncode == 3
    assert result.stdout == "out1\nout2\n"
    job_id, run_id = result.stderr.splitlines()[0].split()
    assert job_id.startswith("job-") and run_id.startswith("run-")
    assert "err1" in result.stderr.splitlines()


# -- schedules ------------------------------------------------------------------------


def test_cron_shorthands_are_taken_and_shown_as_given(daemon: Daemon) -> None:
    job = daemon.submit(schedule="@hourly", command=["true"])
    schedule = job["schedule"]
    assert schedule["schedule"] == "@hourly"
    next_fire = datetime.fromisoformat(schedule["nextFireAt"])
    assert (next_fire.minute, next_fire.second) == (0, 0)
    assert job["latestRunId"] is None
    refused = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "schedule": "@reboot"})
    assert refused.status == 400 and "not a cron shorthand" in refused.body["error"]["message"]
    listed = daemon.jobctl("schedule")
    assert "@hourly" in listed.stdout, listed.stderr


# -- cancel and stop ------------------------------------------------------------------


def test_cancel_takes_several_ids_and_selectors(daemon: Daemon) -> None:
    blocker = hold_every_cpu(daemon)
    first, second = (daemon.submit(command=["true"]) for _ in range(2))
    tagged = [daemon.submit(command=["true"], labels={"batch": "b1"}) for _ in range(2)]
    named = daemon.submit(name="nightly", command=["true"], labels={"batch": "b2"})
    keep = daemon.submit(command=["true"], labels={"batch": "b2"})

    result = daemon.jobctl("cancel", first["latestRunId"], second["id"])  # a job: its latest run
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{first['latestRunId']} cancelled",
        f"{second['latestRunId']} cancelled",
    ]
    # no terminal: a selection of several is not asked about
    result = daemon.jobctl("cancel", "--label", "batch=b1", "--status", "pending")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(
        f"{job['latestRunId']} cancelled" for job in tagged
    )
    result = daemon.jobctl("cancel", "--name", "nightly", "--label", "batch=b2")
    assert result.stdout == f"{named['latestRunId']} cancelled\n", result.stderr
    assert daemon.run(keep["latestRunId"])["status"] == "pending"
    assert daemon.run(blocker)["status"] == "running"  # --status pending spared it
    nothing = daemon.jobctl("cancel", "--label", "batch=none")
    assert (nothing.returncode, nothing.stderr) == (0, "jobctl: no runs match: nothing to cancel\n")
    ended = daemon.jobctl("cancel", first["latestRunId"], keep["latestRunId"])
    assert ended.returncode == 1  # one had ended: said, and the other cancelled all the same
    assert "already ended" in ended.stderr
    assert ended.stdout == f"{keep['latestRunId']} cancelled\n"


@pytest.mark.parametrize(("answer", "cancelled"), [("n", False), ("y", True)])
def test_a_selection_of_several_is_confirmed_on_a_terminal(
    daemon: Daemon, answer: str, cancelled: bool
) -> None:
    hold_every_cpu(daemon)
    jobs = [daemon.submit(command=["true"], labels={"sweep": "s"}) for _ in range(2)]
    master, slave = pty.openpty()
    try:
        os.write(master, f"{answer}\n".encode())  # typed ahead: the terminal keeps it
        result = subprocess.run(
            [str(VENV_BIN / "jobctl"), "cancel", "--label", "sweep=s", "--status", "pending"],
            env={**os.environ, "JOBD_SOCKET": str(daemon.socket)},
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert "Cancel these 2 runs?" in result.stderr
    assert all(job["latestRunId"] in result.stderr for job in jobs)  # listed before asking
    statuses = {daemon.run(job["latestRunId"])["status"] for job in jobs}
    assert statuses == ({"cancelled"} if cancelled else {"pending"})
    assert result.returncode == (0 if cancelled else 1)


def test_stop_of_an_ended_run_says_nothing_to_stop(daemon: Daemon) -> None:
    job = daemon.submit(command=["true"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id)
    events = daemon.events(run_id)
    result = daemon.jobctl("stop", run_id)
    assert result.returncode == 0
    assert result.stdout == f"{run_id} succeeded\n"
    assert result.stderr == f"jobctl: run {run_id} already ended: nothing to stop\n"
    assert daemon.run(run_id)["status"] == "succeeded" and daemon.events(run_id) == events
    refused = daemon.post(f"/v1/runs/{run_id}/stop")
    assert refused.status == 409 and "nothing to stop" in refused.body["error"]["message"]


# -- plans and sizes ------------------------------------------------------------------


def test_plans_show_their_gpus_and_sizes_read_in_gib(daemon: Daemon) -> None:
    result = daemon.jobctl("plans")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert result.stdout.splitlines()[0].split()[:4] == ["PLAN", "MEMORY", "CPUS", "GPUS"]
    assert rows["gpu-2"][1:6] == ["64", "GiB", "16", "2", "whole"]
    assert rows["starter"][1:5] == ["512", "MiB", "0.5", "-"]
    node_gib = daemon.get("/v1/node").body["capacity"]["memoryBytes"] / 1024**3
    asked = {"cpuCount": 1, "minRamGb": 60_000}  # decimal GB, as the request's fields are
    too_big = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "resources": asked})
    assert too_big.status == 422, too_big.text
    message = too_big.body["error"]["message"]
    wanted = f"{round(60_000 * 10**9 / 1024**3, 1):g} GiB"  # as the plan table reads
    assert f"{wanted} of memory (it has {round(node_gib, 1):g} GiB)" in message, message
