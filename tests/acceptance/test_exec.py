"""`jobctl exec`: a command in a running container, attached through the daemon, with and
without a terminal, over the Unix socket and over TCP."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from tests.support import VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

SERVICE = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]


def running_service(daemon: Daemon) -> str:
    job = daemon.submit(kind="persistent", command=SERVICE)
    daemon.wait_status(job["latestRunId"], {"running"})
    return str(job["latestRunId"])


def test_exec_pipes_stdin_output_and_the_exit_code(daemon: Daemon) -> None:
    run_id = running_service(daemon)
    command = "cat; echo to-stderr >&2; exit 7"
    result = daemon.jobctl("exec", run_id, "--", "sh", "-c", command, stdin="hello\nthere\n")
    assert result.returncode == 7, result.stderr
    assert result.stdout == "hello\nthere\n"
    assert result.stderr == "to-stderr\n"
    by_job = daemon.jobctl("exec", daemon.run(run_id)["jobId"], "--", "echo", "via job")
    assert (by_job.returncode, by_job.stdout) == (0, "via job\n")


def test_exec_with_a_terminal_when_stdin_is_one(daemon: Daemon) -> None:
    run_id = running_service(daemon)
    controller, terminal = pty.openpty()
    env = {**os.environ, "JOBD_SOCKET": str(daemon.socket)}
    process = subprocess.Popen(
        [str(VENV_BIN / "jobctl"), "exec", run_id, "--", "sh", "-c", "tty; read x; echo got $x"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 30
    sent = False
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                output += os.read(controller, 4096)
            except OSError:
                break
        if b"/dev/pts/" in output and not sent:
            os.write(controller, b"typed\r")
            sent = True
    process.wait(10)
    with_rest = output + _drain(controller)
    os.close(controller)
    assert process.returncode == 0, with_rest
    assert b"/dev/pts/" in with_rest and b"got typed" in with_rest


def _drain(fd: int) -> bytes:
    data = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_exec_over_tcp_needs_the_token_and_a_running_run(daemon: Daemon) -> None:
    run_id = running_service(daemon)
    over_tcp = daemon.jobctl(
        "--url", daemon.url, "--token", daemon.token, "exec", run_id, "--", "echo", "tcp"
    )
    assert (over_tcp.returncode, over_tcp.stdout) == (0, "tcp\n"), over_tcp.stderr
    refused = daemon.jobctl("--url", daemon.url, "--token", "wrong", "exec", run_id, "--", "true")
    assert refused.returncode == 1 and "token" in refused.stderr.lower()
    done = daemon.submit(command=["true"])
    daemon.wait_status(done["latestRunId"])
    ended = daemon.jobctl("exec", done["latestRunId"], "--", "true")
    assert ended.returncode == 1 and "exec needs a running run" in ended.stderr


def test_exec_refuses_a_plain_request_and_a_missing_command(daemon: Daemon) -> None:
    run_id = running_service(daemon)
    plain = daemon.get(f"/v1/runs/{run_id}/exec?cmd=true")
    assert plain.status == 400 and "WebSocket" in plain.body["error"]["message"]
    no_command = daemon.get(f"/v1/runs/{run_id}/exec")
    assert no_command.status == 400 and "cmd" in no_command.body["error"]["message"]
    assert daemon.get("/v1/runs/run-nope/exec?cmd=true").status == 404
