"""`jobctl ls`'s table: by default the columns a person scans (fitting a 100-column
terminal: long names and images are cut with `…`), times relative to now, a running job's
progress after its status (`running 42% rendering`); `-o wide` adds the plan, the latest
run, its exit code or reason, its duration, the next tick and the command, times as they
are. Statuses are coloured on a terminal unless NO_COLOR is set."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from jobctl.render.jobs import next_tick
from jobctl.render.layout import Row, owned_table
from jobctl.render.progress import listed
from jobctl.render.values import NONE, duration, local_time, or_none

WIDTH = 100  # what the default columns fit
HEADERS = ("JOB", "NAME", "IMAGE", "STATUS", "CREATED")
WIDE_HEADERS = (
    "JOB", "NAME", "IMAGE", "STATUS", "PLAN", "CREATED", "LATEST RUN", "EXIT/REASON",
    "DURATION", "NEXT TICK", "COMMAND",
)  # fmt: skip
SHRINKABLE = {"NAME": 8, "IMAGE": 12}  # cut to fit, down to this many characters
COLOURS = {"succeeded": "green", "failed": "red", "cancelled": "magenta", "pending": "yellow",
           "running": "blue", "assigned": "cyan", "cancelling": "magenta"}  # fmt: skip


def ago(value: str | None, now: datetime) -> str:
    """An API time relative to now: 45s ago, 3m ago, 2h ago, 4d ago; in 5m."""
    if not value:
        return NONE
    seconds = int((now - datetime.fromisoformat(value)).total_seconds())
    amount = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if amount >= size or unit == "s":
            text = f"{amount // size}{unit}"
            return f"{text} ago" if seconds >= 0 else f"in {text}"
    raise AssertionError("unreachable")


def exit_or_reason(run: Mapping[str, Any] | None) -> str:
    """The latest run's exit code, or why it ended without one worth reading."""
    if not run:
        return NONE
    reason = (run.get("failureReason") or {}).get("type")
    if reason and reason != "exit_code":
        return str(reason)
    return str(run["exitCode"]) if run.get("exitCode") is not None else NONE


def coloured(status: str | None, colour: bool) -> str:
    if not status:
        return NONE
    return click.style(status, fg=COLOURS.get(status)) if colour else status


def array_summary(counts: Mapping[str, int]) -> str:
    """An array's runs compactly: "3/100 running, 90 succeeded, 7 pending" (runs placed or
    stopping count as running)."""
    size = sum(counts.values())
    running = sum(counts.get(s, 0) for s in ("assigned", "running", "cancelling"))
    parts = [f"{running}/{size} running"]
    parts += [
        f"{counts[s]} {s}" for s in ("succeeded", "failed", "cancelled", "pending") if counts.get(s)
    ]
    return ", ".join(parts)


def job_row(job: Mapping[str, Any], now: datetime, *, wide: bool, colour: bool) -> Row:
    status = coloured(job.get("status"), colour)
    run = job.get("latestRun")
    so_far = listed(run)
    if so_far:  # `running 42% rendering`
        status = f"{status} {so_far}"
    if job.get("arrayRuns"):
        status = array_summary(job["arrayRuns"])
    if not wide:
        return (
            job["id"],
            or_none(job.get("name")),
            job["image"],
            status,
            ago(job["createdAt"], now),
        )
    seconds = run.get("runningSeconds") if run else None
    command = shlex.join(job.get("command") or []) or NONE
    return (
        job["id"], or_none(job.get("name")), job["image"], status, or_none(job.get("plan")),
        local_time(job.get("createdAt")), or_none(job.get("latestRunId")), exit_or_reason(run),
        duration(int(seconds)) if seconds is not None else NONE, next_tick(job.get("schedule")),
        command,
    )  # fmt: skip


def jobs_table(jobs: Sequence[Mapping[str, Any]], now: datetime, *, wide: bool, users: bool) -> str:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    headers = WIDE_HEADERS if wide else HEADERS
    users = users or len({(j.get("owner") or {}).get("user") for j in jobs}) > 1
    rows = [job_row(j, now, wide=wide, colour=colour) for j in jobs]
    if not wide:
        rows = fitted(headers, rows, WIDTH - (_user_width(jobs) if users else 0))
    by_id = dict(zip((j["id"] for j in jobs), rows, strict=True))
    return owned_table(headers, lambda j: by_id[j["id"]], jobs, users=users)


def fitted(headers: Sequence[str], rows: list[Row], width: int) -> list[Row]:
    """The rows with the shrinkable columns cut (longest first) until the table fits."""
    widths = [  # as tabulate sizes them: a header gets two spaces of padding at least
        max([len(h) + 2, *(len(click.unstyle(str(r[i]))) for r in rows)])
        for i, h in enumerate(headers)
    ]
    excess = sum(widths) + 2 * (len(headers) - 1) - width
    caps = dict(enumerate(widths))
    while excess > 0:
        shrinkable = [i for i, h in enumerate(headers) if caps[i] > SHRINKABLE.get(h, caps[i])]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: caps[i])
        caps[widest] -= 1
        excess -= 1
    return [tuple(_cut(str(cell), caps[i]) for i, cell in enumerate(row)) for row in rows]


def _cut(text: str, width: int) -> str:
    return text if len(click.unstyle(text)) <= width else text[: width - 1] + "…"


def _user_width(jobs: Sequence[Mapping[str, Any]]) -> int:
    return 2 + max([4, *(len((j.get("owner") or {}).get("user", "")) for j in jobs)])
