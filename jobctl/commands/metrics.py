"""`jobctl metrics`: a run's sampled CPU, memory and GPUs, charted; `jobctl top`: the runs
holding the node, their CPU and memory now, redrawn live on a terminal."""

from __future__ import annotations

import math
import shutil
import sys
import time
from datetime import datetime, timedelta

import click

from jobctl.client import segment
from jobctl.commands.shared import resolve_run, show
from jobctl.completion import ANY_IDS
from jobctl.connection import Connection, pass_connection
from jobctl.options import ANY_ID, CONTEXT, json_option
from jobctl.render.layout import table
from jobctl.render.metrics import TOP_HEADERS, metric_lines, top_row, usage_line
from jobctl.render.values import utc_now

CHART_POINTS = 60  # a chart's width at most, in characters


@click.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID, shell_complete=ANY_IDS)
@json_option
@pass_connection
def metrics(connection: Connection, *, any_id: str, as_json: bool) -> None:
    """Chart a run's CPU, memory and GPU use over its life (a job id: its latest run), with
    what it used in all."""
    client = connection.client()
    run = client.get(f"/v1/runs/{segment(resolve_run(client, any_id))}")
    if not run.get("startedAt"):
        show(run, as_json, lambda: f"{run['id']} has not started ({run['status']}): no samples")
        return
    start = datetime.fromisoformat(run["startedAt"])
    end = datetime.fromisoformat(run["finishedAt"]) if run.get("finishedAt") else utc_now()
    seconds = max(1.0, (end - start).total_seconds())
    query: dict[str, str | int] = {
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=seconds + 1)).isoformat(),  # its last sample too
        "step": max(1, math.ceil(seconds / CHART_POINTS)),
    }
    doc = client.get(f"/v1/runs/{segment(run['id'])}/metrics", query)
    width = min(CHART_POINTS, max(10, shutil.get_terminal_size().columns - 50))
    show(
        {**doc, "usage": run.get("usage")},
        as_json,
        lambda: "\n".join(
            [f"{run['id']}  {run['status']}", usage_line(run), *metric_lines(doc, width)]
        ),
    )


@click.command(context_settings=CONTEXT)
@click.option("--once", is_flag=True, help="One frame, then exit (piped output is one frame).")
@click.option(
    "--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True,
    help="Seconds between frames.",
)  # fmt: skip
@json_option
@pass_connection
def top(connection: Connection, *, once: bool, interval: float, as_json: bool) -> None:
    """The runs holding the node, with their CPU (now/plan), memory (now/plan), GPUs and
    time running; redrawn every --interval on a terminal until Ctrl-C."""
    client = connection.client()
    live = sys.stdout.isatty() and not once and not as_json
    try:
        while True:
            runs = client.get("/v1/node")["runs"]
            frame = (
                table(TOP_HEADERS, (top_row(r, utc_now()) for r in runs))
                if runs
                else ("no runs hold the node")
            )
            if as_json:
                show(runs, True, str)
                return
            if not live:
                click.echo(frame)
                return
            click.echo("\x1b[H\x1b[2J" + frame, nl=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        click.get_current_context().exit(0)
