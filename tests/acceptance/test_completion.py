"""Shell completion through the real daemon: commands and flags from jobctl's command tree;
recent job and run ids, plan names and recipe names asked of the daemon as one types; the
scripts for bash, zsh and fish."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import TEST_IMAGE, VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


def complete(daemon: Daemon | Path, *words: str) -> list[str]:
    """What bash would be offered after `jobctl WORDS` (the last word being typed)."""
    socket = daemon.socket if isinstance(daemon, Daemon) else daemon
    env = {
        **os.environ,
        "JOBD_SOCKET": str(socket),
        "_JOBCTL_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(["jobctl", *words]),
        "COMP_CWORD": str(len(words)),
    }
    done = subprocess.run(
        [str(VENV_BIN / "jobctl")], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line]


def test_completion_offers_commands_flags_ids_plans_and_recipes(daemon: Daemon) -> None:
    job = daemon.submit(command=["true"], name="nightly")
    created = daemon.post("/v1/recipes", {"name": "backup", "image": TEST_IMAGE})
    assert created.status == 201, created.text

    assert {"metrics", "top", "completion"} <= set(complete(daemon, ""))
    assert "--since" in complete(daemon, "ls", "--")
    assert job["id"] in complete(daemon, "logs", "")
    assert complete(daemon, "logs", "run-") == [job["latestRunId"]]
    assert complete(daemon, "delete", "") == [job["id"]], "a job's command: no run ids"
    assert "standard" in complete(daemon, "run", "--plan", "")
    assert complete(daemon, "run", "--recipe", "ba") == ["backup"]
    assert complete(daemon, "recipe", "show", "") == ["backup"]


def test_no_daemon_completes_no_ids_and_no_error(tmp_path: Path) -> None:
    assert complete(tmp_path / "none.sock", "logs", "") == []
    assert "logs" in complete(tmp_path / "none.sock", "lo")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(daemon: Daemon, shell: str) -> None:
    script = daemon.jobctl("completion", shell)
    assert script.returncode == 0, script.stderr
    assert "_JOBCTL_COMPLETE" in script.stdout
    if shell == "bash":
        checked = subprocess.run(["bash", "-n"], input=script.stdout, text=True, check=False)
        assert checked.returncode == 0
