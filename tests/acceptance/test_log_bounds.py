"""Reads that stay bounded, through the real daemon: a run that prints one very long line is
read, in every kind of read, with the line cut at 64 KiB and a marker saying how much was
left out, the lines after it whole; and a user holds only so many streams open at once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobd.logs.lines import MAX_LINE_CHARS
from tests.support import Daemon, UnixConnection, wait_until

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


def test_a_user_holds_so_many_streams_at_most(daemon_factory: Any) -> None:
    daemon = daemon_factory(config="max_streams_per_user = 2\n")
    job = daemon.submit(command=["sleep", "300"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    streams = []
    for _ in range(2):
        connection = UnixConnection(daemon.socket)
        connection.request("GET", f"/v1/runs/{run_id}/logs?follow=true&format=text")
        assert connection.getresponse().status == 200
        streams.append(connection)
    refused = daemon.get(f"/v1/runs/{run_id}/logs?follow=true")
    assert refused.status == 429 and "2 of 2 streaming connections" in refused.text
    assert daemon.get(f"/v1/runs/{run_id}/logs").status == 200, "plain reads are not streams"
    streams.pop().close()

    def freed() -> bool:
        connection = UnixConnection(daemon.socket)
        connection.request("GET", f"/v1/runs/{run_id}/logs?follow=true&format=text")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok

    wait_until(freed, 10, "a closed stream's slot to be free")
    for connection in streams:
        connection.close()
    daemon.post(f"/v1/runs/{run_id}/cancel")
