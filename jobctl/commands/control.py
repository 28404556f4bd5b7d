"""Ending runs: `cancel` (runs named, or selected by their job's name and labels and their
status; confirmed on a terminal when a selection matches several) and `stop` (cleanly; a run
that has already ended is left as it is)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click

from jobctl.arrays import is_array
from jobctl.bodies import stop_body
from jobctl.client import ApiError, Client, segment
from jobctl.commands.shared import collect, find, resolve_run, run_of, show
from jobctl.completion import ANY_IDS
from jobctl.connection import Connection, pass_connection
from jobctl.options import ANY_ID, CONTEXT, PAIRS, json_option, stop_options
from jobctl.parsing import id_kind
from jobctl.render.layout import as_json as json_text
from jobctl.waiting import TERMINAL, wait_for_run

CANCELLABLE = ("pending", "assigned", "running")  # what a selection cancels unless --status
SHOWN_BEFORE_ASKING = 20  # runs listed before the question; the rest are counted


@click.command(context_settings=CONTEXT)
@click.argument(
    "any_ids", nargs=-1, metavar="[RUN_OR_JOB_ID]...", callback=ANY_ID, shell_complete=ANY_IDS
)
@click.option("--name", metavar="NAME", help="Select the runs of the jobs with this name.")
@click.option(
    "--label", multiple=True, callback=PAIRS, metavar="KEY=VALUE",
    help="Select the runs of the jobs with this label; repeatable (all must match).",
)  # fmt: skip
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(CANCELLABLE),
    help="Select only runs with this status; repeatable (default: all three).",
)  # fmt: skip
@click.option("-y", "--yes", is_flag=True, help="Cancel a selection of several without asking.")
@stop_options
@json_option
@pass_connection
def cancel(
    connection: Connection,
    *,
    any_ids: tuple[str, ...],
    name: str | None,
    label: tuple[tuple[str, str], ...],
    statuses: tuple[str, ...],
    yes: bool,
    grace: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Cancel runs: a queued one never starts, a running one gets SIGTERM, the grace period,
    SIGKILL. Each ID is a run, or a job (its latest run; an array job: all of its runs that
    have not ended): an id, a unique prefix of one, or a job's name. --name, --label and
    --status select runs instead (or as well); when a selection matches more than one, a
    terminal is asked first. Prints `<run-id> <status>` for each."""
    selecting = bool(name or label or statuses)
    if not any_ids and not selecting:
        raise click.UsageError(
            "give a RUN_OR_JOB_ID, or select runs with --name, --label, --status"
        )
    body = stop_body(grace, force)
    client = connection.client()
    run_ids, of_arrays = named_runs(client, any_ids, body)
    if selecting:
        chosen = selected(client, name, dict(label), statuses or CANCELLABLE)
        if not chosen:
            click.echo("jobctl: no runs match: nothing to cancel", err=True)
        elif not yes and len(chosen) > 1 and on_terminal():
            confirm(chosen)
        run_ids += [run["id"] for run in chosen]
    cancelled, failed = cancel_each(client, list(dict.fromkeys(run_ids)), body)
    cancelled = of_arrays + cancelled
    if as_json and (cancelled or selecting):
        one = len(any_ids) == 1 and not selecting and not of_arrays
        click.echo(json_text(cancelled[0] if one else {"runs": cancelled}))
    elif not as_json:
        for run in cancelled:
            click.echo(f"{run['id']} {run['status']}")
    if failed:
        click.get_current_context().exit(1)


def named_runs(
    client: Client, any_ids: Iterable[str], body: dict[str, Any] | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The runs the ids name (a job: its latest run), to cancel; an array job is cancelled
    here whole (its runs that have not ended), and its runs are returned as cancelled."""
    run_ids: list[str] = []
    of_arrays: list[dict[str, Any]] = []
    for any_id in any_ids:
        if id_kind(any_id) == "run":
            run_ids.append(any_id)
            continue
        kind, doc = find(client, any_id)
        if kind == "job" and is_array(doc):
            of_arrays += client.post(f"/v1/jobs/{segment(doc['id'])}/cancel", body)["runs"]
        else:
            run_ids.append(run_of(kind, doc))  # the job as found: not asked for again
    return run_ids, of_arrays


def selected(
    client: Client, name: str | None, labels: dict[str, str], statuses: Iterable[str]
) -> list[dict[str, Any]]:
    """The runs with one of `statuses` of the jobs with this name and these labels (every
    page of them), newest job first."""
    query = {"name": name, "label": [f"{k}={v}" for k, v in labels.items()], "limit": 1000}
    wanted = set(statuses)
    runs = []
    for job in collect(client, "/v1/jobs", query, "jobs", True)["jobs"]:
        path = f"/v1/jobs/{segment(job['id'])}/runs"
        found = collect(client, path, {"limit": 1000}, "runs", True)["runs"]
        runs += [{**run, "job": job} for run in found if run["status"] in wanted]
    return runs


def on_terminal() -> bool:
    """Whether someone can be asked: stdin is a terminal (a script's or a pipe's is not)."""
    return sys.stdin.isatty()


def confirm(runs: list[dict[str, Any]]) -> None:
    """Ask before cancelling several runs (click aborts, exit 1, on anything but yes)."""
    for run in runs[:SHOWN_BEFORE_ASKING]:
        job = run["job"]
        click.echo(f"  {run['id']} {run['status']} {job.get('name') or job['image']}", err=True)
    if len(runs) > SHOWN_BEFORE_ASKING:
        click.echo(f"  and {len(runs) - SHOWN_BEFORE_ASKING} more", err=True)
    click.confirm(f"Cancel these {len(runs)} runs?", abort=True, err=True)


def cancel_each(
    client: Client, run_ids: list[str], body: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], bool]:
    """Cancel each run, going on past one that can't be (said on stderr): the runs as
    cancelled, and whether any failed."""
    cancelled, failed = [], False
    for run_id in run_ids:
        try:
            cancelled.append(client.post(f"/v1/runs/{segment(run_id)}/cancel", body))
        except ApiError as e:
            click.echo(f"jobctl: {e}", err=True)
            failed = True
    return cancelled, failed


@click.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID, shell_complete=ANY_IDS)
@click.option("--wait", is_flag=True, help="Wait until it has stopped.")
@stop_options
@json_option
@pass_connection
def stop(
    connection: Connection,
    *,
    any_id: str,
    wait: bool,
    grace: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Stop a run cleanly (a job means its latest run): SIGTERM, the grace period, SIGKILL.
    It ends succeeded if it exits 0, cancelled otherwise. Prints `<run-id> <status>`; a run
    that has already ended is left as it is ("nothing to stop")."""
    body = stop_body(grace, force)
    client = connection.client()
    run_id = resolve_run(client, any_id)
    try:
        run_doc = client.post(f"/v1/runs/{segment(run_id)}/stop", body)
    except ApiError as e:
        run_doc = ended(client, run_id, e)
        click.echo(f"jobctl: run {run_doc['id']} already ended: nothing to stop", err=True)
    else:
        if wait:
            run_doc = wait_for_run(client, run_id)
    show(run_doc, as_json, lambda: f"{run_doc['id']} {run_doc['status']}")


def ended(client: Client, run_id: str, error: ApiError) -> dict[str, Any]:
    """The run a stop was refused for, when that is because it has ended; else the error."""
    if error.status != 409:
        raise error
    run_doc = client.get(f"/v1/runs/{segment(run_id)}")
    if run_doc["status"] not in TERMINAL:
        raise error
    return run_doc
