"""Waiting for a run to end, following its log, and what its end means as an exit status."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jobctl.client import ApiError, Client, JobctlError, Query, Stream, segment
from jobctl.log_output import LogOutput, Sink
from jobctl.status_line import BelowOutput, StatusLine

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
FIRST_DELAY = 0.1
FAST_POLLS = 5  # short jobs end within half a second; answer them without lag
MAX_DELAY = 1.0
BACKOFF = 1.5
# jobd ends a followed log within a second of its run's end; past this, stop reading ourselves
# (a safety net against a stream that never ends, e.g. a proxy or an older daemon).
LOG_GRACE = 2.0


def poll_delays() -> Iterator[float]:
    """0.1 s for the first half second, then backing off to one poll a second."""
    delay = FIRST_DELAY
    for _ in range(FAST_POLLS):
        yield delay
    while True:
        delay = min(MAX_DELAY, delay * BACKOFF)
        yield delay


def wait_for_run(
    client: Client, run_id: str, seen: Callable[[dict[str, Any]], None] = lambda run: None
) -> dict[str, Any]:
    """The run, once it has ended; `seen` is shown it at each poll before."""
    path = f"/v1/runs/{segment(run_id)}"
    for delay in poll_delays():
        run = client.get(path)
        if run["status"] in TERMINAL:
            return run
        seen(run)
        time.sleep(delay)
    raise AssertionError("poll_delays never ends")


def wait_until_gone(client: Client, path: str) -> None:
    """Until GET `path` answers 404."""
    for delay in poll_delays():
        try:
            client.get(path)
        except ApiError as e:
            if e.status == 404:
                return
            raise
        time.sleep(delay)


def copy_log(client: Client, run_id: str, query: Query, out: Sink) -> None:
    """Write a run's log to `out` as it arrives (a LogOutput: each line to stdout or stderr,
    as its container wrote it); a followed one until the run has ended, with the run's live
    status line below its lines on a terminal."""
    line = StatusLine()
    with client.stream(f"/v1/runs/{segment(run_id)}/logs", query) as stream:
        done = threading.Event()
        if query.get("follow"):
            watch = threading.Thread(
                target=_end_after_run, args=(client, run_id, stream, done, line), daemon=True
            )
            watch.start()
        sink = BelowOutput(out, line) if line.live and query.get("follow") else out
        try:
            for chunk in stream.chunks():
                sink.write(chunk)
                sink.flush()  # a person or a pipe reads a followed log as it happens
        finally:
            done.set()
            line.close()
            if isinstance(out, LogOutput):
                out.end()


def _end_after_run(
    client: Client, run_id: str, stream: Stream, done: threading.Event, line: StatusLine
) -> None:
    """Abort a followed log that outlives its run by LOG_GRACE. jobd ends a followed log
    itself once the run has ended; this keeps `run --follow` from hanging on a stream that
    does not (an early jobd did not when following began before the run started). Each
    poll until then redraws the status line."""
    path = f"/v1/runs/{segment(run_id)}"
    for delay in poll_delays():
        if done.wait(delay):
            return
        try:
            run = client.get(path)
        except JobctlError:
            return  # the reader meets the same trouble and reports it
        if run["status"] in TERMINAL:
            break
        line.show(run)
    if not done.wait(LOG_GRACE):
        stream.abort()


# a command that could not run exits as a shell's would, as `podman run` does
COMMAND_FAILURES = {"command_not_found": 127, "command_not_executable": 126}


def exit_status(run: Mapping[str, Any]) -> int:
    """The container's exit code; 1 for a run that did not succeed without one; 127 or 126
    for a command that was not found or could not be run.

    A run that failed or was cancelled never exits 0, even when its container did (it caught
    SIGTERM at a deadline or a cancel): a script must not take it for a success."""
    if run["status"] == "succeeded":
        return 0
    failure = (run.get("failureReason") or {}).get("type")
    if failure in COMMAND_FAILURES:
        return COMMAND_FAILURES[failure]
    code = run.get("exitCode")
    if isinstance(code, int) and 0 < code < 256:
        return code
    return 1


def failure_note(run: Mapping[str, Any]) -> str | None:
    """Why a run ended badly (its exit code included: a script's exit status says the code,
    a person reads why)."""
    reason = run.get("failureReason")
    if run["status"] == "succeeded" or not reason:
        return None
    return f"run {run['id']} {run['status']}: {reason['type']}: {reason['message']}"
