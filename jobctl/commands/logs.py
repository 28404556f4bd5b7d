"""`jobctl logs`: a run's output, or every run's of a job."""

from __future__ import annotations

import sys

import click

from jobctl.client import segment
from jobctl.commands.shared import resolve_run
from jobctl.completion import ANY_IDS
from jobctl.connection import Connection, pass_connection
from jobctl.log_output import LogOutput, Sink
from jobctl.options import ANY_ID, CONTEXT, SINCE
from jobctl.parsing import id_kind
from jobctl.waiting import copy_log

MAX_LOG_LINES = 100_000  # the most a job's logs answer gives


@click.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID, shell_complete=ANY_IDS)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the run ends.")
@click.option(
    "--since", callback=SINCE, metavar="TIME", help="RFC 3339 time, or a duration ago (10m)."
)
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N lines.")
@click.option("--grep", help="Only lines containing this text.")
@click.option(
    "--until", callback=SINCE, metavar="TIME", help="RFC 3339 time, or a duration ago (10m)."
)
@click.option(
    "--all-runs",
    is_flag=True,
    help="Every run of a job, in time order, each line after its run's id.",
)
@click.option(
    "-t", "--timestamps", is_flag=True, help="Each line after its time (RFC 3339, as written)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (ndjson).")
@pass_connection
def logs(
    connection: Connection,
    *,
    any_id: str,
    follow: bool,
    since: str | None,
    until: str | None,
    tail: int | None,
    grep: str | None,
    all_runs: bool,
    timestamps: bool,
    as_json: bool,
) -> None:
    """Print a run's output (a job means its latest run, or with --all-runs all of them):
    what it wrote to stdout to stdout, to stderr to stderr. RUN_OR_JOB_ID: an id, a unique
    prefix of one, or a job's name."""
    client = connection.client()
    output = LogOutput(timestamps=timestamps, run_ids=all_runs)
    out: Sink = sys.stdout.buffer if as_json else output
    query = {
        "format": "ndjson" if as_json else output.format,
        "follow": "true" if follow else None,
        "since": since,
        "until": until,
        "tail": tail,
        "filter": grep,
    }
    if all_runs:
        if id_kind(any_id) == "run" or follow:
            raise click.UsageError("--all-runs takes a job (its id or name), and no --follow")
        limit = {"limit": MAX_LOG_LINES} if tail is None else {}
        path = f"/v1/jobs/{segment(any_id)}/logs"
        with client.stream(path, {**query, **limit}) as stream:
            for chunk in stream.chunks():
                out.write(chunk)
        output.end()
        return
    copy_log(client, resolve_run(client, any_id), query, out)
