"""A run that prints one very long line, read through the real daemon: every kind of read
returns the line cut at 64 KiB with a marker saying how much was left out, and the lines
after it whole; no response grows with the line."""

from __future__ import annotations

import json

import pytest

from jobd.logs.lines import MAX_LINE_CHARS
from tests.support import Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]
LONG = 2**21  # one line of 2 MiB of "x", then "after"


def test_a_very_long_line_is_cut_in_every_read(daemon: Daemon) -> None:
    job = daemon.submit(
        command=["sh", "-c", 's=x; for i in $(seq 21); do s=$s$s; done; echo "$s"; echo after']
    )
    run_id = job["latestRunId"]
    assert daemon.wait_status(run_id)["status"] == "succeeded"
    cut_note = f"{LONG - MAX_LINE_CHARS} more characters not shown"

    limited = daemon.get(f"/v1/runs/{run_id}/logs?limit=3")
    assert len(limited.text) < 2 * MAX_LINE_CHARS, "the response does not grow with the line"
    cut, after = limited.body["lines"]
    assert cut["text"].startswith("x" * MAX_LINE_CHARS) and cut_note in cut["text"]
    assert after["text"] == "after"
    ndjson = daemon.get(f"/v1/runs/{run_id}/logs?limit=3&format=ndjson").text.splitlines()
    assert len(ndjson) == 2 and cut_note in json.loads(ndjson[0])["text"]
    tail = daemon.get(f"/v1/runs/{run_id}/logs?tail=2").body["lines"]
    assert cut_note in tail[0]["text"] and tail[1]["text"] == "after"
    of_job = daemon.get(f"/v1/jobs/{job['id']}/logs").body["lines"]
    assert cut_note in of_job[0]["text"] and len(of_job[0]["text"]) < MAX_LINE_CHARS + 100
