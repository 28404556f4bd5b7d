"""Reading catatonit's word on a command it could not start, from the container's log."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jobd.domain.states import FailureType
from jobd.runtime.podman.init import command_failure

TIME = "2026-12-03T12:00:00.000000000+00:00"


def exited(log: Path, exit_code: int = 1) -> dict[str, object]:
    return {
        "State": {"Status": "exited", "ExitCode": exit_code},
        "HostConfig": {"LogConfig": {"Type": "k8s-file", "Path": str(log)}},
    }


@pytest.mark.parametrize(
    ("why", "kind"),
    [
        ("No such file or directory", FailureType.COMMAND_NOT_FOUND),
        ("Not a directory", FailureType.COMMAND_NOT_FOUND),
        ("Permission denied", FailureType.COMMAND_NOT_EXECUTABLE),
        ("Exec format error", FailureType.COMMAND_NOT_EXECUTABLE),
    ],
)
def test_catatonits_line_tells_what_kept_the_command_from_running(
    tmp_path: Path, why: str, kind: FailureType
) -> None:
    log = tmp_path / "container.log"
    line = f"ERROR (catatonit:6): failed to exec pid1: {why}"
    log.write_text(f"{TIME} stderr F {line}\n")
    failure = command_failure(exited(log))
    assert failure is not None and failure.type is kind
    assert failure.message.endswith(line)


@pytest.mark.parametrize(
    ("content", "exit_code"),
    [
        (f"{TIME} stderr F ERROR (catatonit:6): failed to exec pid1: Permission denied\n", 2),
        (f"{TIME} stdout F ERROR (catatonit:6): failed to exec pid1: Permission denied\n", 1),
        (f"{TIME} stderr F some error of the job's own\n", 1),
        ("", 1),
    ],
)
def test_anything_else_ran(tmp_path: Path, content: str, exit_code: int) -> None:
    log = tmp_path / "container.log"
    log.write_text(content)
    assert command_failure(exited(log, exit_code)) is None


def test_a_missing_log_or_a_running_container_says_nothing(tmp_path: Path) -> None:
    assert command_failure(exited(tmp_path / "gone.log")) is None
    assert command_failure({"State": {"Status": "running", "ExitCode": 0}}) is None


def test_a_line_written_after_the_exit_was_seen_is_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_text("")
    line = f"{TIME} stderr F ERROR (catatonit:6): failed to exec pid1: Permission denied\n"
    writer = threading.Timer(0.15, lambda: log.write_text(line))
    writer.start()
    failure = command_failure(exited(log))
    writer.join()
    assert failure is not None and failure.type is FailureType.COMMAND_NOT_EXECUTABLE


def test_catatonits_line_in_pieces_is_joined(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_text(
        f"{TIME} stderr P ERROR (catatonit:5): \n"
        f"{TIME} stderr F failed to exec pid1: Permission denied\n"
    )
    failure = command_failure(exited(log))
    assert failure is not None and failure.type is FailureType.COMMAND_NOT_EXECUTABLE
