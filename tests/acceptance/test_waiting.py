"""`jobctl run --wait` on a terminal, through the real daemon: one live status line on stderr
(the run's status, and for a queued run why it waits), cleared when the run ends; nothing of
it when stderr is a pipe; Ctrl-C stops the waiting, never the run, and says how to go on."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from tests.support import TEST_IMAGE, VENV_BIN, Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


class Terminal:
    """jobctl with a pseudo-terminal for its stdout and stderr."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jobctl"), *args],
            env={**os.environ, "JOBD_SOCKET": str(daemon.socket), "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.screen = ""

    def read(self, timeout: float) -> str:
        """What it wrote until `timeout` or its end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the other end closed
                    break
                if not chunk:
                    break
                self.screen += chunk.decode(errors="replace")
            elif self.process.poll() is not None:
                break
        return self.screen

    def close(self) -> int:
        code = self.process.wait(30)
        os.close(self.master)
        return code


def test_a_terminal_sees_the_run_wait_then_run_and_the_line_is_cleared(daemon: Daemon) -> None:
    blocker = daemon.submit(command=["sleep", "30"], resources={"cpuCount": daemon_cpus(daemon)})
    daemon.wait_status(blocker["latestRunId"], {"running"})
    terminal = Terminal(
        daemon, "run", "--wait", "--network", "none", TEST_IMAGE, "--", "sleep", "2"
    )
    screen = terminal.read(3)
    assert "pending (#1 in the queue: waiting for" in screen, screen  # and why
    daemon.post(f"/v1/runs/{blocker['latestRunId']}/cancel")
    screen = terminal.read(30)
    assert terminal.close() == 0, screen
    assert " running " in screen, screen
    assert screen.endswith("\r\x1b[2K"), "the status line is cleared at the end"
    job_id, run_id = screen.split("\r\n")[0].split()
    assert run_id.startswith("run-") and job_id.startswith("job-")


def test_piped_there_is_no_status_line(daemon: Daemon) -> None:
    result = daemon.jobctl("run", "--wait", "--network", "none", TEST_IMAGE, "--", "sleep", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and len(result.stdout.split()) == 2


def test_ctrl_c_stops_waiting_and_the_run_goes_on(daemon: Daemon) -> None:
    terminal = Terminal(
        daemon, "run", "--wait", "--network", "none", TEST_IMAGE, "--", "sleep", "60"
    )
    screen = wait_until(lambda: (s := terminal.read(0.5)) and " running " in s and s, 20, "running")
    terminal.process.send_signal(signal.SIGINT)
    screen = terminal.read(10)
    assert terminal.close() == 130, screen
    run_id = screen.split("\r\n")[0].split()[1]
    assert f"stopped waiting; run {run_id} goes on" in screen
    assert f"jobctl cancel {run_id}" in screen and f"jobctl logs --follow {run_id}" in screen
    assert daemon.run(run_id)["status"] == "running"
    daemon.post(f"/v1/runs/{run_id}/cancel")


def daemon_cpus(daemon: Daemon) -> int:
    """Every CPU of the node: a run holding them all makes the next one wait."""
    return int(daemon.get("/v1/node").body["capacity"]["cpus"])


def test_jobctl_wait_waits_for_each_and_exits_as_the_last(daemon: Daemon) -> None:
    first = daemon.submit(command=["sh", "-c", "sleep 1; exit 0"])
    last = daemon.submit(command=["sh", "-c", "sleep 2; exit 4"])
    piped = daemon.jobctl("wait", first["latestRunId"], last["id"])  # a job: its latest run
    assert piped.returncode == 4, piped.stderr
    assert piped.stdout == ""
    assert (
        piped.stderr == f"jobctl: run {last['latestRunId']} failed: exit_code: exited with code 4\n"
    )
    assert daemon.run(first["latestRunId"])["status"] == "succeeded"
    bad = daemon.jobctl("wait", "nonsense")  # could be a job's name: none has it
    assert bad.returncode == 1 and "neither a job's name nor a prefix" in bad.stderr

    slow = daemon.submit(command=["sleep", "3"])
    terminal = Terminal(daemon, "wait", slow["latestRunId"])
    screen = terminal.read(30)
    assert terminal.close() == 0, screen
    assert f"{slow['latestRunId']} running" in screen and screen.endswith("\r\x1b[2K")
