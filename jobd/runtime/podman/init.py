"""The init process podman puts in every container of jobd's (`--init`: catatonit), so that
SIGTERM reaches programs that do not handle signals, and zombies are reaped. When it cannot
start the job's command, catatonit says so on stderr, the container's first output line, and
exits 1: that line tells a missing command from one that is not executable."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobd.domain.states import Failure, FailureType

INIT_PATH = Path("/usr/libexec/podman/catatonit")  # podman's default init_path
# catatonit's words (its main.c): ERROR (catatonit:<pid>): failed to exec pid1: <strerror>
EXEC_FAILED = re.compile(r"ERROR \(catatonit:\d+\): failed to exec pid1: (?P<why>.+)")
NOT_FOUND = ("No such file or directory", "Not a directory")
FIRST_LINE_BYTES = 4096
# the container can be seen exited before conmon has written its first line: looked for again
# this often, this many times (only for a container that exited 1 with no whole line yet)
FIRST_LINE_TRIES = 10
FIRST_LINE_PAUSE = 0.05


def command_failure(attrs: Mapping[str, Any]) -> Failure | None:
    """Why an exited container's command never ran, from catatonit's line in its log; None
    when it ran (or the log can't be read). Blocks: call it in a thread."""
    state = attrs.get("State", {})
    if state.get("Status") not in {"exited", "stopped"} or state.get("ExitCode") != 1:
        return None
    path = (attrs.get("HostConfig", {}).get("LogConfig") or {}).get("Path")
    if not path:
        return None
    line = _first_stderr_line(Path(path))
    for _ in range(FIRST_LINE_TRIES if line == "" else 0):
        time.sleep(FIRST_LINE_PAUSE)
        line = _first_stderr_line(Path(path))
        if line != "":
            break
    found = EXEC_FAILED.fullmatch(line) if line else None
    if found is None:
        return None
    missing = found["why"] in NOT_FOUND
    return Failure(
        type=FailureType.COMMAND_NOT_FOUND if missing else FailureType.COMMAND_NOT_EXECUTABLE,
        message=f"its command {'was not found' if missing else 'could not be run'}: {line}",
    )


def _first_stderr_line(log: Path) -> str | None:
    """The text of the log's first line (k8s-file: time, stream, F or P, text), if stderr,
    joined from its pieces (catatonit writes its message in two writes, and conmon may log
    the first as a partial P entry); "" while no whole first line is written yet."""
    try:
        with log.open("rb") as f:
            head = f.read(FIRST_LINE_BYTES)
    except OSError:
        return None
    pieces: list[bytes] = []
    for raw in head.split(b"\n")[:-1]:  # whole entries only
        parts = raw.split(b" ", 3)
        if len(parts) < 3 or parts[1] != b"stderr":
            return None
        pieces.append(parts[3] if len(parts) == 4 else b"")
        if parts[2] != b"P":
            return b"".join(pieces).decode(errors="replace")
    return "" if len(head) < FIRST_LINE_BYTES else None
