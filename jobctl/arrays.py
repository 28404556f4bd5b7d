"""Array jobs in jobctl: waiting for all of an array's runs (`run --wait`, `wait`), what its
end means as an exit status, and a live line of its indices done of total on a terminal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import click

from jobctl.client import Client, segment
from jobctl.render.listing import array_summary
from jobctl.status_line import StatusLine, array_text
from jobctl.waiting import poll_delays

UNENDED = ("pending", "assigned", "running", "cancelling")


def is_array(job: Mapping[str, Any]) -> bool:
    return bool(job.get("array"))


def wait_for_array(client: Client, job_id: str) -> dict[str, Any]:
    """The array job once every run of its latest array has ended (retries included); on a
    terminal, its indices done of total on one line meanwhile. Ctrl-C stops waiting, never
    the runs."""
    line = StatusLine(text=array_text)
    path = f"/v1/jobs/{segment(job_id)}"
    try:
        for delay in poll_delays():
            job = client.get(path)
            counts = job.get("arrayRuns") or {}
            if not any(counts.get(status) for status in UNENDED):
                return job
            line.show(job)
            time.sleep(delay)
    except KeyboardInterrupt:
        line.close()
        click.echo(f"jobctl: stopped waiting; array job {job_id} goes on", err=True)
        click.get_current_context().exit(130)
    finally:
        line.close()
    raise AssertionError("poll_delays never ends")


def array_exit_status(job: Mapping[str, Any]) -> int:
    """0 when every run of the array succeeded; else 1, saying how many did not."""
    counts = job.get("arrayRuns") or {}
    bad = sum(n for status, n in counts.items() if status != "succeeded")
    if not bad:
        return 0
    click.echo(f"jobctl: array job {job['id']}: {array_summary(counts)}", err=True)
    return 1
