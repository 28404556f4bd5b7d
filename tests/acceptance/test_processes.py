"""Containers that behave like processes, through the real daemon and podman: an init process
passes SIGTERM on (a cancel of `sleep` is quick), a stop says which signal ended it and takes
its own grace (or none), a command that is missing or not executable is the job's own failure
and is never retried, NUL bytes are refused at submission, and `jobctl exec` works without a
terminal."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.support import TEST_IMAGE, VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

# ignores SIGTERM: only SIGKILL ends it (its sleep is a child the init does not signal)
STUBBORN = ["sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"]


def started(daemon: Daemon, **spec: object) -> str:
    job = daemon.submit(**spec)
    daemon.wait_status(job["latestRunId"], {"running"})
    return str(job["latestRunId"])


def test_a_cancel_of_a_program_without_signal_handlers_ends_it_at_once(daemon: Daemon) -> None:
    run_id = started(daemon, command=["sleep", "300"])
    began = time.monotonic()
    assert daemon.jobctl("cancel", run_id).returncode == 0
    run = daemon.wait_status(run_id, timeout=10)
    took = time.monotonic() - began
    assert took < 3, f"a cancel of sleep took {took:.1f}s: SIGTERM did not reach it"
    assert run["status"] == "cancelled" and run["exitCode"] == 143
    assert run["failureReason"]["message"] == (
        "cancelled by request; SIGTERM ended it (exit code 143)"
    )


def test_a_forced_cancel_is_sigkill_at_once_even_for_a_program_without_handlers(
    daemon: Daemon,
) -> None:
    run_id = started(daemon, command=["sleep", "300"])
    assert daemon.jobctl("cancel", run_id, "--force").returncode == 0
    run = daemon.wait_status(run_id, timeout=10)
    assert run["status"] == "cancelled" and run["exitCode"] == 137, "SIGKILL, not SIGTERM"
    assert run["failureReason"]["message"] == (
        "cancelled by request; SIGKILL ended it (exit code 137)"
    )


def test_a_stop_takes_its_own_grace_and_force_ends_it_now(daemon: Daemon) -> None:
    run_id = started(daemon, command=STUBBORN)
    stopping = daemon.jobctl("stop", run_id, "--grace", "60s", "--json")
    assert stopping.returncode == 0, stopping.stderr
    time.sleep(2)
    assert daemon.run(run_id)["status"] == "running", "SIGTERM alone does not end it"
    began = time.monotonic()
    assert daemon.jobctl("cancel", run_id, "--force").returncode == 0
    run = daemon.wait_status(run_id, timeout=20)
    assert time.monotonic() - began < 10, "--force did not wait out the 60 s grace"
    assert run["status"] == "cancelled" and run["stopGraceSeconds"] == 0
    assert run["failureReason"]["message"] == (
        "cancelled by request; SIGKILL ended it (exit code 137)"
    )
    details = [e["detail"] for e in daemon.events(run_id)]
    assert "stop requested: 60s grace" in details
    assert "cancel requested: SIGKILL at once" in details


def test_grace_and_force_are_checked(daemon: Daemon) -> None:
    run_id = started(daemon, command=["sleep", "300"])
    both = daemon.jobctl("cancel", run_id, "--grace", "5s", "--force")
    assert both.returncode == 2 and "give one" in both.stderr
    refused = daemon.post(f"/v1/runs/{run_id}/cancel", {"graceSeconds": -1})
    assert refused.status == 400 and "graceSeconds" in refused.body["error"]["message"]
    assert daemon.run(run_id)["status"] == "running", "a refused cancel changes nothing"
    assert daemon.post(f"/v1/runs/{run_id}/stop", {"graceSeconds": 1}).status == 202
    assert daemon.wait_status(run_id, timeout=20)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("command", "failure", "exit_status", "log"),
    [
        (["no-such-command"], "command_not_found", 127, "No such file or directory"),
        (["/tmp"], "command_not_executable", 126, "Permission denied"),
        (["sh", "-c", "no-such-command"], "command_not_found", 127, "not found"),
    ],
)
def test_a_command_that_cannot_run_is_the_jobs_failure_and_is_not_retried(
    daemon: Daemon, command: list[str], failure: str, exit_status: int, log: str
) -> None:
    result = daemon.jobctl(
        "run", "--wait", "--network", "none", "--attempts", "3", "--backoff", "1s",
        TEST_IMAGE, "--", *command,
    )  # fmt: skip
    assert result.returncode == exit_status, result.stderr
    job_id, run_id = result.stdout.split()
    run = daemon.run(run_id)
    assert run["failureReason"]["type"] == failure
    assert run["failureReason"]["category"] == "application"
    assert run["retriedBy"] is None
    assert log in daemon.logs_text(run_id), "the runtime's message is in the run's log"
    time.sleep(1.5)  # a retry would be queued by now
    assert daemon.get(f"/v1/jobs/{job_id}/status").body["totalRuns"] == 1


def test_a_service_with_a_typo_is_not_restarted(daemon: Daemon) -> None:
    job = daemon.submit(kind="persistent", command=["no-such-server"])
    run = daemon.wait_status(job["latestRunId"], timeout=30)
    assert run["failureReason"]["type"] == "command_not_found"
    time.sleep(7)  # past the default restart backoff (5 s)
    assert daemon.get(f"/v1/jobs/{job['id']}/status").body["totalRuns"] == 1


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ({"env": {"A": "x\u0000y"}}, "env/A"),
        ({"command": ["echo", "a\u0000b"]}, "command/1"),
        ({"labels": {"team": "d\u0000ta"}}, "labels/team"),
        ({"name": "nul\u0000name"}, "name"),
    ],
)
def test_nul_bytes_are_refused_at_submission_naming_the_field(
    daemon: Daemon, field: dict[str, object], named: str
) -> None:
    before = daemon.get("/v1/jobs").body["jobs"]
    response = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "command": ["true"], **field})
    assert response.status == 400
    assert response.body["error"]["message"] == f"{named}: NUL characters are not allowed"
    assert daemon.get("/v1/jobs").body["jobs"] == before, "nothing was created"


def test_exec_without_a_terminal_reads_dev_null_pipes_and_no_stdin(daemon: Daemon) -> None:
    run_id = started(daemon, kind="persistent", command=["sleep", "300"])
    jobctl = [str(VENV_BIN / "jobctl"), "exec", run_id, "--"]
    env = {"JOBD_SOCKET": str(daemon.socket), "PATH": "/usr/bin:/bin"}

    def run(command: list[str], **how: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            [*jobctl, *command],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            **how,
        )

    null = run(["sh", "-c", "cat; echo end; exit 3"], stdin=subprocess.DEVNULL)
    assert (null.returncode, null.stdout, null.stderr) == (3, "end\n", "")
    piped = run(["cat"], input="hi\n")
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "hi\n", "")
    closed = subprocess.run(
        ["sh", "-c", f"{' '.join(jobctl)} sh -c 'cat; exit 4' <&-"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (closed.returncode, closed.stderr) == (4, "")
